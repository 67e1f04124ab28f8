// A rank's bookkeeping at its start and its end, in one place so that `rho score` and the scale simulation
// (bench/bookkeeping-sim.ts) run the very same calls.
import type { OutputStore } from '../../schemas/store.js';
import { shardKey, type CompletionRecord } from '../../schemas/layout.js';
import { ownerOf } from './rank.js';
import { allRanksFinished, readOwnRecords, writeSummary, type RankSummary, type ReadStats } from './records.js';
import { recoverStaged } from './commit.js';
import { crashPoint } from '../../schemas/crashpoints.js';

/**
 * What is done among the units this rank owns (records of this configuration only), after publishing what a
 * crash left between commit and publish. Touches only this rank's records. `complete: false`: the set came
 * from the rank's summary, and a unit not in it must be checked (one GET) before it is claimed.
 */
export async function rankStart(store: OutputStore, o: { rank: number; worldSize: number; configSha: string; inputs?: readonly { source: string; key?: string }[] }): Promise<{ done: Map<string, CompletionRecord>; complete: boolean; stats: ReadStats }> {
  // Without a summary the listing of `_rho/done/` is split at the folders of the run's inputs and listed in
  // parallel ranges. (Listing only the folders of shards holding units this rank owns would be fewer pages,
  // but which parts a shard has is known only once the shard is read, after this point.)
  const own = await readOwnRecords(store, o.rank, o.worldSize, (o.inputs ?? []).map((i) => i.key ?? shardKey(i.source)));
  const done = new Map([...own.records].filter(([, r]) => r.config_sha256 === o.configSha));
  await recoverStaged(store, (u) => o.worldSize === 1 || ownerOf(u, o.worldSize) === o.rank);
  return { done, complete: own.complete, stats: own.stats };
}

/** Leave this rank's summary; true when every rank of the world has one (this rank then writes manifest.json). */
export async function rankEnd(store: OutputStore, summary: RankSummary): Promise<boolean> {
  await writeSummary(store, summary);
  crashPoint('summary-written');
  return summary.world_size === 1 || allRanksFinished(store, summary.world_size);
}
