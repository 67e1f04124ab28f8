// End-to-end behaviour of `rho score` on the fixtures: the contract as other tools read it.
import test from 'ava';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { Tokenizer } from 'tokenizers';
import { FIX, ROOT, TOKENIZER, modelPath, shardPath, score, tmp, readRows, dataFiles, listValues, readTable, runRho } from '../helpers.js';
import { readShard } from '../../stages/read.js';
import { TextTokenizer } from '../../stages/tokenize.js';
import { META } from '../../schemas/contract.js';

const ALL_SHARDS = ['clean.jsonl', 'noisy.jsonl.gz', 'mixed.jsonl.zst', 'mixed.parquet', 'mixed.arrow'].map(shardPath);

const rhoCli = runRho;

async function inputDocs(path: string) {
  const out: { id: string; row: number; text: string }[] = [];
  for await (const it of readShard(path, { textField: 'text', idField: 'id' })) if (it.kind === 'doc') out.push(it.doc);
  return out;
}

test('DuckDB reads the Parquet with the contract types, the same values, and the provenance metadata', async (t) => {
  const out = tmp();
  await score({ inputs: [shardPath('clean.jsonl')], output: out, context: 64, stride: 32, entropy: true });
  const [file] = dataFiles(out);
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const types = (await (await con.run(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${file}'))`)).getRows()) as [string, string][];
  t.deepEqual(Object.fromEntries(types), {
    id: 'VARCHAR', source: 'VARCHAR', row: 'BIGINT', token_ids: 'INTEGER[]', ref_logprob: 'FLOAT[]', ref_entropy: 'FLOAT[]',
    n_tokens: 'INTEGER', ref_loss_mean: 'FLOAT',
  });
  const rows = readRows(out);
  const duck = (await (await con.run(`SELECT id, row, token_ids, ref_logprob, n_tokens, ref_loss_mean FROM read_parquet('${file}') ORDER BY row`)).getRowObjectsJson()) as Record<string, unknown>[];
  t.is(duck.length, rows.length);
  for (let i = 0; i < rows.length; i++) {
    t.is(duck[i].id, rows[i].id);
    t.deepEqual((duck[i].token_ids as number[]).map(Number), listValues(rows[i].token_ids));
    const dl = duck[i].ref_logprob as (number | null)[];
    const al = listValues(rows[i].ref_logprob);
    t.is(dl[0], null, 'position 0 is null');
    for (let j = 0; j < al.length; j++) {
      if (al[j] === null) t.is(dl[j], null);
      else t.true(Math.abs(Number(dl[j]) - (al[j] as number)) < 1e-6);
    }
    // n_tokens and loss_mean follow from the lists.
    t.is(Number(duck[i].n_tokens), al.length);
    const scored = al.filter((x): x is number => x !== null);
    if (scored.length) t.true(Math.abs(Number(duck[i].ref_loss_mean) + scored.reduce((a, b) => a + b, 0) / scored.length) < 1e-4);
    else t.is(duck[i].ref_loss_mean, null);
  }
  const kv = (await (await con.run(`SELECT decode(key) AS k, decode(value) AS v FROM parquet_kv_metadata('${file}')`)).getRowObjectsJson()) as { k: string; v: string }[];
  const meta = Object.fromEntries(kv.map((r) => [r.k, r.v]));
  t.is(meta[META.schemaVersion], '1');
  t.is(meta[META.context], '64');
  t.is(meta[META.stride], '32');
  const models = JSON.parse(meta[META.models]) as { name: string; sha256: string }[];
  t.is(models[0].name, 'ref');
  t.regex(models[0].sha256, /^[0-9a-f]{64}$/);
  t.is(JSON.parse(meta[META.tokenizer]).sha256.length, 64);
  t.deepEqual(JSON.parse(meta[META.inputs]).map((x: { source: string }) => x.source), [shardPath('clean.jsonl')]);
  // The same provenance as one JSON object under `rho`, values parsed.
  const all = JSON.parse(meta[META.all]);
  t.is(all.schema_version, 1);
  t.is(all.context, 64);
  t.deepEqual(all.models, models);
  t.is(all.unit.rows, 30);
  // The manifest carries the same provenance plus the accounting.
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
  t.is(manifest.provenance[META.models], meta[META.models]);
  t.is(manifest.totals.docs_in, manifest.totals.scored + manifest.totals.rejected);
  t.is(manifest.schema_version, 1);
  t.is(manifest.stride, 32);
  t.deepEqual(manifest.models, models);
  t.deepEqual(manifest.inputs.map((x: { source: string }) => x.source), [shardPath('clean.jsonl')]);
});

test('output order is input order, for every format, whatever the batching', async (t) => {
  const out = tmp();
  await score({ inputs: ALL_SHARDS, output: out, context: 32, stride: 16, batchTokens: 64 });
  const rows = readRows(out);
  for (const shard of ALL_SHARDS) {
    const want = await inputDocs(shard);
    const got = rows.filter((r) => r.source === shard);
    t.deepEqual(got.map((r) => [r.id, Number(r.row)]), want.map((d) => [d.id, d.row]), shard);
  }
});

test('token ids are exactly what the tokenizers library gives (fixture tokenizer and a real 32000-token one)', async (t) => {
  const out = tmp();
  await score({ inputs: [shardPath('clean.jsonl'), shardPath('mixed.parquet')], output: out, context: 64 });
  const lib = Tokenizer.fromFile(TOKENIZER);
  const rows = new Map(readRows(out).map((r) => [r.id, r]));
  for (const shard of ['clean.jsonl', 'mixed.parquet']) {
    for (const d of await inputDocs(shardPath(shard))) {
      const ids = (await lib.encode(d.text)).getIds();
      t.deepEqual(listValues(rows.get(d.id)!.token_ids), ids, d.id);
    }
  }
  // A real published tokenizer (Mistral-7B's 32000-token SentencePiece BPE): the tokenize stage adds the
  // post-processor's BOS exactly like the library, and --append-eos appends </s>.
  const llama2 = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama2', 'models', 'tokenizer.json');
  const ref = Tokenizer.fromFile(llama2);
  const docs = (await inputDocs(shardPath('clean.jsonl'))).slice(0, 8);
  const stage = TextTokenizer.load(llama2, { appendEos: true });
  const got = await stage.encode(docs.map((d) => ({ ...d, source: "clean.jsonl" })));
  t.is(stage.info.eosToken, '</s>');
  t.is(stage.info.vocabSize, 32000);
  for (let i = 0; i < docs.length; i++) {
    const want = (await ref.encode(docs[i].text)).getIds();
    t.is(want[0], 1, 'BOS from the post-processor');
    t.deepEqual([...got[i].tokenIds], [...want, 2]);
  }
});

test('byte-identical data files for different --batch-tokens, and Arrow IPC holds the same table', async (t) => {
  const a = tmp();
  const b = tmp();
  await score({ inputs: ALL_SHARDS, output: a, context: 64, stride: 32, batchTokens: 128 });
  await score({ inputs: ALL_SHARDS, output: b, context: 64, stride: 32, batchTokens: 16384 });
  const fa = dataFiles(a);
  t.is(fa.length, 5);
  for (const f of fa) t.true(readFileSync(f).equals(readFileSync(f.replace(a, b))), `${f} differs between batch sizes`);
  const c = tmp();
  await score({ inputs: [shardPath('clean.jsonl')], output: c, context: 64, stride: 32, format: 'arrow' });
  const arrowRows = readRows(c, 'arrow');
  const parquetRows = readRows(a).filter((r) => r.source === shardPath('clean.jsonl'));
  t.deepEqual(arrowRows.map((r) => listValues(r.ref_logprob)), parquetRows.map((r) => listValues(r.ref_logprob)));
  t.is(readTable(dataFiles(c, 'arrow')[0]).schema.metadata.get(META.schemaVersion), '1');
});

test('empty text is kept as a row with no scored tokens; --append-eos adds the EOS id', async (t) => {
  const dir = tmp();
  const input = join(dir, 'in.jsonl');
  writeFileSync(input, ['{"id":"e","text":""}', '{"id":"x","text":"hello world"}'].join('\n') + '\n');
  const out = join(dir, 'out');
  await score({ inputs: [input], output: out, appendEos: true, context: 64 });
  const [e, x] = readRows(out);
  t.deepEqual(listValues(e.token_ids), [1022, 1023], 'BOS from the post-processor, then EOS');
  t.deepEqual(listValues(e.ref_logprob).map((v) => v === null), [true, false]);
  t.is(listValues(x.token_ids).at(-1), 1023);
  const out2 = join(dir, 'out2');
  await score({ inputs: [input], output: out2, context: 64 });
  const [e2] = readRows(out2);
  t.deepEqual(listValues(e2.token_ids), [1022]);
  t.deepEqual(listValues(e2.ref_logprob), [null]);
  t.is(e2.ref_loss_mean, null);
  t.is(e2.n_tokens, 1);
});

test('several models in one pass write <name>_logprob each, from the same windows', async (t) => {
  const out = tmp();
  await score({
    models: [{ name: 'ref', path: modelPath('llama') }, { name: 'base', path: modelPath('gpt2') }],
    inputs: [shardPath('mixed.parquet')], output: out, context: 64, stride: 32,
  });
  const single = tmp();
  await score({ models: [{ name: 'base', path: modelPath('gpt2') }], inputs: [shardPath('mixed.parquet')], output: single, context: 64, stride: 32 });
  const both = readRows(out);
  const alone = readRows(single);
  t.true('ref_logprob' in both[0] && 'base_logprob' in both[0] && 'base_loss_mean' in both[0]);
  t.deepEqual(both.map((r) => listValues(r.base_logprob)), alone.map((r) => listValues(r.base_logprob)));
  t.notDeepEqual(both.map((r) => listValues(r.ref_logprob)), both.map((r) => listValues(r.base_logprob)));
});

test('a rerun skips finished units; another configuration is refused unless --overwrite', async (t) => {
  const out = tmp();
  const first = await score({ inputs: ALL_SHARDS, output: out, context: 64, unitDocs: 8 });
  t.true(first.run.units_written >= 10);
  const again = await score({ inputs: ALL_SHARDS, output: out, context: 64, unitDocs: 8 });
  t.is(again.run.units_written, 0);
  t.is(again.run.units_skipped, first.run.units_written);
  t.is(again.manifest.totals.docs_in, first.manifest.totals.docs_in);
  const err = await t.throwsAsync(score({ inputs: ALL_SHARDS, output: out, context: 32, unitDocs: 8 }));
  t.regex(err!.message, /another configuration \(differs in: context, stride\)/);
  t.is((err as { exitCode?: number }).exitCode, 2);
  const over = await score({ inputs: ALL_SHARDS, output: out, context: 32, unitDocs: 8, overwrite: true });
  t.is(over.run.units_written, first.run.units_written);
});

test('CLI: summary on stdout, progress on stderr, exit 0', async (t) => {
  const out = tmp();
  const r = await rhoCli(['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', join(FIX, 'shards', '*'), '--output', out, '--id-field', 'id', '--context', '64']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /120 documents in = 120 scored \+ 0 rejected/);
  t.regex(r.stdout, /scored tokens\/s/);
  const j = await rhoCli(['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', join(FIX, 'shards', '*'), '--output', out, '--id-field', 'id', '--context', '64', '--json']);
  const summary = JSON.parse(j.stdout);
  t.is(summary.run.units_skipped, 5);
  t.is(summary.totals.scored, 120);
});

test('CLI: bad configuration stops before any work with exit 2 and says what to do', async (t) => {
  const out = tmp();
  const base = ['score', '--tokenizer', TOKENIZER, '--output', join(out, 'o'), '--id-field', 'id'];
  const missing = await rhoCli([...base, '--model', modelPath('llama'), '--input', join(out, 'nope.jsonl')]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /nope\.jsonl: file not found/);
  const noMatch = await rhoCli([...base, '--model', modelPath('llama'), '--input', join(out, '*.parquet')]);
  t.is(noMatch.code, 2);
  t.regex(noMatch.stderr, /the glob matches no file/);
  const llama2 = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama2', 'models', 'tokenizer.json');
  const vocab = await rhoCli(['score', '--tokenizer', llama2, '--output', join(out, 'o'), '--model', modelPath('llama'), '--input', shardPath('clean.jsonl')]);
  t.is(vocab.code, 2);
  t.regex(vocab.stderr, /tokenizer vocabulary \(32000 tokens\) is larger than the vocabulary of model "ref" .*1024 logits/);
  const notModel = join(out, 'junk.onnx');
  writeFileSync(notModel, 'not a model');
  const junk = await rhoCli([...base, '--model', notModel, '--input', shardPath('clean.jsonl')]);
  t.is(junk.code, 2);
  t.regex(junk.stderr, /junk\.onnx/);
  const stride = await rhoCli([...base, '--model', modelPath('llama'), '--input', shardPath('clean.jsonl'), '--context', '16', '--stride', '32']);
  t.is(stride.code, 2);
  t.regex(stride.stderr, /--stride must be/);
  const tooLong = await rhoCli([...base, '--model', modelPath('gpt2'), '--input', shardPath('clean.jsonl'), '--context', '4096']);
  t.is(tooLong.code, 2);
  t.regex(tooLong.stderr, /longer than the 256 positions/);
  const badName = await rhoCli([...base, '--model', `a-b=${modelPath('llama')}`, '--input', shardPath('clean.jsonl')]);
  t.is(badName.code, 2);
  // Nothing was written for any of them.
  t.false(existsSync(join(out, 'o', 'manifest.json')));
  t.deepEqual(existsSync(join(out, 'o')) ? readdirSync(join(out, 'o')).filter((n) => n !== '_rho') : [], []);
});

test('--device cuda on a CPU-only install fails loudly instead of falling back', async (t) => {
  const r = await rhoCli(['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', shardPath('clean.jsonl'), '--output', join(tmp(), 'o'), '--device', 'cuda']);
  t.is(r.code, 2);
  t.regex(r.stderr, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
});

