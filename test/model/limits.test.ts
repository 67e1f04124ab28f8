// rho score states C, S, the batch budget and the memory budget (at start and in the summary), refuses a window that
// cannot fit (exit 2, before any work, with the numbers), and refuses --context beyond a learned position table.

import test from 'ava';
import { existsSync, mkdirSync, copyFileSync, writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cleanup, REPO, tmpDir } from './_models.js';
import { runRho } from '../helpers.js';

test.after.always(cleanup);

const TOK = path.join(REPO, 'fixtures', 'tokenizer', 'tokenizer.json');
const SHARD = path.join(REPO, 'fixtures', 'shards', 'clean.jsonl');

// Its own cache dir (the models here are made per test run), through the one CLI runner of the tests.
const rho = (args: string[]) => runRho(args, { RHO_CACHE_DIR: path.join(tmpDir(), 'cache') });

test('C, S and the batch budget are printed at start and in the summary; C from config.json says so', async (t) => {
  const out = path.join(tmpDir(), 'out');
  const r = await rho(['score', '--model', path.join(REPO, 'fixtures', 'models', 'llama', 'model.onnx'), '--tokenizer', TOK, '--input', SHARD, '--output', out, '--stride', '128']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /rho score: C = 256 tokens per window \(from ref's config\.json max_position_embeddings\), S = 128/);
  t.regex(r.stderr, /rho score: batch budget 1024 tokens \(CPU default 1024\); memory budget [0-9.]+ GiB \(50% of RAM/);
  t.regex(r.stderr, /model ref: chunked head over vocabulary slices \(V = 1024\)/);
  t.regex(r.stdout, /\n {2}C = 256 tokens per window .*S = 128/);
  t.regex(r.stdout, /\n {2}batch budget 1024 tokens/);
});

test('a window that cannot fit the memory budget is refused before any work, with the numbers (exit 2)', async (t) => {
  const out = path.join(tmpDir(), 'out');
  const r = await rho(['score', '--model', path.join(REPO, 'fixtures', 'models', 'llama', 'model.onnx'), '--tokenizer', TOK, '--input', SHARD, '--output', out, '--context', '256', '--memory-budget', '64MiB']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /one window of C = 256 tokens needs about [0-9.]+ GiB .* but the memory budget is 0\.06 GiB \(--memory-budget 64MiB\)/);
  t.false(existsSync(path.join(out, 'manifest.json')));
});

test('a context from config.json larger than the budget holds is capped, and the summary says why', async (t) => {
  // The llama fixture with a config.json claiming 131072 positions (what the issue saw with a real model).
  const dir = tmpDir('rho-bigctx-');
  copyFileSync(path.join(REPO, 'fixtures', 'models', 'llama', 'model.onnx'), path.join(dir, 'model.onnx'));
  const cfg = JSON.parse(readFileSync(path.join(REPO, 'fixtures', 'models', 'llama', 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 131072 }));
  const out = path.join(tmpDir(), 'out');
  mkdirSync(path.dirname(out), { recursive: true });
  const r = await rho(['score', '--model', path.join(dir, 'model.onnx'), '--tokenizer', TOK, '--input', SHARD, '--output', out, '--memory-budget', '2GiB']);
  t.is(r.code, 0, r.stderr);
  const m = /C = (\d+) tokens per window \(from ref's config\.json max_position_embeddings, capped to (\d+) because one window of 131072 tokens does not fit the memory budget\)/.exec(r.stderr);
  t.truthy(m, r.stderr);
  t.is(m![1], m![2]);
  t.true(Number(m![1]) < 131072 && Number(m![1]) >= 256);
});

test('learned positions: --context larger than the table exits 2 before any work, naming the limit', async (t) => {
  const out = path.join(tmpDir(), 'out');
  const r = await rho(['score', '--model', path.join(REPO, 'fixtures', 'models', 'learned-pos', 'model.onnx'), '--tokenizer', TOK, '--input', SHARD, '--output', out, '--context', '64']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--context 64 is longer than the 32 positions model ref takes \(the model's learned position table \(32 rows\)\); use --context 32 or less/);
  t.false(existsSync(path.join(out, 'manifest.json')));
});
