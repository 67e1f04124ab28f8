// The listing of `_rho/done/` split into key ranges listed in parallel (OutputStore.listRange, records.ts
// listSplit): every split lists the same paths as one listing, each once — split points that are keys
// themselves, inside a folder, empty ranges, duplicates, more keys than a page — on a local dir and on S3
// (radosgw, 7 keys a page); the ranges are requested concurrently (bounded), and a rank without its summary
// still reads exactly its own records. Also: the input entries a rank start reads are read concurrently.
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { LocalStore } from '../../pipeline/io/local.js';
import { S3Store, s3Client } from '../../pipeline/io/s3.js';
import { LIST_CONCURRENCY, LIST_RANGES, doneSplitPoints, listRecordUnits, listSplit, readOwnRecords } from '../../pipeline/run/records.js';
import { mapLimit } from '../../pipeline/io/parallel.js';

// The split itself is what is tested: no first page that would hold the whole (small) listing, unless said.
const NO_PROBE = { probe: 0 };
import { ownerOf } from '../../pipeline/run/rank.js';
import { inKeyRange, type OutputStore } from '../../schemas/store.js';
import { LAYOUT, shardKey } from '../../schemas/layout.js';
import { INPUTS_DIR, assignShardKeys, checkChangedInputs } from '../../pipeline/io/input-checks.js';
import { startRadosgw, type Radosgw } from '../services/radosgw.js';
import { startFaultProxy } from '../services/fault-proxy.js';
import { startService, need, type Started } from './_services.js';
import { requires } from '../requirements.js';
import { CountingStore } from './_counting.js';
import { tmp } from '../helpers.js';

const withCeph = requires('ceph');

// 60 shard folders with 0..9 parts each (some folders empty, i.e. absent), names that are prefixes of others
// (`s-01-…` and `s-010-…`), and a temp file that is not a record.
const SHARDS = Array.from({ length: 60 }, (_, i) => `s-${String(i).padStart(i % 5 === 0 ? 2 : 3, '0')}-${(0x1000 + i * 37).toString(16)}`);
const PARTS = (i: number) => (i * 7) % 10;
const UNITS = SHARDS.flatMap((k, i) => Array.from({ length: PARTS(i) }, (_, p) => `${k}/part-${String(p).padStart(5, '0')}`));
const PATHS = [...UNITS.map((u) => `${LAYOUT.doneDir}/${u}.json`), `${LAYOUT.doneDir}/${SHARDS[7]}/part-00000.json.123.tmp`].sort();
const record = (unit: string) => new TextEncoder().encode(JSON.stringify({ unit, config_sha256: 'c' }) + '\n');

/** Split-point sets that must each give back exactly the single listing. */
function splitSets(): [string, string[]][] {
  const keys = PATHS;
  return [
    ['every 5th key exactly (a key on a split point)', keys.filter((_, i) => i % 5 === 0)],
    ['every key (ranges of one key each)', [...keys]],
    ['the shard folders (what rho uses)', doneSplitPoints(SHARDS)],
    ['inside a folder, between two parts', [`${LAYOUT.doneDir}/${SHARDS[3]}/part-00002`, `${LAYOUT.doneDir}/${SHARDS[3]}/part-00004.json`]],
    ['all before the first key and after the last (empty ranges)', ['_rho/a', '_rho/b', '_rho/x', '_rho/y']],
    ['duplicates and unsorted', [keys[40], keys[3], keys[40], keys[3], `${LAYOUT.doneDir}/${SHARDS[59]}/`]],
  ];
}

async function fill(store: OutputStore): Promise<void> {
  await mapLimit(PATHS, 16, (rel) => store.writeAtomic(rel, record(rel.slice(LAYOUT.doneDir.length + 1, -'.json'.length))));
}

/** Counts listRange calls in flight at once. */
class InFlight extends CountingStore {
  now = 0;
  max = 0;
  override async listRange(prefix: string, after: string | null, upTo: string | null) {
    this.now++;
    this.max = Math.max(this.max, this.now);
    try {
      return await super.listRange(prefix, after, upTo);
    } finally {
      this.now--;
    }
  }
}

async function checkSplits(t: ExecutionContext, store: OutputStore): Promise<void> {
  const single = await store.list(LAYOUT.doneDir);
  t.deepEqual(single, PATHS, 'the plain listing');
  t.deepEqual(await store.listRange(LAYOUT.doneDir, null, null), PATHS, 'one unbounded range');
  for (const [what, points] of splitSets()) {
    t.deepEqual(await listSplit(store, LAYOUT.doneDir, points, NO_PROBE), PATHS, what);
    // A first page of 50 keys, then the split ranges after its last key (split points before it dropped).
    t.deepEqual(await listSplit(store, LAYOUT.doneDir, points, { probe: 50 }), PATHS, `${what}, after a first page of 50`);
    // Each range on its own holds only its keys (after, upTo].
    const sorted = [...new Set(points)].sort();
    const bounds = [null, ...sorted].map((a, i) => [a, sorted[i] ?? null] as const);
    let n = 0;
    for (const [a, u] of bounds) {
      const got = await store.listRange(LAYOUT.doneDir, a, u);
      t.true(got.every((k) => inKeyRange(k, a, u)), `${what}: range (${a}, ${u}] returned a key outside it`);
      t.deepEqual(got, PATHS.filter((k) => inKeyRange(k, a, u)), `${what}: range (${a}, ${u}]`);
      n += got.length;
    }
    t.is(n, PATHS.length, `${what}: each key in exactly one range`);
  }
  // A key on a split point belongs to the range that ends at it, not the next.
  t.deepEqual(await store.listRange(LAYOUT.doneDir, PATHS[9], PATHS[10]), [PATHS[10]]);
  t.deepEqual(await store.listRange(LAYOUT.doneDir, PATHS[10], PATHS[10]), []);
  // limit: the first keys of a range; fewer when the range holds no more.
  t.deepEqual(await store.listRange(LAYOUT.doneDir, PATHS[9], null, 20), PATHS.slice(10, 30));
  t.deepEqual(await store.listRange(LAYOUT.doneDir, PATHS[9], PATHS[14], 20), PATHS.slice(10, 15));
  // The default first page (1,000 keys) holds this whole listing: one request, no split.
  const one = new CountingStore(store);
  t.deepEqual(await listSplit(one, LAYOUT.doneDir, doneSplitPoints(SHARDS)), PATHS);
  t.is(one.count('listRange'), 1);
}

async function checkParallel(t: ExecutionContext, inner: OutputStore): Promise<void> {
  const store = new InFlight(inner);
  const units = await listRecordUnits(store, SHARDS, 0);
  t.deepEqual(units, UNITS.slice().sort(), 'split listing finds every record (not the temp file)');
  t.is(store.count('listRange'), LIST_RANGES, `${LIST_RANGES} ranges from ${SHARDS.length} shard keys`);
  t.is(store.count('list'), 0);
  t.is(store.max, LIST_CONCURRENCY, `ranges requested ${LIST_CONCURRENCY} at a time`);
  // Without shard keys: one sequential listing, same result.
  const plain = new InFlight(inner);
  t.deepEqual(await listRecordUnits(plain), units);
  t.is(plain.count('listRange'), 1);

  // A rank of 10 without its summary: the split listing, then exactly its own records.
  for (const rank of [0, 3]) {
    const s = new CountingStore(inner);
    const own = await readOwnRecords(s, rank, 10, SHARDS, 0);
    const mine = UNITS.filter((u) => ownerOf(u, 10) === rank).sort();
    t.deepEqual([...own.records.keys()].sort(), mine);
    t.true(own.complete);
    const reads = s.calls.filter((c) => c.op === 'read' && c.rel.startsWith(`${LAYOUT.doneDir}/`)).map((c) => c.rel);
    t.deepEqual(reads.sort(), mine.map((u) => `${LAYOUT.doneDir}/${u}.json`), `rank ${rank} reads only its own records`);
    t.is(s.count('listRange'), LIST_RANGES);
  }
}

test('local: a split listing of _rho/done/ equals one listing, for every kind of split point', async (t) => {
  const store = new LocalStore(join(tmp('rho-bk-list-'), 'out'));
  await fill(store);
  // Folders other than _rho/done/ and a file directly under it do not leak into the ranges.
  mkdirSync(join(store.root, '_rho/claims'), { recursive: true });
  writeFileSync(join(store.root, '_rho/claims/x.json'), '{}');
  mkdirSync(dirname(join(store.root, '_rho/doneX/y.json')), { recursive: true });
  writeFileSync(join(store.root, '_rho/doneX/y.json'), '{}');
  await checkSplits(t, store);
});

test('local: the ranges are listed in parallel (bounded), and a rank without its summary reads only its own records', async (t) => {
  const store = new LocalStore(join(tmp('rho-bk-list-'), 'out'));
  await fill(store);
  await checkParallel(t, store);
});

let rgw: Started<Radosgw>;
test.before(async () => {
  rgw = await startService(['ceph'], startRadosgw);
  if (!rgw.service) return;
  Object.assign(process.env, rgw.service.env);
  await s3Client({ endpoint: rgw.service.endpoint }).send(new CreateBucketCommand({ Bucket: 'rho-list' }));
});
test.after.always(async () => {
  await rgw?.service?.stop();
});

withCeph('S3 (radosgw, 7 keys a page): split listings equal one listing; pages stop at the next range; ranges in parallel', async (t) => {
  const g = need(rgw);
  const direct = new S3Store('s3://rho-list/run', { endpoint: g.endpoint });
  await fill(direct);
  await direct.writeAtomic('_rho/doneX/y.json', record('y'));
  await direct.writeAtomic('_rho/claims/x.json', record('x'));
  const proxy = await startFaultProxy(g.endpoint, { every: Number.POSITIVE_INFINITY });
  try {
    const store = new S3Store('s3://rho-list/run', { endpoint: proxy.endpoint, listPageSize: 7 });
    await checkSplits(t, store);

    // Pages: a range costs its keys / 7 pages, plus at most one page that runs into the next range.
    const points = doneSplitPoints(SHARDS);
    const before = proxy.counts.byKind.LIST ?? 0;
    t.deepEqual(await listSplit(store, LAYOUT.doneDir, points, NO_PROBE), PATHS);
    const pages = (proxy.counts.byKind.LIST ?? 0) - before;
    const sorted = [...points].sort();
    const bound = [null, ...sorted].map((a, i) => PATHS.filter((k) => inKeyRange(k, a, sorted[i] ?? null)).length).reduce((a, n) => a + Math.floor(n / 7) + 1, 0);
    t.log(`${PATHS.length} keys in ${points.length + 1} ranges: ${pages} LIST pages of 7 (bound ${bound}; one listing: ${Math.ceil(PATHS.length / 7)})`);
    t.true(pages <= bound, `${pages} pages > ${bound}`);
    t.true(pages >= Math.ceil(PATHS.length / 7));

    await checkParallel(t, store);
  } finally {
    await proxy.close();
  }
});

/** Counts reads in flight at once. */
class InFlightReads extends CountingStore {
  now = 0;
  max = 0;
  override async read(rel: string) {
    this.now++;
    this.max = Math.max(this.max, this.now);
    try {
      return await super.read(rel);
    } finally {
      this.now--;
    }
  }
}

test('a rank start reads the input entries (_rho/inputs/) 32 at a time, not one after the other; same shard folders', async (t) => {
  const store = new LocalStore(join(tmp('rho-bk-entries-'), 'out'));
  const shards = Array.from({ length: 100 }, (_, i) => ({ source: `/data/in-${i}.jsonl`, location: `/data/in-${i}.jsonl`, key: '' }));
  for (const s of shards) await store.writeAtomic(`${INPUTS_DIR}/${shardKey(s.source)}.json`, new TextEncoder().encode(JSON.stringify({ source: s.source, location: s.location }) + '\n'));
  const s1 = new InFlightReads(store);
  const mine = shards.map((s) => ({ ...s }));
  await assignShardKeys(s1, mine, true);
  t.deepEqual(mine.map((s) => s.key), shards.map((s) => shardKey(s.source)));
  t.is(s1.count('read', INPUTS_DIR), 100);
  t.is(s1.count('create'), 0, 'every shard already had its entry');
  t.is(s1.max, 32);
  const s2 = new InFlightReads(store);
  t.deepEqual(await checkChangedInputs(s2, mine, async () => [], { rescoreChanged: false }), new Map(), 'no entry holds a fingerprint: nothing hashed');
  t.is(s2.count('read', INPUTS_DIR), 100);
  t.is(s2.max, 32);
  // What rho score does: the entries assignShardKeys read are handed on, so none is read a second time.
  const s3 = new InFlightReads(store);
  const again = shards.map((s) => ({ ...s }));
  const entries = await assignShardKeys(s3, again, true);
  t.is(entries.size, 100);
  t.deepEqual(await checkChangedInputs(s3, again, async () => [], { rescoreChanged: false, entries }), new Map());
  t.is(s3.count('read', INPUTS_DIR), 100, 'one read per input entry at a rank start, not two');
});

test('local: a listing of 1,500 records (a first page, then what is left) is cut into as few ranges as its size needs, and finds every record', async (t) => {
  const store = new LocalStore(join(tmp('rho-bk-list-'), 'out'));
  const keys = Array.from({ length: 150 }, (_, i) => `f-${String(i).padStart(4, '0')}-abcdef01`);
  const units = keys.flatMap((k) => Array.from({ length: 10 }, (_, p) => `${k}/part-${String(p).padStart(5, '0')}`)).sort();
  await mapLimit(units, 16, (u) => store.writeAtomic(`${LAYOUT.doneDir}/${u}.json`, record(u)));
  const s = new CountingStore(store);
  t.deepEqual(await listRecordUnits(s, keys), units);
  // The first page (1,000 keys) passed two thirds of the split points: ~500 keys left, one range.
  t.log(`${s.count('listRange')} listRange calls for ${units.length} records`);
  t.true(s.count('listRange') >= 2 && s.count('listRange') <= 3, `${s.count('listRange')} calls`);
  // Split points that the first page does not reach (as in a listing of ≥ 32 pages): every range is used.
  const many = new CountingStore(store);
  const manyKeys = [...keys, ...Array.from({ length: 5000 }, (_, i) => `g-${String(i).padStart(5, '0')}`)];
  t.deepEqual(await listRecordUnits(many, manyKeys), units);
  t.is(many.count('listRange'), 1 + LIST_RANGES);
});
