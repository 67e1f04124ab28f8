// An OutputStore wrapper that records every call (method and path): request counts for the bookkeeping tests,
// the same evidence strace would give for a local dir or an access log for S3.
import type { OutputStore } from '../../schemas/store.js';

export interface StoreCall { op: 'write' | 'create' | 'read' | 'exists' | 'list' | 'listRange' | 'remove' | 'rename'; rel: string; after?: string | null; upTo?: string | null }

export class CountingStore implements OutputStore {
  calls: StoreCall[] = [];
  constructor(private readonly inner: OutputStore) {}
  get root() { return this.inner.root; }
  reset(): void { this.calls = []; }
  count(op: StoreCall['op'], prefix = ''): number {
    return this.calls.filter((c) => c.op === op && c.rel.startsWith(prefix)).length;
  }
  writeAtomic(rel: string, bytes: Uint8Array) { this.calls.push({ op: 'write', rel }); return this.inner.writeAtomic(rel, bytes); }
  createExclusive(rel: string, bytes: Uint8Array) { this.calls.push({ op: 'create', rel }); return this.inner.createExclusive(rel, bytes); }
  read(rel: string) { this.calls.push({ op: 'read', rel }); return this.inner.read(rel); }
  exists(rel: string) { this.calls.push({ op: 'exists', rel }); return this.inner.exists(rel); }
  list(prefix: string) { this.calls.push({ op: 'list', rel: prefix }); return this.inner.list(prefix); }
  listRange(prefix: string, after: string | null, upTo: string | null, limit?: number) { this.calls.push({ op: 'listRange', rel: prefix, after, upTo }); return this.inner.listRange(prefix, after, upTo, limit); }
  remove(rel: string) { this.calls.push({ op: 'remove', rel }); return this.inner.remove(rel); }
  rename(from: string, to: string) { this.calls.push({ op: 'rename', rel: from }); return this.inner.rename(from, to); }
  createWriter(base: string) { this.calls.push({ op: 'write', rel: base }); return this.inner.createWriter(base); }
  checkWritable() { return this.inner.checkWritable(); }
}
