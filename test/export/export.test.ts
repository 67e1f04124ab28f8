import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { score, tmp, shardPath, modelPath, RHO, TOKENIZER, ROOT } from '../helpers.js';
import { runExport } from '../../pipeline/jobs/export.js';
import { writeScoreDir, rng } from './_handmade.js';

// ---- independent readers of the export (plain typed arrays over the bytes, as numpy would map them) ----
type Ctor<T> = { new(b: ArrayBuffer): T; BYTES_PER_ELEMENT: number };
function bin<T>(dir: string, file: string, C: Ctor<T>): T {
  const b = readFileSync(join(dir, file));
  if (b.length % C.BYTES_PER_ELEMENT !== 0) throw new Error(`${file}: ${b.length} bytes is not a multiple of ${C.BYTES_PER_ELEMENT}`);
  return new C(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}
const header = (dir: string) => JSON.parse(readFileSync(join(dir, 'header.json'), 'utf8'));
const docsOf = (dir: string) => readFileSync(join(dir, 'docs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

/** binary16 → number, written from the IEEE 754 definition (not the exporter's code). */
function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

async function duckRows(dir: string, columns: string[]) {
  const db = await DuckDBInstance.create(':memory:');
  const conn = await db.connect();
  const cols = columns.map((c) => `"${c}"`).join(', ');
  const r = await conn.runAndReadAll(`SELECT ${cols} FROM read_parquet('${dir}/**/*.parquet', filename = true, file_row_number = true) ORDER BY filename, file_row_number`);
  const rows = r.getRowObjectsJS();
  conn.closeSync();
  return rows as Record<string, unknown>[];
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [RHO, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let scored: string;
test.before(async () => {
  scored = join(tmp(), 'scores');
  await score({
    models: [{ name: 'ref', path: modelPath('llama') }, { name: 'base', path: modelPath('gpt2') }],
    inputs: [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz'), shardPath('mixed.parquet')],
    output: scored, context: 64, stride: 48, entropy: true, unitDocs: 12,
  });
});

test('memmap export matches the Parquet rows token for token (read back by DuckDB)', async (t) => {
  const out = join(tmp(), 'mm');
  const r = cli(['export', scored, '--format', 'memmap', '--output', out, '--json', '--no-progress']);
  t.is(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  const h = header(out);
  t.deepEqual(summary.header, h);
  t.is(h.format, 'rho-memmap');
  t.is(h.version, 1);
  t.is(h.token_dtype, 'uint16', 'fixture vocabulary is 1024');
  t.is(h.vocab_size, 1024);
  t.is(h.score_dtype, 'float32');
  t.deepEqual(Object.keys(h.columns), ['token_ids', 'ref_logprob', 'ref_entropy', 'base_logprob', 'base_entropy']);
  t.is(h.provenance['rho.context'], '64');
  t.truthy(h.provenance['rho.models']);
  t.false('rho.unit' in h.provenance, 'per-file key is not dataset provenance');

  const rows = await duckRows(scored, ['id', 'source', 'row', 'token_ids', 'ref_logprob', 'ref_entropy', 'base_logprob', 'base_entropy']);
  t.true(rows.length > 40 && readdirSync(scored).filter((d) => !d.startsWith('_') && !d.endsWith('.json')).length === 3);
  const ids = bin(out, 'token_ids.bin', Uint16Array);
  const offs = bin(out, 'doc_offsets.bin', BigUint64Array);
  const cols = Object.fromEntries(['ref_logprob', 'ref_entropy', 'base_logprob', 'base_entropy'].map((c) => [c, bin(out, `${c}.bin`, Float32Array)]));
  const docs = docsOf(out);
  t.is(h.n_docs, rows.length);
  t.is(docs.length, rows.length);
  t.is(offs.length, rows.length + 1);
  t.is(offs[0], 0n);
  let at = 0;
  let mismatches = 0;
  let nulls = 0;
  for (let d = 0; d < rows.length; d++) {
    const row = rows[d];
    const tok = row.token_ids as number[];
    t.is(Number(offs[d]), at);
    t.deepEqual(docs[d], { id: row.id, source: row.source, row: Number(row.row), n_tokens: tok.length });
    for (let i = 0; i < tok.length; i++, at++) {
      if (ids[at] !== tok[i]) mismatches++;
      for (const [c, arr] of Object.entries(cols)) {
        const v = (row[c] as (number | null)[])[i];
        if (v === null) { nulls++; if (!Number.isNaN(arr[at])) mismatches++; }
        else if (arr[at] !== Math.fround(v)) mismatches++;
      }
    }
  }
  t.is(mismatches, 0);
  t.true(nulls >= rows.length * 4, 'position 0 of every document is null in all four columns');
  t.is(at, h.n_tokens);
  t.is(Number(offs[rows.length]), at);
  t.is(ids.length, at);
  for (const arr of Object.values(cols)) t.is(arr.length, at);
  // Atomic: no temp dir left next to the output.
  t.deepEqual(readdirSync(join(out, '..')), ['mm']);
});

test('--score-dtype float16 writes IEEE half floats within half precision of the float32 values; --columns picks columns', async (t) => {
  const f32 = join(tmp(), 'f32');
  const f16 = join(tmp(), 'f16');
  await runExport({ input: scored, output: f32, scoreDtype: 'float32', columns: ['ref_logprob'], overwrite: false, progress: false });
  await runExport({ input: scored, output: f16, scoreDtype: 'float16', columns: ['ref_logprob', 'base_logprob'], overwrite: false, progress: false });
  t.deepEqual(readdirSync(f32).sort(), ['doc_offsets.bin', 'docs.jsonl', 'header.json', 'ref_logprob.bin', 'token_ids.bin']);
  const h = header(f16);
  t.is(h.score_dtype, 'float16');
  t.deepEqual(h.columns.ref_logprob, { file: 'ref_logprob.bin', dtype: 'float16' });
  t.deepEqual(Object.keys(h.columns), ['token_ids', 'ref_logprob', 'base_logprob']);
  const a = bin(f32, 'ref_logprob.bin', Float32Array);
  const b = bin(f16, 'ref_logprob.bin', Uint16Array);
  t.is(b.length, a.length);
  let worst = 0;
  let nanMismatch = 0;
  for (let i = 0; i < a.length; i++) {
    const v = halfToNumber(b[i]);
    if (Number.isNaN(a[i]) !== Number.isNaN(v)) nanMismatch++;
    else if (!Number.isNaN(v)) worst = Math.max(worst, Math.abs(v - a[i]) / Math.max(Math.abs(a[i]), 2 ** -14));
  }
  t.is(nanMismatch, 0);
  t.true(worst <= 2 ** -11, `relative error ${worst} exceeds half precision rounding`);
  t.true(worst > 0, 'values really were rounded to half');
});

test('token dtype: uint32 when ids need it, uint16 up to 65536 ids; vocabulary from the tokenizer when it is there', async (t) => {
  const base = tmp();
  const mk = (name: string, maxId: number, tokenizer?: { path: string; sha256: string }, format: 'parquet' | 'arrow' = 'parquet') => {
    const dir = join(base, name);
    const r = rng(maxId);
    const docs = [0, 1, 2].map((d) => {
      const n = 5 + d * 3;
      const tokens = Array.from({ length: n }, () => Math.floor(r() * maxId));
      if (d === 1) tokens[2] = maxId;
      return { id: `d${d}`, tokens, scores: { ref: tokens.map(() => -r() * 5) } };
    });
    writeScoreDir(dir, [{ rel: 's-0000/part-00000.parquet', source: 's.jsonl', docs }], { models: ['ref'], context: 4, stride: 4, tokenizer, format });
    return { dir, tokens: docs.flatMap((d) => d.tokens) };
  };
  const big = mk('big', 70000, undefined, 'arrow');
  const edge = mk('edge', 65535);
  const tokSha = createHash('sha256').update(readFileSync(TOKENIZER)).digest('hex');
  const withTok = mk('tok', 900, { path: TOKENIZER, sha256: tokSha });

  const o1 = join(base, 'o1');
  await runExport({ input: big.dir, output: o1, scoreDtype: 'float32', overwrite: false, progress: false });
  t.is(header(o1).token_dtype, 'uint32');
  t.is(header(o1).vocab_size, 70001);
  t.deepEqual([...bin(o1, 'token_ids.bin', Uint32Array)], big.tokens);

  const o2 = join(base, 'o2');
  await runExport({ input: edge.dir, output: o2, scoreDtype: 'float32', overwrite: false, progress: false });
  t.is(header(o2).token_dtype, 'uint16');
  t.is(header(o2).vocab_size, 65536);
  t.deepEqual([...bin(o2, 'token_ids.bin', Uint16Array)], edge.tokens);

  const o3 = join(base, 'o3');
  await runExport({ input: withTok.dir, output: o3, scoreDtype: 'float32', overwrite: false, progress: false });
  t.is(header(o3).vocab_size, 1024, 'tokenizer vocabulary, not the largest id seen');
  t.regex(header(o3).vocab_size_from, /tokenizer/);

  // A token id the tokenizer cannot produce: runtime failure naming file, row and field; nothing left behind.
  const bad = mk('bad', 5000, { path: TOKENIZER, sha256: tokSha });
  const o4 = join(base, 'o4');
  const r = cli(['export', bad.dir, '--format', 'memmap', '--output', o4, '--no-progress']);
  t.is(r.code, 1);
  t.regex(r.stderr, /part-00000\.parquet row \d+, field token_ids\[\d+\]: token id \d+ is outside the vocabulary \[0, 1024\)/);
  t.false(existsSync(o4));
  t.deepEqual(readdirSync(base).filter((n) => n.includes('o4')), []);
});

test('bad requests exit 2 before writing anything', async (t) => {
  const base = tmp();
  const empty = join(base, 'empty');
  mkdirSync(empty);
  let r = cli(['export', empty, '--format', 'memmap', '--output', join(base, 'o')]);
  t.is(r.code, 2);
  t.regex(r.stderr, /no score files/);

  r = cli(['export', join(base, 'missing'), '--format', 'memmap', '--output', join(base, 'o')]);
  t.is(r.code, 2);
  t.regex(r.stderr, /not a directory/);

  r = cli(['export', scored, '--format', 'memmap', '--output', join(base, 'o'), '--columns', 'ref_logprob,nope_logprob']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--columns nope_logprob: not a per-token score column .*available: ref_logprob/);

  const full = join(base, 'full');
  mkdirSync(full);
  writeFileSync(join(full, 'keep.txt'), 'x');
  r = cli(['export', scored, '--format', 'memmap', '--output', full]);
  t.is(r.code, 2);
  t.regex(r.stderr, /not empty.*--overwrite/);
  t.deepEqual(readdirSync(full), ['keep.txt']);

  // Files from two tokenizers in one dir.
  const mixed = join(base, 'mixed');
  const doc = { id: 'a', tokens: [1, 2, 3], scores: { ref: [0, -1, -2] } };
  writeScoreDir(mixed, [{ rel: 'a-0/part-00000.parquet', source: 'a', docs: [doc] }], { models: ['ref'], context: 4, stride: 4, tokenizer: { path: '/x', sha256: 'aaaaaaaaaaaaaaaa' } });
  writeScoreDir(mixed, [{ rel: 'b-0/part-00000.parquet', source: 'b', docs: [doc] }], { models: ['ref'], context: 4, stride: 4, tokenizer: { path: '/x', sha256: 'bbbbbbbbbbbbbbbb' } });
  r = cli(['export', mixed, '--format', 'memmap', '--output', join(base, 'o')]);
  t.is(r.code, 2);
  t.regex(r.stderr, /b-0\/part-00000\.parquet and .*a-0\/part-00000\.parquet come from different tokenizers/);
  t.false(existsSync(join(base, 'o')));

  // --overwrite replaces a non-empty dir.
  r = cli(['export', scored, '--format', 'memmap', '--output', full, '--overwrite', '--no-progress']);
  t.is(r.code, 0, r.stderr);
  t.false(existsSync(join(full, 'keep.txt')));
  t.true(existsSync(join(full, 'header.json')));
});
