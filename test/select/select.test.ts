import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { score, tmp, shardPath, modelPath, RHO, ROOT, readTable } from '../helpers.js';
import { runSelect, type SelectConfig } from '../../pipeline/jobs/select.js';
import { runExport } from '../../pipeline/jobs/export.js';
import { writeScoreDir, rng, type HandFile } from '../export/_handmade.js';

// ---------------------------------------------------------------------------------------------------------
// The expected selection, computed independently of stages/select.ts: flatten tokens in training order,
// split into scopes, sort each scope's scored tokens by (score desc, position asc), keep ceil(p*N/q).
// ---------------------------------------------------------------------------------------------------------
interface Tok { doc: number; score: number; scored: boolean; index: number }

function expectedMask(toks: Tok[], scopeOf: (t: Tok) => number | string, p: number, q: number): boolean[] {
  const scopes = new Map<number | string, Tok[]>();
  for (const t of toks) {
    const k = scopeOf(t);
    if (!scopes.has(k)) scopes.set(k, []);
    scopes.get(k)!.push(t);
  }
  const keep = new Array<boolean>(toks.length).fill(false);
  for (const list of scopes.values()) {
    const cand = list.filter((t) => t.scored);
    const m = Math.ceil((p * cand.length) / q); // integer arithmetic: exact
    cand.sort((a, b) => b.score - a.score || a.index - b.index);
    for (const t of cand.slice(0, m)) keep[t.index] = true;
  }
  return keep;
}

let db: DuckDBConnection;
test.before(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
});

async function duck(sql: string): Promise<Record<string, unknown>[]> {
  return (await db.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}
const allRows = (dir: string, cols: string) =>
  duck(`SELECT ${cols} FROM read_parquet('${dir}/**/*.parquet', filename = true, file_row_number = true) ORDER BY filename, file_row_number`);

/** Tokens of a dir in training order (files by path, rows in order) with the score computed from the columns. */
async function tokensOf(dir: string, by: 'ref_loss' | 'excess'): Promise<{ toks: Tok[]; rows: Record<string, unknown>[] }> {
  const rows = await allRows(dir, by === 'excess' ? '*, ref_logprob AS r, base_logprob AS b' : '*, ref_logprob AS r');
  const toks: Tok[] = [];
  rows.forEach((row, doc) => {
    const r = row.r as (number | null)[];
    const b = row.b as (number | null)[] | undefined;
    r.forEach((rv, i) => {
      const bv = b ? b[i] : 0;
      const scored = rv !== null && bv !== null;
      toks.push({ doc, score: scored ? rv! - (b ? bv! : 0) : NaN, scored, index: toks.length });
    });
  });
  return { toks, rows };
}

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [RHO, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const base: Omit<SelectConfig, 'input' | 'output' | 'ratio' | 'by' | 'scope'> = {
  batchTokens: 1 << 20, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: false, progress: false,
};

// Hand-made data: C = S = 8, so positions 0, 8, 16, ... have no score. Scores are multiples of 0.5 (many
// ties). Every fourth document has 6 tokens (N = 5 scored).
const C = 8;
function handFiles(seed: number, files: number, docsPerFile: number, models: string[]): HandFile[] {
  const r = rng(seed);
  const out: HandFile[] = [];
  for (let f = 0; f < files; f++) {
    const docs = Array.from({ length: docsPerFile }, (_, d) => {
      const n = d % 4 === 0 ? 6 : 1 + Math.floor(r() * 30);
      const tokens = Array.from({ length: n }, () => Math.floor(r() * 1000));
      const scores: Record<string, number[]> = {};
      for (const m of models) scores[m] = tokens.map(() => -Math.floor(r() * 8) / 2);
      return { id: `f${f}d${d}`, tokens, scores };
    });
    // Two shards, the first with two parts: training order crosses both kinds of file boundary.
    const rel = f < 2 ? `a-00000000/part-0000${f}.parquet` : `b-00000000/part-0000${f - 2}.parquet`;
    out.push({ rel, source: f < 2 ? 'a.jsonl' : 'b.jsonl', docs });
  }
  return out;
}

for (const { scope, by, p, q, batchTokens } of [
  { scope: 'document', by: 'excess', p: 3, q: 5, batchTokens: 0 },
  { scope: 'document', by: 'ref_loss', p: 1, q: 10, batchTokens: 0 },
  { scope: 'batch', by: 'excess', p: 3, q: 5, batchTokens: 37 },
  { scope: 'batch', by: 'ref_loss', p: 7, q: 10, batchTokens: 100 },
  { scope: 'global', by: 'excess', p: 3, q: 5, batchTokens: 0 },
  { scope: 'global', by: 'ref_loss', p: 1, q: 1, batchTokens: 0 },
] as const) {
  test(`${scope} scope, by ${by}, ratio ${p}/${q}: exactly the top ceil(k*N) per scope, ties to earlier tokens, nulls never`, async (t) => {
    const dir = tmp();
    const input = join(dir, 'in');
    writeScoreDir(input, handFiles(p * 100 + q + batchTokens, 3, 40, ['ref', 'base']), { models: ['ref', 'base'], context: C, stride: C });
    const output = join(dir, 'out');
    const report = await runSelect({ ...base, input, output, ratio: p / q, by, scope, batchTokens: batchTokens || 1 });

    const { toks, rows: inRows } = await tokensOf(input, by);
    // The null rule, independently: with S = C, every multiple of C has no score.
    let i = 0;
    for (const row of inRows) for (let pos = 0; pos < (row.token_ids as number[]).length; pos++, i++) t.is(toks[i].scored, pos % C !== 0);

    const scopeOf = scope === 'document' ? (x: Tok) => x.doc : scope === 'batch' ? (x: Tok) => Math.floor(x.index / batchTokens) : () => 0;
    const want = expectedMask(toks, scopeOf, p, q);
    const outRows = await allRows(output, 'token_ids, select_mask, labels');
    const got = outRows.flatMap((r) => r.select_mask as boolean[]);
    t.is(got.length, want.length);
    const wrong = got.map((g, k) => (g !== want[k] ? k : -1)).filter((k) => k >= 0);
    t.deepEqual(wrong, [], `tokens selected differently from the plain sort: ${wrong.slice(0, 10).join(', ')}`);
    for (const k of toks.keys()) if (!toks[k].scored) t.false(got[k]);
    // labels: the token id where selected, -100 elsewhere.
    let labelErrors = 0;
    for (const r of outRows) {
      const ids = r.token_ids as number[];
      const m = r.select_mask as boolean[];
      (r.labels as number[]).forEach((l, k) => { if (l !== (m[k] ? ids[k] : -100)) labelErrors++; });
    }
    t.is(labelErrors, 0);

    const selected = want.filter(Boolean).length;
    const scored = toks.filter((x) => x.scored).length;
    t.is(report.totals.selected, selected);
    t.is(report.totals.scored, scored);
    t.is(report.totals.tokens, toks.length);
    t.is(report.mode, 'exact');
    t.deepEqual(report.sources.map((s) => s.source), ['a.jsonl', 'b.jsonl']);
    t.is(report.sources[0].selected + report.sources[1].selected, selected);
    if (scope === 'global') {
      const kept = toks.filter((x) => want[x.index]).map((x) => x.score);
      t.is(report.threshold, Math.min(...kept));
    } else {
      t.is(typeof report.threshold, 'object');
    }
  });
}

test('ties: equal scores keep the earliest tokens; position 0 is never kept, even at ratio 1', async (t) => {
  const dir = tmp();
  const input = join(dir, 'in');
  const ones = (n: number) => Array.from({ length: n }, () => -1);
  writeScoreDir(input, [{ rel: 's-0/part-00000.parquet', source: 's', docs: [
    { id: 'x', tokens: Array.from({ length: 11 }, (_, k) => 100 + k), scores: { ref: ones(11) } },
  ] }], { models: ['ref'], context: 16, stride: 16 });
  const half = await runSelect({ ...base, input, output: join(dir, 'half'), ratio: 0.5, by: 'ref_loss', scope: 'document' });
  const rowsHalf = await allRows(join(dir, 'half'), 'select_mask, labels');
  t.deepEqual(rowsHalf[0].select_mask, [false, true, true, true, true, true, false, false, false, false, false]);
  t.deepEqual(rowsHalf[0].labels, [-100, 101, 102, 103, 104, 105, -100, -100, -100, -100, -100]);
  t.is(half.totals.scored, 10);
  const all = await runSelect({ ...base, input, output: join(dir, 'all'), ratio: 1, by: 'ref_loss', scope: 'global' });
  const rowsAll = await allRows(join(dir, 'all'), 'select_mask');
  t.deepEqual(rowsAll[0].select_mask, [false, ...Array(10).fill(true)]);
  t.is(all.totals.fraction, 1);
});

test('rounding: ceil(k*N) counts k*N as an integer when it is one up to float error (0.55 * 100 keeps 55)', async (t) => {
  t.is(0.55 * 100, 55.00000000000001, 'the float product really overshoots');
  const dir = tmp();
  const input = join(dir, 'in');
  const r = rng(3);
  const tokens = Array.from({ length: 101 }, () => Math.floor(r() * 1000));
  writeScoreDir(input, [{ rel: 's-0/part-00000.parquet', source: 's', docs: [
    { id: 'x', tokens, scores: { ref: tokens.map(() => -r() * 5) } },
    { id: 'y', tokens: tokens.slice(0, 11), scores: { ref: tokens.slice(0, 11).map(() => -r() * 5) } },
  ] }], { models: ['ref'], context: 128, stride: 128 });
  const rep = await runSelect({ ...base, input, output: join(dir, 'o'), ratio: 0.55, by: 'ref_loss', scope: 'document' });
  const rows = await allRows(join(dir, 'o'), 'select_mask');
  t.is((rows[0].select_mask as boolean[]).filter(Boolean).length, 55); // 11 * 100 / 20, in integers
  t.is((rows[1].select_mask as boolean[]).filter(Boolean).length, Math.ceil((11 * 10) / 20)); // 5.5 -> 6
  t.is(rep.totals.selected, 61);
});

test('global scope from the sketch: threshold within alpha of the exact one, achieved fraction inside the band it allows', async (t) => {
  const dir = tmp();
  const input = join(dir, 'in');
  const r = rng(99);
  const files: HandFile[] = [0, 1, 2].map((f) => ({
    rel: `s${f}-0/part-00000.parquet`, source: `s${f}`,
    docs: Array.from({ length: 150 }, (_, d) => {
      const n = 50 + Math.floor(r() * 100);
      return { id: `${f}-${d}`, tokens: Array.from({ length: n }, () => Math.floor(r() * 1000)), scores: { ref: Array.from({ length: n }, () => -r() * 8 - 0.01) } };
    }),
  }));
  writeScoreDir(input, files, { models: ['ref'], context: 64, stride: 32 });
  const alpha = 0.01;
  const ratio = 0.6;
  const out = join(dir, 'out');
  const rep = await runSelect({ ...base, input, output: out, ratio, by: 'ref_loss', scope: 'global', exact: false, sketchAccuracy: alpha });
  t.is(rep.mode, 'sketch');

  const { toks } = await tokensOf(input, 'ref_loss');
  const scores = toks.filter((x) => x.scored).map((x) => x.score).sort((a, b) => b - a);
  const m = Math.ceil((3 * scores.length) / 5); // ratio 0.6, in integers
  const exact = scores[m - 1];
  const thr = rep.threshold as number;
  t.true(Math.abs(thr - exact) <= alpha * Math.abs(exact), `sketch threshold ${thr} vs exact ${exact}`);
  const atLeast = (v: number) => scores.filter((s) => s >= v).length;
  const lo = atLeast(exact + alpha * Math.abs(exact));
  const hi = atLeast(exact - alpha * Math.abs(exact));
  t.true(rep.totals.selected >= lo && rep.totals.selected <= hi, `selected ${rep.totals.selected} outside [${lo}, ${hi}]`);
  t.true(Math.abs(rep.totals.fraction - ratio) < 0.01, `fraction ${rep.totals.fraction}`);
  t.log(`N=${scores.length} exact=${exact} sketch=${thr} fraction=${rep.totals.fraction}`);
  // Threshold mode keeps exactly the tokens with score >= threshold.
  const got = (await allRows(out, 'select_mask')).flatMap((x) => x.select_mask as boolean[]);
  t.deepEqual(got, toks.map((x) => x.scored && x.score >= thr));
  const kv = await duck(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata('${out}/s0-0/part-00000.parquet')`);
  const meta = Object.fromEntries(kv.map((x) => [x.k, x.v]));
  t.is(meta['rho.select.mode'], 'sketch');
  t.is(meta['rho.select.sketch_accuracy'], String(alpha));
  t.is(Number(meta['rho.select.threshold']), thr);

  // Automatic choice: over the in-memory limit the sketch decides, under it the count is exact.
  const auto = await runSelect({ ...base, input, output: join(dir, 'auto'), ratio, by: 'ref_loss', scope: 'global', exactLimitTokens: 1000 });
  t.is(auto.mode, 'sketch');
  const ex = await runSelect({ ...base, input, output: join(dir, 'ex'), ratio, by: 'ref_loss', scope: 'global' });
  t.is(ex.mode, 'exact');
  t.is(ex.totals.selected, m);
  t.is(ex.threshold, exact);
});

test('real score output: CLI select keeps every column and metadata key, adds BOOLEAN[] / INTEGER[]; export carries them', async (t) => {
  const dir = tmp();
  const scored = join(dir, 'scores');
  await score({
    models: [{ name: 'ref', path: modelPath('llama') }, { name: 'base', path: modelPath('gpt2') }],
    inputs: [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz')], output: scored, context: 64, stride: 64, unitDocs: 16,
  });
  const out = join(dir, 'sel');
  const r = cli(['select', scored, '--output', out, '--ratio', '0.6', '--by', 'excess', '--scope', 'batch', '--batch-tokens', '2048', '--json', '--no-progress']);
  t.is(r.code, 0, r.stderr);
  const rep = JSON.parse(r.stdout);
  t.is(rep.scope, 'batch');
  t.is(rep.batch_tokens, 2048);
  t.is(rep.sources.length, 2);
  t.true(rep.threshold.min <= rep.threshold.median && rep.threshold.median <= rep.threshold.max);

  // Same file layout and names.
  const list = (d: string) => readdirSync(d, { recursive: true }).map(String).filter((p) => p.endsWith('.parquet')).sort();
  t.deepEqual(list(out), list(scored));
  t.true(list(out).length >= 3);
  // Types as DuckDB sees them.
  const types = Object.fromEntries((await duck(`DESCRIBE SELECT * FROM read_parquet('${out}/**/*.parquet')`)).map((x) => [x.column_name, x.column_type]));
  t.is(types.select_mask, 'BOOLEAN[]');
  t.is(types.labels, 'INTEGER[]');
  // Every other column unchanged, row for row.
  const cols = 'id, source, "row", token_ids, ref_logprob, base_logprob, n_tokens, ref_loss_mean, base_loss_mean';
  const diff = await duck(`SELECT count(*)::INTEGER AS n FROM (SELECT ${cols} FROM read_parquet('${scored}/**/*.parquet') EXCEPT ALL SELECT ${cols} FROM read_parquet('${out}/**/*.parquet'))`);
  t.is(diff[0].n, 0);
  const counts = await duck(`SELECT (SELECT count(*) FROM read_parquet('${scored}/**/*.parquet'))::INTEGER AS a, (SELECT count(*) FROM read_parquet('${out}/**/*.parquet'))::INTEGER AS b`);
  t.is(counts[0].a, counts[0].b);
  // Metadata: every key of the score file, same value, plus the selection's.
  const f = list(scored)[0];
  const kvOf = async (p: string) => Object.fromEntries((await duck(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata('${p}')`)).map((x) => [x.k, x.v]));
  const before = await kvOf(join(scored, f));
  const after = await kvOf(join(out, f));
  for (const [k, v] of Object.entries(before)) if (k !== 'ARROW:schema' && k !== 'rho') t.is(after[k], v, k);
  // The combined key is rebuilt: the score file's object plus the selection under `select` (issue 14).
  const combined = JSON.parse(after.rho) as Record<string, unknown> & { select: { ratio: number; layout: string } };
  t.is(combined.select.ratio, 0.6);
  t.is(combined.select.layout, 'full');
  const { select: _s, ...rest } = combined;
  void _s;
  t.deepEqual(rest, JSON.parse(before.rho));
  t.is(after['rho.select.ratio'], '0.6');
  t.is(after['rho.select.by'], 'excess');
  t.is(after['rho.select.scope'], 'batch');
  t.is(after['rho.select.score'], 'ref_logprob - base_logprob');
  t.deepEqual(JSON.parse(after['rho.select.threshold']), rep.threshold);

  // The selection itself, recomputed from what DuckDB reads.
  const { toks } = await tokensOf(scored, 'excess');
  const want = expectedMask(toks, (x) => Math.floor(x.index / 2048), 3, 5);
  const got = (await allRows(out, 'select_mask')).flatMap((x) => x.select_mask as boolean[]);
  t.deepEqual(got, want);

  // Bookkeeping follows: completion records point at the new files, manifest lists them.
  const rec = JSON.parse(readFileSync(join(out, '_rho/done', f.replace(/\.parquet$/, '.json')), 'utf8'));
  t.is(rec.file, f);
  t.is(rec.bytes, readFileSync(join(out, f)).length);
  t.truthy(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')).selection);

  // Export of a selected dir carries labels.bin (int32) and select_mask.bin (uint8), token for token.
  const mm = join(dir, 'mm');
  const h = (await runExport({ input: out, output: mm, scoreDtype: 'float32', overwrite: false, progress: false })).header;
  t.deepEqual(h.columns.labels, { file: 'labels.bin', dtype: 'int32' });
  t.deepEqual(h.columns.select_mask, { file: 'select_mask.bin', dtype: 'uint8' });
  const lb = readFileSync(join(mm, 'labels.bin'));
  const labels = new Int32Array(lb.buffer, lb.byteOffset, lb.length / 4);
  const mask = [...readFileSync(join(mm, 'select_mask.bin'))];
  const rows = await allRows(out, 'labels');
  t.deepEqual([...labels], rows.flatMap((x) => x.labels as number[]));
  t.deepEqual(mask, got.map((g) => (g ? 1 : 0)));
});

test('--format arrow writes Arrow IPC files with the same selection', async (t) => {
  const dir = tmp();
  const input = join(dir, 'in');
  writeScoreDir(input, handFiles(5, 3, 10, ['ref']), { models: ['ref'], context: C, stride: C });
  const a = await runSelect({ ...base, input, output: join(dir, 'pq'), ratio: 0.6, by: 'ref_loss', scope: 'batch', batchTokens: 50 });
  const b = await runSelect({ ...base, input, output: join(dir, 'ar'), ratio: 0.6, by: 'ref_loss', scope: 'batch', batchTokens: 50, format: 'arrow' });
  t.is(a.totals.selected, b.totals.selected);
  const arrowFiles = readdirSync(join(dir, 'ar'), { recursive: true }).map(String).filter((p) => p.endsWith('.arrow')).sort();
  t.is(arrowFiles.length, 3);
  const fromArrow = arrowFiles.flatMap((p) => readTable(join(dir, 'ar', p)).toArray().flatMap((row) => [...row.select_mask] as boolean[]));
  const fromParquet = (await allRows(join(dir, 'pq'), 'select_mask')).flatMap((x) => x.select_mask as boolean[]);
  t.deepEqual(fromArrow, fromParquet);
});

test('bad requests exit 2 with a message naming the problem, and write nothing', async (t) => {
  const dir = tmp();
  const refOnly = join(dir, 'ref-only');
  const doc = { id: 'a', tokens: [1, 2, 3], scores: { ref: [0, -1, -2], base: [0, -2, -1] } };
  writeScoreDir(refOnly, [{ rel: 'a-0/part-00000.parquet', source: 'a', docs: [doc] }], { models: ['ref'], context: 4, stride: 4 });
  const out = join(dir, 'out');
  const sel = (input: string, ...extra: string[]) => cli(['select', input, '--output', out, '--ratio', '0.6', '--by', 'excess', '--scope', 'global', ...extra]);

  let r = sel(refOnly);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--by excess needs the base model's column base_logprob.*models \[ref\]/);

  for (const ratio of ['0', '1.5', '-0.2']) {
    r = cli(['select', refOnly, '--output', out, '--ratio', ratio, '--by', 'ref_loss', '--scope', 'global']);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /--ratio must be in \(0, 1\]/);
  }

  const empty = join(dir, 'empty');
  mkdirSync(empty);
  r = sel(empty);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /no score files/);

  const versions = join(dir, 'versions');
  writeScoreDir(versions, [{ rel: 'a-0/part-00000.parquet', source: 'a', docs: [doc] }], { models: ['ref', 'base'], context: 4, stride: 4 });
  writeScoreDir(versions, [{ rel: 'b-0/part-00000.parquet', source: 'b', docs: [doc] }], { models: ['ref', 'base'], context: 4, stride: 4, schemaVersion: '2' });
  r = sel(versions);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /b-0\/part-00000\.parquet: schema version 2, but this rho reads version 1/);

  const models = join(dir, 'models');
  writeScoreDir(models, [{ rel: 'a-0/part-00000.parquet', source: 'a', docs: [doc] }], { models: ['ref', 'base'], context: 4, stride: 4 });
  writeScoreDir(models, [{ rel: 'b-0/part-00000.parquet', source: 'b', docs: [doc] }], { models: ['ref', 'base'], context: 4, stride: 4, modelSha: { base: 'other' } });
  r = sel(models);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /b-0\/part-00000\.parquet and .*a-0\/part-00000\.parquet come from different model sets/);

  const toks = join(dir, 'toks');
  writeScoreDir(toks, [{ rel: 'a-0/part-00000.parquet', source: 'a', docs: [doc] }], { models: ['ref'], context: 4, stride: 4, tokenizer: { path: '/t', sha256: '1111111111111111' } });
  writeScoreDir(toks, [{ rel: 'b-0/part-00000.parquet', source: 'b', docs: [doc] }], { models: ['ref'], context: 4, stride: 4, tokenizer: { path: '/t', sha256: '2222222222222222' } });
  r = cli(['select', toks, '--output', out, '--ratio', '0.6', '--by', 'ref_loss', '--scope', 'document']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /come from different tokenizers/);

  r = cli(['select', refOnly, '--output', out, '--ratio', '0.6', '--by', 'ref_loss', '--scope', 'batch', '--batch-tokens', '0']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--batch-tokens must be a positive integer/);

  t.false(existsSync(out));
  t.deepEqual(readdirSync(dir).filter((n) => n.includes('.tmp')), []);
});
