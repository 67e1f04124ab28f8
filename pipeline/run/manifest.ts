// manifest.json: provenance plus the accounting of the whole output dir, rebuilt from the completion records
// (so several runners writing one dir agree on it). Fields under "run" vary from run to run (wall time);
// everything else is a function of the inputs and the configuration.
import { LAYOUT, recordKey, shardKey, type CompletionRecord } from '../../schemas/layout.js';
import type { OutputStore } from '../../schemas/store.js';
import type { InputShard } from '../io/inputs.js';
import { provenanceViews } from '../../schemas/contract.js';
import type { ShardAccount, Manifest } from '../../schemas/manifest.js';

export type { ShardAccount, Manifest };

export async function readCompletionRecords(store: OutputStore): Promise<CompletionRecord[]> {
  const out: CompletionRecord[] = [];
  for (const rel of await store.list(LAYOUT.doneDir)) {
    if (!rel.endsWith('.json')) continue;
    out.push(JSON.parse(new TextDecoder().decode((await store.read(rel))!)) as CompletionRecord);
  }
  return out.sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0));
}

export async function buildManifest(store: OutputStore, opts: { provenance: Record<string, string>; inputs: (Omit<InputShard, 'location' | 'key'> & { key?: string })[]; configSha: string; runMeta: Record<string, unknown> }): Promise<Manifest> {
  const records = (await readCompletionRecords(store)).filter((r) => r.config_sha256 === opts.configSha);
  // By shard key (the canonical location's), so every spelling of one input is one shard.
  const bySource = new Map<string, ShardAccount>();
  for (const s of opts.inputs) {
    const key = s.key ?? shardKey(s.source);
    bySource.set(key, { source: s.source, bytes: s.bytes, key, units_done: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 });
  }
  for (const r of records) {
    let a = bySource.get(recordKey(r));
    if (!a) {
      // Done by another runner over a larger input list: still part of this dir's table.
      a = { source: r.source, bytes: 0, key: recordKey(r), units_done: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 };
      bySource.set(recordKey(r), a);
    }
    a.units_done++;
    a.docs_in += r.docs_in;
    a.scored += r.scored;
    a.rejected += r.rejected;
    a.tokens += r.tokens;
    a.scored_tokens += r.scored_tokens;
  }
  const shards = [...bySource.values()];
  const views = provenanceViews({ ...opts.provenance, 'rho.inputs': JSON.stringify(opts.inputs.map((s) => ({ source: s.source, bytes: s.bytes }))) });
  const provenance = views.flat;
  const totals = { shards: shards.length, bytes: 0, units_done: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 };
  for (const a of shards) {
    totals.bytes += a.bytes;
    totals.units_done += a.units_done;
    totals.docs_in += a.docs_in;
    totals.scored += a.scored;
    totals.rejected += a.rejected;
    totals.tokens += a.tokens;
    totals.scored_tokens += a.scored_tokens;
  }
  return {
    schema_version: Number(opts.provenance['rho.schema_version']),
    ...views.manifestFields,
    provenance,
    config_sha256: opts.configSha,
    shards,
    totals,
    files: records.map((r) => ({ file: r.file, rows: r.scored, bytes: r.bytes, sha256: r.sha256 })),
    run: { ...opts.runMeta, finished_at: new Date().toISOString(), note: 'fields under "run" vary between runs' },
  };
}
