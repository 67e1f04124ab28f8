// manifest.json: provenance plus the accounting of the whole output dir, rebuilt from the completion records
// (so several runners writing one dir agree on it). Fields under "run" vary from run to run (wall time);
// everything else is a function of the inputs and the configuration.
import { LAYOUT, recordKey, shardKey, type CompletionRecord } from '../../schemas/layout.js';
import type { OutputStore } from '../../schemas/store.js';
import { provenanceViews } from '../../schemas/contract.js';
import type { ShardAccount, Manifest } from '../../schemas/manifest.js';
import { readAllRecords, readRunInfo, RANKS_DIR, type ReadStats, type RunInfo, type RunInput } from './records.js';
import { createHash } from 'node:crypto';
import { ConfigError } from '../../schemas/errors.js';
import { crashPoint } from '../../schemas/crashpoints.js';

export type { ShardAccount, Manifest };

/**
 * Every completion record of the dir, sorted by unit: from the per-rank summaries and the records no
 * summary holds, read in parallel (records.ts).
 */
export async function readCompletionRecords(store: OutputStore): Promise<CompletionRecord[]> {
  return (await readAllRecords(store)).records;
}

export interface ManifestInput {
  provenance: Record<string, string>;
  /** By shard key (the canonical location's, when given), so every spelling of one input is one shard. */
  inputs: RunInput[];
  configSha: string;
  runMeta: Record<string, unknown>;
}

/**
 * Build manifest.json of the whole dir from what is stored in it (config, summaries, records, the newest
 * run's input list) and write it: what the last rank to finish does, and `rho manifest DIR`. `run` gives
 * the provenance and inputs when the caller has them (a rank), else they come from `_rho/runs/`.
 */
export async function writeDirManifest(store: OutputStore, opts: { runMeta: Record<string, unknown>; run?: RunInfo; configSha?: string }): Promise<{ manifest: Manifest; stats: ReadStats }> {
  let configSha = opts.configSha;
  if (!configSha) {
    const config = await store.read(LAYOUT.config);
    if (!config) throw new ConfigError(`${store.root} is not a rho output (no ${LAYOUT.config})`);
    configSha = createHash('sha256').update(new TextDecoder().decode(config).replace(/\n$/, '')).digest('hex');
  }
  const all = await readAllRecords(store);
  let run = opts.run ?? null;
  if (!run && all.runFile) run = await readRunInfo(store, all.runFile);
  if (!run) throw new ConfigError(`${store.root}: no rank has finished yet (no summary in ${RANKS_DIR}/ naming the run's inputs), so the manifest cannot list the inputs; run rho score to its end first`);
  const manifest = manifestOf(all.records, { provenance: run.provenance, inputs: run.inputs, configSha, runMeta: opts.runMeta });
  crashPoint('manifest');
  await store.writeAtomic(LAYOUT.manifest, new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'));
  return { manifest, stats: all.stats };
}

/** The manifest over `records` (those of another configuration are left out). */
export function manifestOf(all: CompletionRecord[], opts: ManifestInput): Manifest {
  const records = all.filter((r) => r.config_sha256 === opts.configSha).sort((a, b) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0));
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
