// Bad input, end to end through the real CLI (real exit codes): every record written into an input is
// either scored or listed in a rejects file with its row and field, and the manifest adds up per shard.
// Also: configuration errors stop before any work (exit 2), a full disk fails cleanly (exit 1) and a rerun
// completes, and --max-reject-ratio decides between exit 0 and 3.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { constants as zc, gzipSync, gunzipSync } from 'node:zlib';
import { Int32, Table, Utf8, tableToIPC, vectorFromArray } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { DuckDBInstance } from '@duckdb/node-api';
import { Tokenizer } from 'tokenizers';
import { CACHE, ROOT, TOKENIZER, modelPath, shardPath, tmp, runRho } from '../helpers.js';
import { EXIT } from '../../schemas/errors.js';
import type { Manifest } from '../../pipeline/run/manifest.js';
import type { CompletionRecord } from '../../schemas/layout.js';
import type { VerifyReport } from '../../pipeline/jobs/verify/index.js';
import { missing, requires } from '../requirements.js';

const rho = runRho;
type CliResult = Awaited<ReturnType<typeof runRho>>;
const CONTEXT = 16;
const scoreArgs = (inputs: string[], output: string, extra: string[] = []) => [
  'score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, ...inputs.flatMap((i) => ['--input', i]), '--output', output,
  '--id-field', 'id', '--context', String(CONTEXT), '--cache-dir', CACHE, '--no-progress', '--json', ...extra,
];

/** What a shard must turn into: the rows scored (with ids) and the rows rejected (with the field at fault). */
interface Expect { records: number; docs: [number, string][]; rejects: [number, string][] }
const dir = tmp('rho-badinput-');
const expected = new Map<string, Expect>();
const jsonl = (name: string, lines: (string | Buffer)[], e: Expect) => {
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat(lines.map((l) => Buffer.concat([Buffer.isBuffer(l) ? l : Buffer.from(l), Buffer.from('\n')]))));
  expected.set(p, e);
  return p;
};
const parquet = (name: string, table: Table, e: Expect) => {
  const p = join(dir, name);
  writeFileSync(p, pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, 'stream'))));
  expected.set(p, e);
  return p;
};

// ---- the bad inputs, each with what it must become ----
jsonl('malformed.jsonl', [
  '{"id":"m0","text":"A good first line."}',
  '{"id":"m1","text":"unterminated',
  '["an","array"]',
  '{"id":"m3","text":"A good line after bad ones."}',
  '', // blank lines are not records
  'not json at all',
], { records: 5, docs: [[0, 'm0'], [3, 'm3']], rejects: [[1, 'line'], [2, 'line'], [4, 'line']] });
jsonl('types.jsonl', [
  '{"id":"t0","text":42}',
  '{"id":"t1","text":null}',
  '{"id":"t2","text":["a","b"]}',
  '{"id":"t3"}',
  '{"id":"t4","text":"fine"}',
  '{"id":null,"text":"no id"}',
], { records: 6, docs: [[4, 't4']], rejects: [[0, 'text'], [1, 'text'], [2, 'text'], [3, 'text'], [5, 'id']] });
jsonl('utf8.jsonl', [
  '{"id":"u0","text":"valid before"}',
  Buffer.concat([Buffer.from('{"id":"u1","text":"bad '), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')]),
  '{"id":"u2","text":"valid after"}',
], { records: 3, docs: [[0, 'u0'], [2, 'u2']], rejects: [[1, 'line']] });
// Decision: NUL is a valid Unicode character, so a document containing it is scored (byte-level BPE has a symbol for it).
const NUL_TEXT = 'before\u0000after';
jsonl('nul.jsonl', [JSON.stringify({ id: 'nul', text: NUL_TEXT })], { records: 1, docs: [[0, 'nul']], rejects: [] });
const dupFile = jsonl('dups.jsonl', [
  '{"id":"same","text":"first copy"}', '{"id":"same","text":"second copy"}', '{"id":"other","text":"third"}',
], { records: 3, docs: [[0, 'same'], [1, 'same'], [2, 'other']], rejects: [] });
jsonl('empty.jsonl', [], { records: 0, docs: [], rejects: [] });
writeFileSync(join(dir, 'empty.jsonl'), ''); // truly 0 bytes

// A document longer than 100 windows: real prose from the fixture shard, so it tokenizes like text.
const prose = readFileSync(shardPath('clean.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { text: string }).text).join('\n\n');
const CLEAN_DOCS = prose.length ? readFileSync(shardPath('clean.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).length : 0;
const tokenizer = Tokenizer.fromFile(TOKENIZER);
let HUGE_TEXT = '';
for (let chars = 4000; ; chars += 1000) {
  HUGE_TEXT = prose.slice(0, chars);
  if ((await tokenizer.encode(HUGE_TEXT)).getIds().length >= 2000) break;
}
const HUGE_TOKENS = (await tokenizer.encode(HUGE_TEXT)).getIds().length;
jsonl('huge.jsonl', [JSON.stringify({ id: 'huge', text: HUGE_TEXT })], { records: 1, docs: [[0, 'huge']], rejects: [] });

// Truncated compressed shards: what a reader can recover is decided by independent decoders (zlib, the zstd CLI).
const longBody = (prefix: string) => Array.from({ length: 3000 }, (_, i) => JSON.stringify({ id: `${prefix}${i}`, text: `Line ${i}: ${((i * 7919) % 10007).toString(36)} the quick brown fox ${'abcdefghij'.slice(i % 10)} jumps ${i * i}` })).join('\n') + '\n';
const completeLines = (s: string) => s.split('\n').length - 1;
{
  const gz = gzipSync(longBody('g'));
  const cut = gz.subarray(0, gz.length >> 1);
  const k = completeLines(gunzipSync(cut, { finishFlush: zc.Z_SYNC_FLUSH }).toString());
  const p = join(dir, 'trunc.jsonl.gz');
  writeFileSync(p, cut);
  expected.set(p, { records: k + 1, docs: Array.from({ length: k }, (_, i) => [i, `g${i}`]), rejects: [[k, 'file']] });
}
{
  const noZstd = missing('zstd');
  if (noZstd) throw new Error(`cannot build the truncated .zst shard: ${noZstd}`);
  const plain = join(tmp('rho-badinput-zst-'), 'body.jsonl');
  writeFileSync(plain, longBody('z'));
  execFileSync('zstd', ['-q', '-f', plain, '-o', `${plain}.zst`]);
  const z = readFileSync(`${plain}.zst`);
  const cut = z.subarray(0, Math.floor(z.length * 0.8)); // past the first 128 KiB block, so some documents survive
  const p = join(dir, 'trunc.jsonl.zst');
  writeFileSync(p, cut);
  const k = completeLines(spawnSync('zstd', ['-dc', p]).stdout.toString());
  expected.set(p, { records: k + 1, docs: Array.from({ length: k }, (_, i) => [i, `z${i}`]), rejects: [[k, 'file']] });
}
parquet('nocol.parquet', new Table({ id: vectorFromArray(['p0', 'p1', 'p2'], new Utf8()), body: vectorFromArray(['x', 'y', 'z'], new Utf8()) }),
  { records: 3, docs: [], rejects: [[0, 'text'], [1, 'text'], [2, 'text']] });
parquet('wrongtype.parquet', new Table({ id: vectorFromArray(['w0', 'w1'], new Utf8()), text: vectorFromArray([1, 2], new Int32()) }),
  { records: 2, docs: [], rejects: [[0, 'text'], [1, 'text']] });

function walk(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
}
function rejectsBySource(out: string): Map<string, [number, string][]> {
  const m = new Map<string, [number, string][]>();
  for (const f of walk(join(out, '_rho', 'rejects'))) {
    for (const line of readFileSync(f, 'utf8').split('\n').filter(Boolean)) {
      const r = JSON.parse(line) as { source: string; row: number; field: string; reason: string };
      r.source = resolve(ROOT, r.source);
      if (!m.has(r.source)) m.set(r.source, []);
      m.get(r.source)!.push([r.row, r.field]);
    }
  }
  for (const v of m.values()) v.sort((a, b) => a[0] - b[0]);
  return m;
}

let main: { out: string; res: CliResult };
test.before(async () => {
  const out = tmp('rho-badinput-out-');
  main = { out, res: await rho(scoreArgs([`${dir}/*`], out, ['--max-reject-ratio', '1'])) };
});

test('every bad record is accounted for: manifest per shard, rejects with row and field, scored rows with ids', async (t) => {
  const { out, res } = main;
  t.is(res.code, EXIT.ok, res.stderr);
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Manifest;
  const rejects = rejectsBySource(out);
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const scored = (await (await con.run(`SELECT source, "row", id FROM read_parquet('${out}/*/*.parquet') ORDER BY source, "row"`)).getRowObjectsJson()) as { source: string; row: string; id: string }[];
  let totalRecords = 0;
  for (const [source, e] of expected) {
    totalRecords += e.records;
    const sh = manifest.shards.find((s) => resolve(ROOT, s.source) === source);
    t.truthy(sh, `manifest lists ${source}`);
    t.is(sh!.docs_in, e.records, `${source}: docs_in = records written`);
    t.is(sh!.scored + sh!.rejected, sh!.docs_in, `${source}: docs_in = scored + rejected`);
    t.is(sh!.scored, e.docs.length, `${source}: scored`);
    t.deepEqual(rejects.get(source) ?? [], e.rejects, `${source}: rejects (row, field)`);
    t.deepEqual(scored.filter((r) => resolve(ROOT, r.source) === source).map((r) => [Number(r.row), r.id]), e.docs, `${source}: scored rows and ids`);
  }
  t.is(manifest.totals.docs_in, totalRecords);
  t.is(manifest.totals.scored + manifest.totals.rejected, manifest.totals.docs_in);
  const summary = JSON.parse(res.stdout) as { totals: { docs_in: number } };
  t.is(summary.totals.docs_in, totalRecords, 'the --json summary agrees');
});

test('reject reasons say what is wrong', (t) => {
  const reasons = new Map<string, string[]>();
  for (const f of walk(join(main.out, '_rho', 'rejects'))) {
    for (const line of readFileSync(f, 'utf8').split('\n').filter(Boolean)) {
      const r = JSON.parse(line) as { source: string; reason: string };
      const name = relative(dir, resolve(ROOT, r.source));
      reasons.set(name, [...(reasons.get(name) ?? []), r.reason]);
    }
  }
  t.regex(reasons.get('malformed.jsonl')![0], /line 2: malformed JSON/);
  t.regex(reasons.get('types.jsonl')![0], /text field "text" is number, expected a string/);
  t.regex(reasons.get('types.jsonl')![1], /is null/);
  t.regex(reasons.get('utf8.jsonl')![0], /invalid UTF-8/);
  t.regex(reasons.get('trunc.jsonl.gz')![0], /truncated gzip stream/);
  t.regex(reasons.get('trunc.jsonl.zst')![0], /zstd/);
  t.regex(reasons.get('nocol.parquet')![0], /column "text" is missing/);
  t.regex(reasons.get('wrongtype.parquet')![0], /column "text" has type Int32/);
});

test('a NUL inside text is scored as a character; a 2000-token document is scored in >100 windows', async (t) => {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const rows = (await (await con.run(
    `SELECT id, n_tokens, token_ids, len(list_filter(ref_logprob, x -> x IS NULL)) AS nulls FROM read_parquet('${main.out}/*/*.parquet') WHERE id IN ('nul', 'huge') ORDER BY id`,
  )).getRowObjectsJson()) as { id: string; n_tokens: number; token_ids: number[]; nulls: string }[];
  const [huge, nul] = rows;
  t.is(nul.id, 'nul');
  const nulIds = (await tokenizer.encode(NUL_TEXT)).getIds();
  t.deepEqual(nul.token_ids.map(Number), nulIds, 'scored with the tokenizer\'s own ids');
  t.true(nulIds.includes(0), 'byte-level BPE: the NUL byte is token 0');
  t.is(huge.id, 'huge');
  t.is(Number(huge.n_tokens), HUGE_TOKENS);
  t.true(HUGE_TOKENS > 100 * CONTEXT);
  // S = C: the first token of every window has no context and is null; every other token is scored.
  t.is(Number(huge.nulls), Math.ceil(HUGE_TOKENS / CONTEXT));
});

test('rho verify passes on the bad-input output, warning about the duplicate ids', async (t) => {
  const v = await rho(['verify', main.out, '--json', '--no-progress']);
  t.is(v.code, EXIT.ok, v.stdout);
  const rep = JSON.parse(v.stdout) as VerifyReport;
  t.is(rep.inputs.checked.length, expected.size, 'every input re-read');
  t.deepEqual(rep.warnings.map((w) => w.check), ['duplicate-id']);
  t.regex(rep.warnings[0].message, /^1 output row\(s\) repeat the id/);
  t.regex(rep.warnings[0].message, /dups\.jsonl row 1 and .*dups\.jsonl row 0/);
});

test('an input glob that matches nothing: exit 2, nothing written', async (t) => {
  const out = join(tmp('rho-badinput-noglob-'), 'out');
  const r = await rho(scoreArgs([`${dir}/nothing-*.jsonl`], out));
  t.is(r.code, EXIT.config);
  t.regex(r.stderr, /the glob matches no file/);
  t.false(existsSync(out));
});

test('an output dir that cannot be created: exit 2 before any work', async (t) => {
  const base = tmp('rho-badinput-nowrite-');
  writeFileSync(join(base, 'file.txt'), 'a regular file, so nothing can be created under it (root ignores chmod)');
  const out = join(base, 'file.txt', 'out');
  const r = await rho(scoreArgs([dupFile], out));
  t.is(r.code, EXIT.config);
  t.regex(r.stderr, /output dir .*file\.txt\/out is not writable/);
  t.deepEqual(readdirSync(base), ['file.txt']);
});

test('--max-reject-ratio: exit 3 when exceeded, 0 when not (1 of 4 rejected)', async (t) => {
  const p = join(tmp('rho-badinput-ratio-'), 'quarter.jsonl');
  writeFileSync(p, ['{"id":"a","text":"one"}', '{"id":"b","text":"two"}', '{"id":"c","text":3}', '{"id":"d","text":"four"}'].join('\n') + '\n');
  const over = tmp('rho-badinput-ratio-out-');
  const r1 = await rho(scoreArgs([p], over, ['--max-reject-ratio', '0.2']));
  t.is(r1.code, EXIT.tooManyRejects, r1.stderr);
  t.regex(r1.stderr, /1 of 4 input documents were rejected \(25\.00% > --max-reject-ratio 0\.2\)/);
  const m = JSON.parse(readFileSync(join(over, 'manifest.json'), 'utf8')) as Manifest;
  t.deepEqual([m.totals.docs_in, m.totals.scored, m.totals.rejected], [4, 3, 1], 'the output is complete even when the ratio fails the run');
  const under = tmp('rho-badinput-ratio-out-');
  const r2 = await rho(scoreArgs([p], under, ['--max-reject-ratio', '0.3']));
  t.is(r2.code, EXIT.ok, r2.stderr);
});

requires('root')('disk full while writing: exit 1, no torn files, no record for the failed unit; after freeing space a rerun completes and verifies', async (t) => {
  const mnt = tmp('rho-badinput-full-');
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { encoding: 'utf8' });
  if (mounted.status !== 0) {
    const why = `cannot mount a 64k tmpfs (${(mounted.stderr || mounted.error?.message || '').trim()}): the disk-full path is NOT tested`;
    t.fail(why);
    return;
  }
  t.teardown(() => { spawnSync('umount', [mnt]); });
  const out = join(mnt, 'out');
  const input = shardPath('clean.jsonl');
  const args = scoreArgs([input], out, ['--unit-docs', '3', '--max-reject-ratio', '0']);
  const r = await rho(args);
  t.is(r.code, EXIT.runtime, r.stderr);
  t.regex(r.stderr, /ENOSPC|no space/i);

  const files = walk(out).map((f) => relative(out, f));
  t.deepEqual(files.filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
  const records = files.filter((f) => f.startsWith('_rho/done/')).map((f) => JSON.parse(readFileSync(join(out, f), 'utf8')) as CompletionRecord);
  const totalUnits = Math.ceil(CLEAN_DOCS / 3);
  t.true(records.length >= 1 && records.length < totalUnits, `the disk filled mid-run (${records.length} of ${totalUnits} units done)`);
  for (const rec of records) {
    const bytes = readFileSync(join(out, rec.file));
    t.is(createHash('sha256').update(bytes).digest('hex'), rec.sha256, `${rec.file} is whole`);
  }
  const donePartsFiles = new Set(records.map((x) => x.file));
  const orphans = files.filter((f) => f.endsWith('.parquet') && !donePartsFiles.has(f));
  t.true(orphans.length <= 1, 'at most the failed unit\'s data file has no record');

  // Free space and run again into the same dir: finished units are skipped, the rest completes.
  t.is(spawnSync('mount', ['-o', 'remount,size=16m', mnt]).status, 0);
  const again = await rho(args);
  t.is(again.code, EXIT.ok, again.stderr);
  const sum = JSON.parse(again.stdout) as { run: { units_skipped: number; units_written: number }; totals: { docs_in: number; scored: number; rejected: number } };
  t.is(sum.run.units_skipped, records.length);
  t.is(sum.run.units_written, totalUnits - records.length);
  t.deepEqual([sum.totals.docs_in, sum.totals.scored, sum.totals.rejected], [CLEAN_DOCS, CLEAN_DOCS, 0]);
  const v = await rho(['verify', out, '--json', '--no-progress']);
  t.is(v.code, EXIT.ok, v.stdout);
  const rep = JSON.parse(v.stdout) as VerifyReport;
  t.is(rep.checked.rows, CLEAN_DOCS);
  t.deepEqual(rep.errors, []);
  t.deepEqual(rep.warnings, []);
  mkdirSync(join(mnt, 'probe'), { recursive: true }); // the mount is still usable (teardown unmounts it)
});
