// S3Store, S3Opener and input globs against a real Ceph radosgw on 127.0.0.1, with and without injected faults.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Store, S3Opener, resolveS3Inputs, keyGlobRegExp, s3Client } from '../../pipeline/io/s3.js';
import { openOutputStore, openerFor } from '../../pipeline/io/open.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { readShard } from '../../stages/read.js';
import { startRadosgw, type Radosgw } from '../services/radosgw.js';
import { startFaultProxy, type FaultProxy } from '../services/fault-proxy.js';
import { startService, need, type Started } from './_services.js';
import { requires } from '../requirements.js';

const withCeph = requires('ceph');
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { CACHE, RHO, TOKENIZER, modelPath, score, shardPath, tmp } from '../helpers.js';

let rgw: Started<Radosgw>;
let admin: S3Client;
const SHARDS = ['clean.jsonl', 'noisy.jsonl.gz', 'mixed.jsonl.zst', 'mixed.parquet', 'mixed.arrow'];

test.before(async () => {
  const t0 = Date.now();
  rgw = await startService(['ceph'], startRadosgw);
  if (!rgw.service) return;
  process.stderr.write(`radosgw started in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  Object.assign(process.env, rgw.service.env);
  admin = s3Client({ endpoint: rgw.service.endpoint });
  for (const b of ['rho-in', 'rho-out']) await admin.send(new CreateBucketCommand({ Bucket: b }));
  for (const s of SHARDS) await admin.send(new PutObjectCommand({ Bucket: 'rho-in', Key: `corpus/2024/${s}`, Body: readFileSync(shardPath(s)) }));
  await admin.send(new PutObjectCommand({ Bucket: 'rho-in', Key: 'corpus/README.txt', Body: 'not a shard' }));
});

test.after.always(async () => {
  await rgw?.service?.stop();
});

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

withCeph('S3Store: write, read, list, exists, remove; list is relative to the prefix and recursive', async (t) => {
  const g = need(rgw);
  const store = new S3Store('s3://rho-out/basic/run', { endpoint: g.endpoint });
  await store.checkWritable();
  t.true(store.conditionalWrites, 'radosgw honours If-None-Match: *');
  await store.writeAtomic('_rho/done/a-1/part-00000.json', bytes('{"x":1}'));
  await store.writeAtomic('_rho/done/a-1/part-00001.json', bytes('{"x":2}'));
  await store.writeAtomic('_rho/done2/other.json', bytes('{}'));
  await store.writeAtomic('a-1/part-00000.parquet', bytes('PAR1'));
  t.deepEqual(await store.list('_rho/done'), ['_rho/done/a-1/part-00000.json', '_rho/done/a-1/part-00001.json']);
  t.deepEqual(await store.list(''), ['_rho/done/a-1/part-00000.json', '_rho/done/a-1/part-00001.json', '_rho/done2/other.json', 'a-1/part-00000.parquet']);
  t.is(text(await store.read('_rho/done/a-1/part-00001.json')), '{"x":2}');
  t.is(await store.read('nope.json'), null);
  t.true(await store.exists('a-1/part-00000.parquet'));
  t.false(await store.exists('a-1/part-00001.parquet'));
  await store.remove('_rho/done');
  t.deepEqual(await store.list('_rho/done'), []);
  t.true(await store.exists('_rho/done2/other.json'), 'remove of a prefix must not touch a sibling with a longer name');
  t.is(store.root, 's3://rho-out/basic/run');
});

withCeph('S3Store: createExclusive wins once; the loser sees false and the winner\'s bytes stay', async (t) => {
  const g = need(rgw);
  const store = new S3Store('s3://rho-out/excl', { endpoint: g.endpoint });
  const results = await Promise.all(['A', 'B', 'C', 'D'].map((who) => store.createExclusive('_rho/claims/u.g0.json', bytes(who))));
  t.is(results.filter(Boolean).length, 1);
  const winner = ['A', 'B', 'C', 'D'][results.indexOf(true)];
  t.is(text(await store.read('_rho/claims/u.g0.json')), winner);
});

withCeph('S3Store: data files over the part size go up as a multipart upload and read back byte for byte', async (t) => {
  const g = need(rgw);
  const store = new S3Store('s3://rho-out/multi', { endpoint: g.endpoint, partSize: 5 * 1024 * 1024 });
  const big = new Uint8Array(12 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  await store.writeAtomic('s/part-00000.parquet', big);
  const head = await admin.send(new HeadObjectCommand({ Bucket: 'rho-out', Key: 'multi/s/part-00000.parquet' }));
  t.regex(head.ETag ?? '', /-3"$/, 'a 12 MiB object in 5 MiB parts has a multipart ETag ending in -3');
  const back = await store.read('s/part-00000.parquet');
  t.is(createHash('sha256').update(back!).digest('hex'), createHash('sha256').update(big).digest('hex'));
});

withCeph('S3Store.createWriter: a file streamed in pieces goes up as a multipart upload, appears only at close, whole; abort leaves nothing', async (t) => {
  const g = need(rgw);
  const store = new S3Store('s3://rho-out/stream', { endpoint: g.endpoint, partSize: 5 * 1024 * 1024 });
  const big = new Uint8Array(12 * 1024 * 1024 + 321);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  const w = await store.createWriter('_rho/staged/s/part-00000.0123456789abcdef.parquet.staged');
  for (let at = 0; at < big.length; at += 700_000) await w.write(big.subarray(at, Math.min(at + 700_000, big.length)));
  t.deepEqual(await store.list(''), [], 'nothing visible before close');
  await w.close('_rho/staged/s/part-00000.final.staged');
  t.deepEqual(await store.list(''), ['_rho/staged/s/part-00000.final.staged'], 'only the final name, no temp object');
  const back = await store.read('_rho/staged/s/part-00000.final.staged');
  t.is(createHash('sha256').update(back!).digest('hex'), createHash('sha256').update(big).digest('hex'));
  const a = await store.createWriter('_rho/staged/s/part-00001.0123456789abcdef.parquet.staged');
  await a.write(big.subarray(0, 6 * 1024 * 1024));
  await a.abort();
  t.deepEqual(await store.list(''), ['_rho/staged/s/part-00000.final.staged'], 'an aborted file leaves nothing');
});

withCeph('openOutputStore / openerFor pick the store by URI', async (t) => {
  const g = need(rgw);
  t.true((await openOutputStore('s3://rho-out/x', { endpoint: g.endpoint })) instanceof S3Store);
  t.true((await openOutputStore('/tmp/rho-x')) instanceof LocalStore);
  await t.throwsAsync(openOutputStore('gs://bucket/x'), { message: /unsupported scheme/ });
  t.true((await openerFor('s3://rho-in/corpus/2024/clean.jsonl', { endpoint: g.endpoint })) instanceof S3Opener);
});

withCeph('s3:// input globs match keys like shell globs (no crossing "/" without **), sorted, with sizes', async (t) => {
  const g = need(rgw);
  const all = await resolveS3Inputs('s3://rho-in/corpus/**/*.{jsonl,jsonl.gz,jsonl.zst,parquet,arrow}', { endpoint: g.endpoint });
  t.deepEqual(all.map((s) => s.source), [...SHARDS].sort().map((s) => `s3://rho-in/corpus/2024/${s}`));
  for (const s of all) t.is(s.bytes, readFileSync(shardPath(s.source.split('/').pop()!)).length);
  await t.throwsAsync(resolveS3Inputs('s3://rho-in/corpus/*.jsonl', { endpoint: g.endpoint }), { message: /matches no object/ });
  await t.throwsAsync(resolveS3Inputs('s3://rho-in/corpus/missing.jsonl', { endpoint: g.endpoint }), { message: /no such object/ });
  t.true(keyGlobRegExp('a/**/b?.jsonl').test('a/x/y/b1.jsonl'));
  t.true(keyGlobRegExp('a/**/b?.jsonl').test('a/b1.jsonl'));
  t.false(keyGlobRegExp('a/*.jsonl').test('a/x/b.jsonl'));
});

async function collect(source: string, opener: Parameters<typeof readShard>[2]) {
  const out = [];
  for await (const item of readShard(source, { textField: 'text', idField: 'id' }, opener)) out.push(item);
  return out;
}

withCeph('S3Opener reads every shard format exactly like the local file, through injected faults', async (t) => {
  const g = need(rgw);
  const proxy: FaultProxy = await startFaultProxy(g.endpoint, { every: 3 });
  try {
    const opener = new S3Opener({ endpoint: proxy.endpoint, maxBackoffMs: 200 });
    for (const s of SHARDS) {
      const local = await collect(shardPath(s), undefined);
      const remote = await collect(`s3://rho-in/corpus/2024/${s}`, opener);
      t.true(local.length > 0);
      // Same items; only `source` differs (it is the URI as given).
      const norm = (items: typeof local, src: string) => JSON.stringify(items).split(JSON.stringify(src).slice(1, -1)).join('SRC');
      t.is(norm(remote, `s3://rho-in/corpus/2024/${s}`), norm(local, shardPath(s)), s);
    }
    t.log(proxy.counts);
    t.true(proxy.counts.slowDown > 0 && proxy.counts.resetBefore > 0 && proxy.counts.lostResponse > 0, JSON.stringify(proxy.counts));
    t.true(proxy.counts.cutBody > 0, `some GET bodies were cut halfway: ${JSON.stringify(proxy.counts)}`);
  } finally {
    await proxy.close();
  }
});

withCeph('S3Store through injected faults: every write lands once, exclusive creates stay exclusive', async (t) => {
  const g = need(rgw);
  const proxy = await startFaultProxy(g.endpoint, { every: 3 });
  try {
    const store = new S3Store('s3://rho-out/faulty', { endpoint: proxy.endpoint, maxBackoffMs: 200 });
    await store.checkWritable();
    for (let i = 0; i < 20; i++) await store.writeAtomic(`d/f${i}.json`, bytes(`v${i}`));
    // 20 units, each claimed by two racing runners: exactly one wins each, even when a winner's answer was lost.
    let wins = 0;
    for (let i = 0; i < 20; i++) {
      const r = await Promise.all([store.createExclusive(`c/u${i}.json`, bytes(`A${i}`)), store.createExclusive(`c/u${i}.json`, bytes(`B${i}`))]);
      t.is(r.filter(Boolean).length, 1, `unit ${i}: ${JSON.stringify(r)}`);
      t.is(text(await store.read(`c/u${i}.json`)), r[0] ? `A${i}` : `B${i}`);
      wins++;
    }
    t.is(wins, 20);
    proxy.enabled = false;
    t.deepEqual(await store.list('d'), Array.from({ length: 20 }, (_, i) => `d/f${i}.json`).sort());
    for (let i = 0; i < 20; i++) t.is(text(await store.read(`d/f${i}.json`)), `v${i}`);
    t.log(proxy.counts);
    t.true(proxy.counts.lostResponse > 0 && proxy.counts.slowDown > 0);
  } finally {
    await proxy.close();
  }
});

withCeph('a store that ignores If-None-Match is detected at start-up; "require" refuses it, "auto" falls back', async (t) => {
  const g = need(rgw);
  const proxy = await startFaultProxy(g.endpoint, { every: 1_000_000 });
  proxy.ignoreIfNoneMatch = true;
  try {
    await t.throwsAsync(new S3Store('s3://rho-out/weak', { endpoint: proxy.endpoint, conditionalWrites: 'require' }).checkWritable(), { message: /ignores conditional writes/ });
    const store = new S3Store('s3://rho-out/weak', { endpoint: proxy.endpoint, settleMs: 50 });
    await store.checkWritable();
    t.false(store.conditionalWrites);
    t.true(await store.createExclusive('c/x.json', bytes('first')));
    t.false(await store.createExclusive('c/x.json', bytes('second')));
    t.is(text(await store.read('c/x.json')), 'first');
  } finally {
    await proxy.close();
  }
});

// Serial: it changes AWS_SECRET_ACCESS_KEY for a moment, which concurrent tests must not see.
withCeph.serial('bad endpoint, bad credentials, missing bucket: clear errors from checkWritable, fast', async (t) => {
  const g = need(rgw);
  const t0 = Date.now();
  await t.throwsAsync(new S3Store('s3://rho-out/x', { endpoint: 'http://127.0.0.1:9' }).checkWritable(), { message: /cannot be reached/ });
  t.true(Date.now() - t0 < 15_000, `an unreachable endpoint failed after ${Date.now() - t0} ms`);
  await t.throwsAsync(new S3Store('s3://no-such-bucket-rho/x', { endpoint: g.endpoint }).checkWritable(), { message: /no-such-bucket-rho.*does not exist/ });
  const saved = process.env.AWS_SECRET_ACCESS_KEY;
  process.env.AWS_SECRET_ACCESS_KEY = 'wrong-secret';
  try {
    // A fresh region key, so no client with cached credentials is reused.
    await t.throwsAsync(new S3Store('s3://rho-out/x', { endpoint: g.endpoint, region: 'eu-bad-1' }).checkWritable(), { message: /credentials were refused/ });
  } finally {
    process.env.AWS_SECRET_ACCESS_KEY = saved;
  }
});

// ---- the CLI end to end: shards read from a bucket, results written to a bucket ----

function rho(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(RHO, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
  });
}

const CLI_SHARDS = ['clean.jsonl', 'noisy.jsonl.gz', 'mixed.parquet'];
const scoreArgs = (input: string, output: string, endpoint: string) => ['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', input, '--output', output,
  '--id-field', 'id', '--context', '64', '--stride', '32', '--unit-docs', '4', '--max-reject-ratio', '1', '--no-progress', '--json', '--cache-dir', CACHE, '--s3-endpoint', endpoint];

/** Copy everything under an s3:// prefix to a local dir (through a fault-free connection). */
async function download(endpoint: string, uri: string): Promise<string> {
  const dir = tmp('rho-s3-dl-');
  const store = new S3Store(uri, { endpoint });
  for (const rel of await store.list('')) {
    const p = join(dir, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, (await store.read(rel))!);
  }
  return dir;
}

/** id → [token_ids, ref_logprob] of every row, read by DuckDB; plus row and distinct-row counts. */
async function scores(dir: string) {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const rows = (await (await con.run(`SELECT id, CAST(token_ids AS VARCHAR), CAST(ref_logprob AS VARCHAR) FROM read_parquet('${dir}/**/*.parquet') ORDER BY id`)).getRows()) as [string, string, string][];
  const [[distinct]] = (await (await con.run(`SELECT count(DISTINCT source || '#' || row) FROM read_parquet('${dir}/**/*.parquet')`)).getRows()) as [bigint][];
  return { rows, distinct: Number(distinct) };
}

function checkRecords(t: import('ava').ExecutionContext, dir: string) {
  const recs = readdirRecursive(join(dir, '_rho', 'done')).map((f) => JSON.parse(readFileSync(f, 'utf8')) as { file: string; sha256: string });
  for (const r of recs) t.is(createHash('sha256').update(readFileSync(join(dir, r.file))).digest('hex'), r.sha256, r.file);
  return recs.length;
}

function readdirRecursive(d: string): string[] {
  return readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? readdirRecursive(join(d, n)) : [join(d, n)]));
}

let localRun: Awaited<ReturnType<typeof scores>> | null = null;
async function localScores() {
  if (!localRun) {
    const out = tmp('rho-s3-local-');
    await score({ inputs: CLI_SHARDS.map(shardPath), output: out, unitDocs: 4, context: 64, stride: 32 });
    localRun = await scores(out);
  }
  return localRun;
}

withCeph('rho score reads shards from a bucket (glob) and writes results to a bucket: same scores as a local run', async (t) => {
  const g = need(rgw);
  const r = await rho(scoreArgs('s3://rho-in/corpus/2024/*.{jsonl,jsonl.gz,parquet}', 's3://rho-out/cli-run', g.endpoint), g.env);
  t.is(r.code, 0, r.stderr);
  const dir = await download(g.endpoint, 's3://rho-out/cli-run');
  const units = checkRecords(t, dir);
  const got = await scores(dir);
  const want = await localScores();
  t.true(units > 3);
  t.is(got.rows.length, got.distinct);
  t.deepEqual(got.rows, want.rows, 'token ids and log-probs equal the local run, document by document');
  const st = await rho(['status', 's3://rho-out/cli-run', '--s3-endpoint', g.endpoint, '--json'], g.env);
  t.is(st.code, 0, st.stderr);
  t.true(JSON.parse(st.stdout).complete);
  // rho verify works on the bucket itself, inputs (also in a bucket) re-read and accounted for.
  const v = await rho(['verify', 's3://rho-out/cli-run', '--s3-endpoint', g.endpoint, '--inputs', '--json', '--no-progress'], g.env);
  t.is(v.code, 0, v.stdout + v.stderr);
  const report = JSON.parse(v.stdout);
  t.true(report.ok);
  t.true(report.inputs.checked.length >= 3, JSON.stringify(report.inputs));
  t.true(report.inputs.checked.every((s: string) => s.startsWith('s3://')));
});

withCeph('rho score through injected S3 faults (503 SlowDown, resets, lost answers, cut bodies) completes with nothing lost or duplicated', async (t) => {
  const g = need(rgw);
  const proxy = await startFaultProxy(g.endpoint, { every: 4 });
  try {
    const r = await rho(scoreArgs('s3://rho-in/corpus/2024/*.{jsonl,jsonl.gz,parquet}', 's3://rho-out/faulty-run', proxy.endpoint), g.env);
    t.is(r.code, 0, r.stderr);
    t.log(proxy.counts);
    t.true(proxy.counts.slowDown > 0 && proxy.counts.resetBefore > 0 && proxy.counts.lostResponse > 0, JSON.stringify(proxy.counts));
  } finally {
    await proxy.close();
  }
  const dir = await download(g.endpoint, 's3://rho-out/faulty-run');
  checkRecords(t, dir);
  const got = await scores(dir);
  t.is(got.rows.length, got.distinct, 'no document twice');
  t.deepEqual(got.rows, (await localScores()).rows, 'every document present, with the scores of a fault-free run');
  t.deepEqual(readdirRecursive(dir).filter((f) => f.includes('_rho/claims')), [], 'no claim left behind');
});

withCeph('rho score with a bad S3 endpoint, a missing bucket or bad credentials exits 2 before any work', async (t) => {
  const g = need(rgw);
  const local = shardPath('clean.jsonl');
  const a = await rho(scoreArgs(local, 's3://rho-out/x', 'http://127.0.0.1:9'), g.env);
  t.is(a.code, 2);
  t.regex(a.stderr, /cannot be reached/);
  const b = await rho(scoreArgs(local, 's3://rho-missing-bucket/x', g.endpoint), g.env);
  t.is(b.code, 2);
  t.regex(b.stderr, /rho-missing-bucket.*does not exist/);
  const c = await rho(scoreArgs(local, 's3://rho-out/x', g.endpoint), { ...g.env, AWS_SECRET_ACCESS_KEY: 'wrong' });
  t.is(c.code, 2);
  t.regex(c.stderr, /credentials were refused/);
  const d = await rho(scoreArgs('s3://rho-in/nothing/*.jsonl', 's3://rho-out/x', g.endpoint), g.env);
  t.is(d.code, 2);
  t.regex(d.stderr, /matches no object/);
});
