// manifest.json against the completion records it is rebuilt from.
import { META } from '../../../schemas/contract.js';
import { LAYOUT, shardKey, type CompletionRecord } from '../../../schemas/layout.js';
import type { OutputStore } from '../../../schemas/store.js';
import type { Manifest } from '../../../schemas/manifest.js';
import { text, type Findings } from './report.js';

export async function readManifest(store: OutputStore, f: Findings): Promise<Manifest | null> {
  const bytes = await store.read(LAYOUT.manifest);
  if (!bytes) {
    f.error('manifest', LAYOUT.manifest, 'manifest.json is missing (the run did not finish); rerun rho score to complete the run and write it');
    return null;
  }
  try {
    return JSON.parse(text(bytes)) as Manifest;
  } catch (e) {
    f.error('manifest', LAYOUT.manifest, `not valid JSON (${(e as Error).message})`);
    return null;
  }
}

export function manifestInputs(m: Manifest | null, f: Findings): { source: string; bytes: number }[] {
  const raw = m?.provenance?.[META.inputs];
  if (m && typeof raw !== 'string') {
    f.error('manifest', LAYOUT.manifest, `provenance has no "${META.inputs}"`, { field: META.inputs });
    return [];
  }
  if (!raw) return [];
  try {
    return JSON.parse(raw) as { source: string; bytes: number }[];
  } catch {
    f.error('manifest', LAYOUT.manifest, `provenance "${META.inputs}" is not valid JSON`, { field: META.inputs });
    return [];
  }
}

/**
 * The manifest is rebuilt from the records at the end of a run; a difference means it is stale or edited.
 * Shards with an unreadable record cannot be summed: that record is already an error, so they are left out.
 */
export function checkManifest(m: Manifest | null, records: CompletionRecord[], configSha: string, brokenKeys: Set<string>, f: Findings): void {
  if (!m) return;
  if (m.config_sha256 !== configSha) f.error('manifest', LAYOUT.manifest, `config_sha256 ${m.config_sha256} differs from ${LAYOUT.config} (${configSha})`, { field: 'config_sha256' });
  const keys = ['units_done', 'docs_in', 'scored', 'rejected', 'tokens', 'scored_tokens'] as const;
  const sum = (rs: CompletionRecord[]) => ({
    units_done: rs.length,
    docs_in: rs.reduce((a, r) => a + r.docs_in, 0),
    scored: rs.reduce((a, r) => a + r.scored, 0),
    rejected: rs.reduce((a, r) => a + r.rejected, 0),
    tokens: rs.reduce((a, r) => a + r.tokens, 0),
    scored_tokens: rs.reduce((a, r) => a + r.scored_tokens, 0),
  });
  const diff = (got: Partial<Record<(typeof keys)[number], number>> | undefined, want: ReturnType<typeof sum>) =>
    keys.filter((k) => got?.[k] !== want[k]).map((k) => `${k} ${got?.[k]} (records: ${want[k]})`);
  if (brokenKeys.size === 0) {
    const d = diff(m.totals, sum(records));
    if (d.length) f.error('manifest', LAYOUT.manifest, `totals differ from the completion records: ${d.join(', ')}; stale manifest: rerun rho score to rebuild it`, { field: 'totals' });
  }
  for (const sh of m.shards ?? []) {
    if (brokenKeys.has(sh.key ?? shardKey(sh.source))) continue;
    const d = diff(sh, sum(records.filter((r) => r.source === sh.source)));
    if (d.length) f.error('manifest', LAYOUT.manifest, `shard ${sh.source} differs from its completion records: ${d.join(', ')}`, { field: 'shards' });
  }
}
