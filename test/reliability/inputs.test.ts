// Inputs as a hostile but ordinary user gives them: one file under several spellings, inputs edited after
// scoring, configurations that fail their checks, an output dir that the inputs reach into, bad numbers.
// Each run is checked with `rho verify` (and DuckDB where the question is "what does a reader see").
import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Tokenizer } from 'tokenizers';
import { CACHE, ROOT, TOKENIZER, modelPath, readRows, score, tmp, runRho } from '../helpers.js';
import { ConfigError, EXIT } from '../../schemas/errors.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';
import { runStatus } from '../../pipeline/launch/status.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { LAYOUT } from '../../schemas/layout.js';

const rho = (args: string[], cwd = ROOT) => runRho(args, {}, { cwd });
const C = 16;
const scoreArgs = (inputs: string[], output: string, extra: string[] = []) => [
  'score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, ...inputs.flatMap((i) => ['--input', i]), '--output', output,
  '--id-field', 'id', '--context', String(C), '--cache-dir', CACHE, '--no-progress', ...extra,
];
const docs = (n: number, tag = 'd') => Array.from({ length: n }, (_, i) => JSON.stringify({ id: `${tag}${i}`, text: `Document ${i} of ${tag}: some words to score.` })).join('\n') + '\n';

async function duckCount(dir: string): Promise<number> {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const r = await con.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM read_parquet('${dir}/**/*.parquet')`);
  return Number(r.getRowObjects()[0].n);
}

async function verified(t: import('ava').ExecutionContext, dir: string) {
  const rep = await verifyOutput(dir, { inputs: true });
  t.deepEqual(rep.errors, [], 'rho verify finds no error');
  return rep;
}

test('one shard however it is spelled: relative, ./, absolute, symlink, another cwd — in one run and across runs', async (t) => {
  const base = tmp('rho-ident-');
  mkdirSync(join(base, 'data'));
  const abs = join(base, 'data', 'a.jsonl');
  writeFileSync(abs, docs(20));
  symlinkSync(abs, join(base, 'link.jsonl'));
  const out = join(base, 'out');
  const rel = relative(process.cwd(), abs);
  // One run given four spellings: one shard.
  const s1 = await score({ inputs: [rel, `./${rel}`, abs, join(base, 'link.jsonl')], output: out, context: C });
  t.is(s1.manifest.shards.length, 1);
  t.is(s1.manifest.totals.docs_in, 20);
  // Later runs: other spellings, another working directory (the CLI in `base`).
  await score({ inputs: [abs], output: out, context: C });
  const r = await rho(scoreArgs(['data/a.jsonl', './data/a.jsonl', 'link.jsonl'], out), base);
  t.is(r.code, 0, r.stderr);
  t.is(await duckCount(out), 20, 'a reader of out/**/*.parquet sees each document once');
  const rows = readRows(out);
  t.deepEqual(new Set(rows.map((x) => x.source)), new Set([rel]), 'source keeps the first spelling');
  t.is(readdirSync(out).filter((n) => !n.startsWith('_') && n !== 'manifest.json').length, 1, 'one shard folder');
  await verified(t, out);
});

test('an input edited after scoring (same size) is refused with exit 2; --rescore-changed rescores exactly its units; verify --inputs sees the edit', async (t) => {
  const base = tmp('rho-changed-');
  const a = join(base, 'a.jsonl');
  const b = join(base, 'b.jsonl');
  writeFileSync(a, docs(12, 'a'));
  writeFileSync(b, docs(12, 'b'));
  const out = join(base, 'out');
  await score({ inputs: [a, b], output: out, context: C, unitDocs: 5 });
  const bFiles = readdirSync(join(out, LAYOUT.doneDir)).filter((k) => k.startsWith('b-'));
  const before = readFileSync(join(out, LAYOUT.doneDir, bFiles[0], 'part-00000.json'), 'utf8');
  // Same size, other text: "Document 3" -> "Document X".
  const edited = readFileSync(a, 'utf8').replace('Document 3 of a', 'Document X of a');
  t.is(edited.length, readFileSync(a, 'utf8').length);
  writeFileSync(a, edited);

  const v = await verifyOutput(out, { inputs: true });
  t.true(v.errors.some((e) => e.check === 'input-changed' && e.file === a), 'verify --inputs detects a same-size edit');

  const err = await t.throwsAsync(score({ inputs: [a, b], output: out, context: C, unitDocs: 5 }));
  t.true(err instanceof ConfigError);
  t.regex(err!.message, /a\.jsonl: now \d+ bytes, sha256 .* scored as/);
  t.regex(err!.message, /--rescore-changed/);

  const s = await score({ inputs: [a, b], output: out, context: C, unitDocs: 5, rescoreChanged: true });
  t.is(s.run.units_written, 3, 'the three units of a, no unit of b');
  t.is(readFileSync(join(out, LAYOUT.doneDir, bFiles[0], 'part-00000.json'), 'utf8'), before, 'b untouched');
  const tok = Tokenizer.fromFile(TOKENIZER);
  const row3 = readRows(out).find((r) => r.id === 'a3')!;
  const want = (await tok.encode('Document X of a: some words to score.')).getIds();
  t.deepEqual([...(row3.token_ids as Iterable<number>)], want, 'row 3 holds the new text');
  await verified(t, out);

  // Appended lines: more rows; rescoring covers them, verify accounts for every row.
  writeFileSync(a, readFileSync(a, 'utf8') + docs(4, 'z'));
  t.is((await rho(scoreArgs([a, b], out, ['--unit-docs', '5']))).code, EXIT.config);
  const r = await rho(scoreArgs([a, b], out, ['--unit-docs', '5', '--rescore-changed']));
  t.is(r.code, 0, r.stderr);
  t.is(await duckCount(out), 28);
  await verified(t, out);
});

test('nothing is committed before the configuration is proven (vocabulary, learned positions, fields)', async (t) => {
  const base = tmp('rho-prove-');
  const a = join(base, 'a.jsonl');
  writeFileSync(a, docs(6));
  // 1. A tokenizer larger than the model's vocabulary: exit 2, no _rho/config.json, the corrected rerun needs no --overwrite.
  const out1 = join(base, 'out1');
  const llama2 = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama2', 'models', 'tokenizer.json');
  const bad = await rho(['score', '--model', modelPath('llama'), '--tokenizer', llama2, '--input', a, '--output', out1, '--id-field', 'id', '--context', String(C), '--no-progress']);
  t.is(bad.code, EXIT.config, bad.stderr);
  t.regex(bad.stderr, /vocabulary/);
  t.false(existsSync(join(out1, LAYOUT.config)));
  t.is((await rho(scoreArgs([a], out1))).code, 0);

  // 2. A GPT-2 export without its config.json: C defaults to 2048, beyond its 256 learned positions.
  const gpt2 = join(base, 'gpt2');
  mkdirSync(gpt2);
  copyFileSync(join(ROOT, 'fixtures', 'models', 'gpt2', 'model.onnx'), join(gpt2, 'model.onnx'));
  const out2 = join(base, 'out2');
  const g = await rho(['score', '--model', join(gpt2, 'model.onnx'), '--tokenizer', TOKENIZER, '--input', a, '--output', out2, '--id-field', 'id', '--cache-dir', CACHE, '--no-progress']);
  t.is(g.code, EXIT.config, g.stderr);
  t.regex(g.stderr, /--context 2048/);
  t.regex(g.stderr, /runs up to 256 tokens/);
  t.regex(g.stderr, /use --context 256/);
  t.false(existsSync(join(out2, LAYOUT.config)));
  const g2 = await rho(['score', '--model', join(gpt2, 'model.onnx'), '--tokenizer', TOKENIZER, '--input', a, '--output', out2, '--id-field', 'id', '--cache-dir', CACHE, '--no-progress', '--context', '256']);
  t.is(g2.code, 0, g2.stderr);
  await verified(t, out2);

  // 3. A mistyped --text-field: exit 2 naming the shard, nothing written (no rejects committed).
  const out3 = join(base, 'out3');
  const f = await rho(scoreArgs([a], out3, ['--text-field', 'txt']));
  t.is(f.code, EXIT.config, f.stderr);
  t.regex(f.stderr, /a\.jsonl: none of its first 6 record\(s\) has the --text-field "txt"/);
  t.false(existsSync(join(out3, LAYOUT.config)));
  t.false(existsSync(join(out3, LAYOUT.rejectsDir)));
  t.is((await rho(scoreArgs([a], out3))).code, 0);
  await verified(t, out3);
});

test('the output dir is rho\'s own: inputs inside it are refused, verify fails on foreign and nested Parquet, select refuses an output inside its input', async (t) => {
  const base = tmp('rho-own-');
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'data', 'a.jsonl'), docs(5));
  const out = join(base, 'data', 'out');
  t.is((await rho(scoreArgs([join(base, 'data', 'a.jsonl')], out))).code, 0);
  // A glob that covers the output dir (rho's own Parquet among the matches).
  const again = await rho(scoreArgs([join(base, 'data', '**', '*.{jsonl,parquet}')], out));
  t.is(again.code, EXIT.config, again.stderr);
  t.regex(again.stderr, /lies inside the output dir/);

  const sel = await rho(['select', out, '--output', join(out, 'selected'), '--ratio', '0.5', '--by', 'ref_loss', '--scope', 'document', '--no-progress']);
  t.is(sel.code, EXIT.config, sel.stderr);
  t.regex(sel.stderr, /lies inside the input/);

  await verified(t, out);
  // A foreign Parquet file, and a nested output dir (a select output put inside).
  const data = readdirSync(out).find((n) => !n.startsWith('_') && n !== 'manifest.json')!;
  copyFileSync(join(out, data, 'part-00000.parquet'), join(out, 'stray.parquet'));
  mkdirSync(join(out, 'nested', '_rho'), { recursive: true });
  writeFileSync(join(out, 'nested', '_rho', 'config.json'), '{}\n');
  const v = await verifyOutput(out, { inputs: false });
  t.true(v.errors.some((e) => e.check === 'foreign' && e.file === 'stray.parquet'));
  t.true(v.errors.some((e) => e.check === 'nested-output' && e.file === 'nested/_rho/config.json'));
  t.false(v.ok);
});

test('every numeric flag is checked before any work (exit 2 naming the flag)', async (t) => {
  const base = tmp('rho-flags-');
  const a = join(base, 'a.jsonl');
  writeFileSync(a, docs(2));
  for (const [flag, value] of [['--lease-seconds', '0'], ['--lease-seconds', '-5'], ['--lease-seconds', 'soon'], ['--threads', '-1'], ['--context', '1.5'], ['--stride', '0'], ['--device-id', '-1']]) {
    const out = join(base, `out${flag}${value}`);
    const r = await rho(scoreArgs([a], out, [flag, value]));
    t.is(r.code, EXIT.config, `${flag} ${value}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`${flag}`), `${flag} ${value} is named`);
    t.false(existsSync(join(out, LAYOUT.config)), `${flag} ${value}: nothing written`);
  }
});

test('status names pending units as they are (a claim\'s unit is not hashed again)', async (t) => {
  const base = tmp('rho-status-');
  const a = join(base, 'a.jsonl');
  writeFileSync(a, docs(12));
  const out = join(base, 'out');
  await score({ inputs: [a], output: out, context: C, unitDocs: 5 });
  // A crash without a manifest: part 1's record gone, its claim left behind by a dead runner.
  const shard = readdirSync(join(out, LAYOUT.doneDir))[0];
  const unit = `${shard}/part-00001`;
  const { rmSync } = await import('node:fs');
  rmSync(join(out, LAYOUT.manifest));
  rmSync(join(out, LAYOUT.doneDir, `${unit}.json`));
  mkdirSync(join(out, LAYOUT.claimsDir, shard), { recursive: true });
  writeFileSync(join(out, LAYOUT.claimsDir, `${unit}.g0.json`), JSON.stringify({ unit, gen: 0, runner: 'x', host: 'elsewhere', pid: 1, rank: 0, expires_at: 0, state: 'working' }));
  const st = await runStatus(new LocalStore(out));
  t.deepEqual(st.pending.map((p) => p.unit), [unit]);
});
