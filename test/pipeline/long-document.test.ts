// A long document scored with its tokenization forced into tiny pieces (RHO_TEST_TOKENIZE_PIECES): the
// token_ids in the output Parquet, read back with DuckDB, equal the whole text tokenized in one call of the
// tokenizer (the binding itself, the oracle), and the data file is byte-identical to a run that tokenizes the
// document whole (so the scores are unchanged too).
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Tokenizer } from 'tokenizers';
import { runRho, tmp, dataFiles, ROOT, FIX, TOKENIZER } from '../helpers.js';

const MODEL = join(FIX, 'models', 'llama', 'model.onnx');

const prose = (JSON.parse(readFileSync(join(ROOT, 'fixtures', 'corpus', 'clean_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text);

test('piecewise-tokenized long document: token_ids equal whole-text tokenization, data file byte-identical to a whole-text run', async (t) => {
  t.timeout(600_000);
  // ~40k characters: prose, runs of thousands of spaces and newlines, CJK without spaces, emoji, code.
  const text = [
    prose.slice(0, 12).join('\n\n'), ' '.repeat(3000), '東京は日本の首都です北京欢迎你中文句子'.repeat(60), '\n'.repeat(1500),
    '👨‍👩‍👧‍👦🎉👍🏽'.repeat(200), '\tdef f(x):\n\t\treturn x  # ok\n'.repeat(100), prose.slice(12, 24).join(' \t '),
  ].join('');
  const dir = tmp('rho-longdoc-');
  const input = join(dir, 'long.jsonl');
  writeFileSync(input, `${JSON.stringify({ id: 'long', text })}\n${JSON.stringify({ id: 'short', text: 'A short one.' })}\n`);
  const args = (out: string) => ['score', '--model', MODEL, '--tokenizer', TOKENIZER, '--input', input, '--output', out, '--id-field', 'id', '--append-eos', '--no-progress'];
  const pieces = join(dir, 'pieces');
  const whole = join(dir, 'whole');
  const a = await runRho(args(pieces), { RHO_TEST_TOKENIZE_PIECES: '300,64' });
  t.is(a.code, 0, a.stderr);
  const b = await runRho(args(whole));
  t.is(b.code, 0, b.stderr);
  // The variable is read on this path: a bad value is refused.
  const bad = await runRho(args(join(dir, 'bad')), { RHO_TEST_TOKENIZE_PIECES: 'x' });
  t.not(bad.code, 0);
  t.regex(bad.stderr, /RHO_TEST_TOKENIZE_PIECES/);

  const db = await (await DuckDBInstance.create(':memory:')).connect();
  const rows = (await db.runAndReadAll(`select id, token_ids from read_parquet('${pieces}/**/*.parquet') order by id`)).getRowObjectsJS() as { id: string; token_ids: number[] }[];
  t.deepEqual(rows.map((r) => r.id), ['long', 'short']);
  const tok = Tokenizer.fromFile(TOKENIZER);
  const eos = tok.tokenToId('<|eos|>') ?? -1;
  const want = [...(await tok.encode(text)).getIds()];
  const got = rows[0].token_ids.map(Number);
  t.true(want.length > 10_000, `${want.length} tokens`);
  t.deepEqual(got.slice(0, -1), want);
  t.is(got[got.length - 1], eos);

  const [fa, fb] = [dataFiles(pieces), dataFiles(whole)];
  t.is(fa.length, 1);
  t.is(fb.length, 1);
  t.true(readFileSync(fa[0]).equals(readFileSync(fb[0])), 'the data file of the piecewise run is byte-identical to the whole-text run');
});
