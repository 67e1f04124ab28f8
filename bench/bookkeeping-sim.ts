// Scale simulation of rho's bookkeeping (docs/scale.md): an output dir on a real S3 server (radosgw) with
// N completion records written as rho writes them (no scoring), behind a proxy that adds a fixed latency to
// every request; then, for one rank of a large world, the requests and time of its start and its end (the
// same calls rho score makes: pipeline/rank-books.ts), of `rho status` and of `rho manifest`.
//
//   node dist/bench/bookkeeping-sim.js [--units 100000] [--world 1000] [--rank 3] [--delay-ms 10] [--write-concurrency 128]
//                                      [--input-entries N] [--far-delay-ms 100] [--no-summaries-pass]
//
// --far-delay-ms D: the listing of _rho/done/ both ways and the rank's start without summary once more through
// a second proxy that adds D ms (a store far away, where a listing page costs its round trip more than the
// server's work; on this small VM radosgw's CPU is the limit of the first proxy's figures).
//
// --input-entries N: also the reads of `_rho/inputs/<key>.json` that rho score makes before rankStart
// (assignShardKeys, then checkChangedInputs in pipeline/io/input-checks.ts) for N inputs. The entries are
// written without a fingerprint, so no input is fingerprinted (the inputs here do not exist).
//
// Needs radosgw (apt-get install ceph-mon ceph-osd radosgw ceph-common). Prints one JSON object.
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { loadavg } from 'node:os';
import { startRadosgw } from '../test/services/radosgw.js';
import { startFaultProxy } from '../test/services/fault-proxy.js';
import { S3Store, s3Client } from '../pipeline/io/s3.js';
import { LAYOUT, unitName, dataPath, shardKey, type CompletionRecord } from '../schemas/layout.js';
import { ownerOf, WORLD_PATH } from '../pipeline/run/rank.js';
import { ensureRunInfo, listRecordUnits, listSummaries, summaryPath, writeSummary } from '../pipeline/run/records.js';
import { mapLimit } from '../pipeline/io/parallel.js';
import { rankStart, rankEnd } from '../pipeline/run/rank-books.js';
import { runStatus } from '../pipeline/launch/status.js';
import { writeDirManifest } from '../pipeline/run/manifest.js';
import { assignShardKeys, checkChangedInputs, INPUTS_DIR } from '../pipeline/io/input-checks.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const UNITS = arg('units', 100_000);
const WORLD = arg('world', 1000);
const RANK = arg('rank', 3);
const DELAY = arg('delay-ms', 10);
/** PUTs in flight while the records are written (setup, not measured; radosgw on a small VM is the limit). */
const WRITE_CONCURRENCY = arg('write-concurrency', 128);
const PARTS = 10; // units per shard
const UNIT_DOCS = 10_000;
const INPUT_ENTRIES = arg('input-entries', 0);
const FAR_DELAY = arg('far-delay-ms', 0);
const WORST_CASE_PASS = !process.argv.includes("--no-summaries-pass");

const log = (s: string) => process.stderr.write(`[sim ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

const rgw = await startRadosgw();
const result: Record<string, unknown> = { units: UNITS, world: WORLD, rank: RANK, delay_ms: DELAY, write_concurrency: WRITE_CONCURRENCY, started_at: new Date().toISOString() };
try {
  Object.assign(process.env, rgw.env);
  const admin = s3Client({ endpoint: rgw.endpoint });
  await admin.send(new CreateBucketCommand({ Bucket: 'rho-sim' }));
  const direct = new S3Store('s3://rho-sim/out', { endpoint: rgw.endpoint });

  // ---- the dir, as N ranks of rho score would leave it ----
  const identity = JSON.stringify({ schema_version: 1, models: [{ name: 'ref', sha256: 'a'.repeat(64) }], tokenizer_sha256: 'b'.repeat(64), context: 2048, stride: 2048, special_tokens: { post_processor: true, append_eos: false, eos_id: null }, entropy: false, text_field: 'text', id_field: null, unit_docs: UNIT_DOCS, format: 'parquet' }, null, 2);
  const configSha = createHash('sha256').update(identity).digest('hex');
  await direct.writeAtomic(LAYOUT.config, new TextEncoder().encode(identity + '\n'));
  await direct.writeAtomic(WORLD_PATH, new TextEncoder().encode(JSON.stringify({ world_size: WORLD }) + '\n'));
  const shards = Array.from({ length: Math.ceil(UNITS / PARTS) }, (_, i) => ({ source: `s3://rho-sim-in/fineweb/shard-${String(i).padStart(6, '0')}.jsonl.zst`, bytes: 1_500_000_000 }));
  const provenance = { 'rho.schema_version': '1', 'rho.version': 'sim', 'rho.models': JSON.stringify([{ name: 'ref', sha256: 'a'.repeat(64) }]), 'rho.tokenizer': JSON.stringify({ path: 't.json', sha256: 'b'.repeat(64) }), 'rho.context': '2048', 'rho.stride': '2048', 'rho.special_tokens': JSON.stringify({ post_processor: true, append_eos: false }) };
  const runFile = await ensureRunInfo(direct, { provenance, inputs: shards });
  const records: CompletionRecord[] = [];
  for (const [si, s] of shards.entries()) {
    for (let p = 0; p < PARTS && records.length < UNITS; p++) {
      const id = { source: s.source, part: p };
      const docs = p === PARTS - 1 ? UNIT_DOCS / 2 : UNIT_DOCS;
      records.push({
        unit: unitName(id), source: s.source, part: p, first_row: p * UNIT_DOCS, docs_in: docs, scored: docs - (si % 7 === 0 ? 1 : 0), rejected: si % 7 === 0 ? 1 : 0,
        tokens: docs * 1000, scored_tokens: docs * 999, file: dataPath(id, 'parquet'), bytes: 40_000_000 + p, sha256: createHash('sha256').update(`${si}/${p}`).digest('hex'),
        rejects_file: si % 7 === 0 ? `${LAYOUT.rejectsDir}/${unitName(id)}.jsonl` : null, config_sha256: configSha,
      });
    }
  }
  let t0 = performance.now();
  let written = 0;
  await mapLimit(records, WRITE_CONCURRENCY, async (r) => {
    await direct.writeAtomic(`${LAYOUT.doneDir}/${r.unit}.json`, new TextEncoder().encode(JSON.stringify(r, null, 2) + '\n'));
    if (++written % 10_000 === 0) log(`${written} records written`);
  });
  result.setup_records_seconds = (performance.now() - t0) / 1000;
  log(`${UNITS} records in ${(result.setup_records_seconds as number).toFixed(0)} s`);
  const owner = new Map(records.map((r) => [r.unit, ownerOf(r.unit, WORLD)]));
  const byRank = new Map<number, CompletionRecord[]>();
  for (const r of records) { const o = owner.get(r.unit)!; if (!byRank.has(o)) byRank.set(o, []); byRank.get(o)!.push(r); }
  const own = byRank.get(RANK) ?? [];
  result.rank_units = own.length;
  const summaryOf = (rank: number) => ({ rank, world_size: WORLD, config_sha256: configSha, run_file: runFile, complete: true, finished_at: new Date().toISOString(), run: {}, records: byRank.get(rank) ?? [] });
  t0 = performance.now();
  // Every other rank has finished (the harder case for the last rank's check is the same listing).
  await mapLimit([...Array(WORLD).keys()].filter((r) => r !== RANK), 64, (r) => writeSummary(direct, summaryOf(r)));
  result.setup_summaries_seconds = (performance.now() - t0) / 1000;
  result.load_average_before_measuring = loadavg();

  // ---- measured through the latency proxy ----
  const proxy = await startFaultProxy(rgw.endpoint, { every: Number.POSITIVE_INFINITY, delayMs: DELAY });
  const store = new S3Store('s3://rho-sim/out', { endpoint: proxy.endpoint });
  const measure = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const before = { ...proxy.counts.byKind };
    const n0 = proxy.counts.requests;
    const s = performance.now();
    const out = await fn();
    const byKind = Object.fromEntries(Object.entries(proxy.counts.byKind).map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => (v as number) > 0));
    result[name] = { seconds: Number(((performance.now() - s) / 1000).toFixed(2)), requests: proxy.counts.requests - n0, by_kind: byKind };
    log(`${name}: ${JSON.stringify(result[name])}`);
    return out;
  };
  // What rho score does at its start besides rankStart: read the config, check the world size, name the run info.
  const startCalls = async () => {
    await store.read(LAYOUT.config);
    if (!(await store.createExclusive(WORLD_PATH, new TextEncoder().encode(JSON.stringify({ world_size: WORLD }) + '\n')))) await store.read(WORLD_PATH);
    await ensureRunInfo(store, { provenance, inputs: shards });
    // The inputs' shard keys split the listing of _rho/done/ when there is no summary (as rho score passes them).
    return rankStart(store, { rank: RANK, worldSize: WORLD, configSha, inputs: shards });
  };
  const first = await measure('rank_start_without_summary', startCalls);
  result.rank_start_records_read = first.stats.records_read;
  result.rank_start_listed = first.stats.listed;
  if (first.done.size !== own.length) throw new Error(`rank start found ${first.done.size} done units, expected ${own.length}`);
  const last = await measure('rank_end', () => rankEnd(store, summaryOf(RANK)));
  if (!last) throw new Error('the rank should have seen every summary');
  const again = await measure('rank_start_with_summary', startCalls);
  result.rank_restart_records_read = again.stats.records_read;
  // The listing of _rho/done/ alone, as one sequential listing (before issue 17's split) and split at the
  // inputs' shard keys into ranges listed 16 at a time (what a rank without summary and rho manifest do now).
  const seq = await measure('listing_sequential', () => listRecordUnits(store));
  const split = await measure('listing_split', () => listRecordUnits(store, shards.map((s) => shardKey(s.source))));
  if (seq.length !== UNITS || split.length !== UNITS || split.some((u, i) => u !== seq[i])) throw new Error(`listings differ: ${seq.length} vs ${split.length}`);
  const status = await measure('status', () => runStatus(store, {}));
  if (status.units.done !== UNITS || !status.complete) throw new Error(`status: ${JSON.stringify(status.units)} complete=${status.complete}`);
  const m = await measure('manifest', () => writeDirManifest(store, { runMeta: {} }));
  if (m.manifest.totals.units_done !== UNITS) throw new Error(`manifest: ${m.manifest.totals.units_done} units`);
  result.manifest_read = m.stats;

  if (FAR_DELAY > 0) {
    const far = await startFaultProxy(rgw.endpoint, { every: Number.POSITIVE_INFINITY, delayMs: FAR_DELAY });
    const farStore = new S3Store('s3://rho-sim/out', { endpoint: far.endpoint });
    const farMeasure = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      const n0 = far.counts.requests;
      const s = performance.now();
      const out = await fn();
      result[name] = { seconds: Number(((performance.now() - s) / 1000).toFixed(2)), requests: far.counts.requests - n0, delay_ms: FAR_DELAY };
      log(`${name}: ${JSON.stringify(result[name])}`);
      return out;
    };
    const a = await farMeasure('far_listing_sequential', () => listRecordUnits(farStore));
    const b = await farMeasure('far_listing_split', () => listRecordUnits(farStore, shards.map((s) => shardKey(s.source))));
    if (a.length !== UNITS || b.length !== UNITS) throw new Error('far listings incomplete');
    await direct.remove(summaryPath(WORLD, RANK));
    const st = await farMeasure('far_rank_start_without_summary', () => rankStart(farStore, { rank: RANK, worldSize: WORLD, configSha, inputs: shards }));
    if (st.done.size !== own.length) throw new Error('far rank start incomplete');
    await writeSummary(direct, summaryOf(RANK));
    await far.close();
  }

  if (INPUT_ENTRIES > 0) {
    const ins = shards.slice(0, INPUT_ENTRIES).map((s) => ({ source: s.source, location: s.source, key: shardKey(s.source) }));
    await mapLimit(ins, WRITE_CONCURRENCY, (s) => direct.writeAtomic(`${INPUTS_DIR}/${s.key}.json`, new TextEncoder().encode(JSON.stringify({ source: s.source, location: s.location }) + '\n')));
    result.input_entries_count = ins.length;
    await measure('input_entries', async () => {
      const mine = ins.map((s) => ({ ...s }));
      const entries = await assignShardKeys(store, mine, true);
      await checkChangedInputs(store, mine, async () => [], { rescoreChanged: false, entries });
    });
  }

  if (WORST_CASE_PASS) {
    // The worst case: no rank left a summary (all died before their end): every record is read once.
    for (const s of await listSummaries(direct)) await direct.remove(s.rel);
    const m2 = await measure('manifest_without_summaries', () => writeDirManifest(store, { runMeta: {}, run: { provenance, inputs: shards } }));
    result.manifest_without_summaries_read = m2.stats;
    if (m2.manifest.totals.units_done !== UNITS) throw new Error(`manifest: ${m2.manifest.totals.units_done} units`);
  }
  await proxy.close();
  result.load_average_end = loadavg();
  void summaryPath;
} finally {
  await rgw.stop();
}
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
