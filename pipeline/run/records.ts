// Reading the bookkeeping of an output dir at scale: completion records, per-rank summaries and the run's
// input list, with bounded parallelism, touching only what a caller needs.
//
// Costs (S3 requests; a page lists 1,000 keys):
// - a rank's start (readOwnRecords): one GET of its own summary and one listing of `_rho/staged/`; units the
//   summary lacks cost one GET each when reached. Without a summary: the listing of `_rho/done/`
//   (units/1000 pages, plus up to one per range: one first page, then 32 key ranges split at the inputs'
//   shard folders, 16 in flight) and one GET per record it owns. Never a record of another rank's unit.
// - a rank's end: one PUT of its summary (`_rho/ranks/w<W>-r<R>.json`: every record of the units it owns,
//   batched), one listing of `_rho/ranks/` to learn whether it is the last.
// - a whole-dir reader (rho manifest, the last rank, rho status, rho verify): the listing of `_rho/done/`
//   (split the same way, at the inputs of the run info the first summary names), one GET per summary, and
//   one GET per record no summary holds.
// Records are created exclusively and never rewritten, so a summary that holds a unit's record is as good
// as the record itself; the listing of `_rho/done/` stays the authority on which units are done.
import { createHash } from 'node:crypto';
import { compareKeys, type OutputStore } from '../../schemas/store.js';
import { LAYOUT, shardKey, type CompletionRecord } from '../../schemas/layout.js';
import { ownerOf } from './rank.js';
import { mapLimit } from '../io/parallel.js';
import type { InputShard } from '../io/inputs.js';

/** Reads in flight at once. S3 serves thousands per second per prefix; 32 keeps one client's sockets busy without a flood. */
export const READ_CONCURRENCY = 32;

export const RANKS_DIR = '_rho/ranks';
export const RUNS_DIR = '_rho/runs';

const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const byUnit = (a: CompletionRecord, b: CompletionRecord) => (a.unit < b.unit ? -1 : a.unit > b.unit ? 1 : 0);

/** Listing requests in flight at once when a listing is split in ranges. */
export const LIST_CONCURRENCY = 16;
/** Ranges of a split listing: twice the requests in flight, so that one dense range does not hold up the rest. */
export const LIST_RANGES = 2 * LIST_CONCURRENCY;

/**
 * Split points for the listing of `_rho/done/` (`_rho/done/<key>/`): up to `ranges - 1` of the given shard
 * folders, evenly spaced by count, so that each range holds about as many shards. Units are
 * `_rho/done/<shard key>/part-NNNNN.json`, so the shard keys of the run's inputs (which a rank knows before it
 * reads anything) say where the records lie. Keys of other runs' inputs only unbalance the ranges; every
 * record is still listed once.
 */
export function doneSplitPoints(shardKeys: Iterable<string>, ranges = LIST_RANGES): string[] {
  const keys = [...new Set(shardKeys)].map((k) => `${LAYOUT.doneDir}/${k}/`).sort(compareKeys);
  if (keys.length < 2 || ranges < 2) return [];
  const n = Math.min(ranges, keys.length);
  const points: string[] = [];
  for (let i = 1; i < n; i++) points.push(keys[Math.floor((i * keys.length) / n)]);
  return [...new Set(points)];
}

/** Keys listed in one request before a listing is split: a listing of fewer keys is done in that one page. */
export const LIST_PROBE = 1000;

/**
 * The listing of `prefix` split at `splits` into the ranges (null, s1], (s1, s2], …, (sN, null], requested
 * `concurrency` at a time, concatenated in order (sorted, each path once). First one page of `probe` keys from
 * the start: a listing that ends there costs that one request (a new or small dir); else the ranges start
 * after its last key, and fewer of them when that page passed split points (a listing of a few pages is not
 * cut into 32 ranges of one page each). No split points: one listing.
 */
export async function listSplit(store: OutputStore, prefix: string, splits: readonly string[], o: { concurrency?: number; probe?: number } = {}): Promise<string[]> {
  let points = [...new Set(splits)].sort(compareKeys);
  if (points.length === 0) return store.listRange(prefix, null, null);
  const probe = o.probe ?? LIST_PROBE;
  let head: string[] = [];
  let start: string | null = null;
  if (probe > 0) {
    head = await store.listRange(prefix, null, null, probe);
    if (head.length < probe) return head;
    const last = head[head.length - 1];
    start = last;
    const passed = points.filter((p) => compareKeys(p, last) <= 0).length;
    points = points.slice(passed);
    // How far the first page got through the split points estimates how many keys are left: no more ranges
    // than ~3 pages each (a range lists up to one page past its end), any subset of the points being as correct.
    if (passed > 0) {
      const left = (probe * (points.length + passed + 1)) / passed - probe;
      const ranges = Math.max(1, Math.min(points.length + 1, Math.ceil(left / probe / 3)));
      points = [...new Set(Array.from({ length: ranges - 1 }, (_, i) => points[Math.floor(((i + 1) * points.length) / ranges)]))];
    }
  }
  const ranges = [start, ...points].map((after, i) => [after, points[i] ?? null] as const);
  return head.concat(...(await mapLimit(ranges, o.concurrency ?? LIST_CONCURRENCY, ([after, upTo]) => store.listRange(prefix, after, upTo))));
}

/**
 * Unit names of every completion record in the dir (a listing, no reads). Temp files are not records. With the
 * shard keys of the run's inputs, the listing is split at them and its ranges requested in parallel
 * (`LIST_CONCURRENCY`); without, it is one sequential listing (a page per 1,000 records).
 */
export async function listRecordUnits(store: OutputStore, shardKeys: Iterable<string> = [], probe = LIST_PROBE): Promise<string[]> {
  const pre = `${LAYOUT.doneDir}/`;
  return (await listSplit(store, LAYOUT.doneDir, doneSplitPoints(shardKeys), { probe }))
    .filter((rel) => rel.startsWith(pre) && rel.endsWith('.json'))
    .map((rel) => rel.slice(pre.length, -'.json'.length));
}

export const recordPath = (unit: string): string => `${LAYOUT.doneDir}/${unit}.json`;

/** The records of `units`, read in parallel; a record deleted since the listing is left out. */
export async function readRecords(store: OutputStore, units: readonly string[], concurrency = READ_CONCURRENCY): Promise<CompletionRecord[]> {
  const got = await mapLimit(units, concurrency, async (u) => {
    const bytes = await store.read(recordPath(u));
    if (!bytes) return null;
    try {
      return JSON.parse(decode(bytes)) as CompletionRecord;
    } catch (e) {
      throw new Error(`${store.root}/${recordPath(u)}: completion record is not valid JSON (${(e as Error).message}); run rho verify`);
    }
  });
  return got.filter((r): r is CompletionRecord => r !== null);
}

// ---- per-rank summaries ----

/** What a rank leaves at its end: datatrove's per-rank stats, plus the records of its units batched in one object. */
export interface RankSummary {
  rank: number;
  world_size: number;
  config_sha256: string;
  /** `_rho/runs/<sha>.json`: the provenance and input list this rank ran with. */
  run_file: string;
  /** Every unit this rank owns was found done (none left to a runner that still holds or abandoned a claim). */
  complete: boolean;
  finished_at: string;
  /** What this run did (units written, skipped, ...); varies between runs. */
  run: Record<string, unknown>;
  /** The completion records of the units it owns that are done, as stored in `_rho/done/`. */
  records: CompletionRecord[];
}

export const summaryPath = (worldSize: number, rank: number): string =>
  `${RANKS_DIR}/w${String(worldSize).padStart(5, '0')}-r${String(rank).padStart(5, '0')}.json`;
const SUMMARY_NAME = /^_rho\/ranks\/w(\d+)-r(\d+)\.json$/;

export async function readSummary(store: OutputStore, worldSize: number, rank: number): Promise<RankSummary | null> {
  const bytes = await store.read(summaryPath(worldSize, rank));
  if (!bytes) return null;
  try {
    return JSON.parse(decode(bytes)) as RankSummary;
  } catch {
    return null; // a summary is only a cache of records: an unreadable one is ignored (the records are read instead)
  }
}

export async function writeSummary(store: OutputStore, s: RankSummary): Promise<void> {
  s.records.sort(byUnit);
  await store.writeAtomic(summaryPath(s.world_size, s.rank), new TextEncoder().encode(JSON.stringify(s) + '\n'));
}

/**
 * Units about to be deleted so that they are done again (an input changed, --rescore-changed): every summary
 * that holds one of their records is rewritten without it and marked incomplete, so that no rank (its start
 * reads only its summary) nor whole-dir reader takes the unit as done. Called before the records go.
 */
export async function dropFromSummaries(store: OutputStore, units: readonly string[]): Promise<number> {
  const drop = new Set(units);
  let rewritten = 0;
  for (const { worldSize, rank } of await listSummaries(store)) {
    const s = await readSummary(store, worldSize, rank);
    if (!s || !s.records.some((r) => drop.has(r.unit))) continue;
    await writeSummary(store, { ...s, complete: false, records: s.records.filter((r) => !drop.has(r.unit)) });
    rewritten++;
  }
  return rewritten;
}

/** Summary files in the dir: [world size, rank, path]. */
export async function listSummaries(store: OutputStore): Promise<{ worldSize: number; rank: number; rel: string }[]> {
  const out: { worldSize: number; rank: number; rel: string }[] = [];
  for (const rel of await store.list(RANKS_DIR)) {
    const m = SUMMARY_NAME.exec(rel);
    if (m) out.push({ worldSize: Number(m[1]), rank: Number(m[2]), rel });
  }
  return out;
}

/**
 * Whether every rank of `worldSize` has left a summary (this one included): the rank that sees it is the last
 * to finish, and writes manifest.json. Two ranks finishing together may both see it; they write the same
 * manifest (only `run` differs). One listing request for up to 1,000 ranks.
 */
export async function allRanksFinished(store: OutputStore, worldSize: number): Promise<boolean> {
  const ranks = new Set((await listSummaries(store)).filter((s) => s.worldSize === worldSize).map((s) => s.rank));
  for (let r = 0; r < worldSize; r++) if (!ranks.has(r)) return false;
  return true;
}

// ---- the run's provenance and input list, stored once (not in every summary: 100,000 inputs are megabytes) ----

/** An input as the run info keeps it: `key` is the folder of its units (issue 13's canonical-location key), when given. */
export type RunInput = Omit<InputShard, 'location' | 'key'> & { key?: string };

export interface RunInfo {
  provenance: Record<string, string>;
  inputs: RunInput[];
}

/** Store the run info under its content hash (one HEAD, plus one PUT the first time); the path to name in summaries. */
export async function ensureRunInfo(store: OutputStore, info: RunInfo): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(info) + '\n');
  const rel = `${RUNS_DIR}/${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}.json`;
  if (!(await store.exists(rel))) await store.createExclusive(rel, bytes);
  return rel;
}

export async function readRunInfo(store: OutputStore, rel: string): Promise<RunInfo | null> {
  const bytes = await store.read(rel);
  return bytes ? (JSON.parse(decode(bytes)) as RunInfo) : null;
}

// ---- the two readers ----

export interface ReadStats {
  /** Record names listed in `_rho/done/`. */
  listed: number;
  summaries_read: number;
  records_read: number;
}

/**
 * What a rank needs at its start: the records of the units it owns (under `worldSize`). With its summary
 * (it finished before) that is one GET and no listing: the summary holds the records of its done units, and
 * any unit it lacks is checked with one GET when the reader reaches it (`complete: false`). Without one (its
 * first run, or it died before its end) the listing of `_rho/done/`, then one GET per record of its own
 * units, in parallel (`complete: true`). Records of other ranks' units are never read.
 */
export async function readOwnRecords(store: OutputStore, rank: number, worldSize: number, shardKeys: Iterable<string> = [], probe = LIST_PROBE): Promise<{ records: Map<string, CompletionRecord>; complete: boolean; stats: ReadStats }> {
  const summary = await readSummary(store, worldSize, rank);
  if (summary) {
    return { records: new Map(summary.records.map((r) => [r.unit, r])), complete: false, stats: { listed: 0, summaries_read: 1, records_read: 0 } };
  }
  const names = await listRecordUnits(store, shardKeys, probe);
  const own = worldSize === 1 ? names : names.filter((u) => ownerOf(u, worldSize) === rank);
  const records = new Map<string, CompletionRecord>();
  for (const r of await readRecords(store, own)) records.set(r.unit, r);
  return { records, complete: true, stats: { listed: names.length, summaries_read: 0, records_read: own.length } };
}

/**
 * Every record of the dir (sorted by unit), for the manifest, status and the last rank: the summaries of all
 * ranks (in parallel), then the records no summary holds. Also the newest summary's run info path.
 */
export async function readAllRecords(store: OutputStore): Promise<{ records: CompletionRecord[]; runFile: string | null; summaries: RankSummary[]; stats: ReadStats }> {
  const files = await listSummaries(store);
  // The first summary is read ahead: its run info lists the inputs, whose shard keys split the listing of
  // `_rho/done/` into ranges listed in parallel, while the other summaries are read.
  const first = files.length ? readSummary(store, files[0].worldSize, files[0].rank) : Promise.resolve(null);
  const [names, read] = await Promise.all([
    first
      .then((s) => (s ? readRunInfo(store, s.run_file).catch(() => null) : null))
      .then((info) => listRecordUnits(store, (info?.inputs ?? []).map((i) => i.key ?? shardKey(i.source)))),
    mapLimit(files, READ_CONCURRENCY, (f, i) => (i === 0 ? first : readSummary(store, f.worldSize, f.rank))),
  ]);
  const summaries = read.filter((s): s is RankSummary => s !== null);
  const listed = new Set(names);
  const found = new Map<string, CompletionRecord>();
  for (const s of summaries) for (const r of s.records) if (listed.has(r.unit)) found.set(r.unit, r);
  const missing = names.filter((u) => !found.has(u));
  for (const r of await readRecords(store, missing)) found.set(r.unit, r);
  const newest = summaries.reduce<RankSummary | null>((a, s) => (!a || s.finished_at > a.finished_at ? s : a), null);
  return {
    records: [...found.values()].sort(byUnit),
    runFile: newest?.run_file ?? null,
    summaries,
    stats: { listed: names.length, summaries_read: summaries.length, records_read: missing.length },
  };
}
