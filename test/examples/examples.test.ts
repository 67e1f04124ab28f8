// The examples of docs/api.md, executed: a custom document source, a filter stage whose drops are rejects
// with its reason, and a custom Scorer, each checked against an independent computation.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE, TOKENIZER, modelPath, shardPath, tmp, readRows, listValues, score as scoreHelper } from '../helpers.js';
import { readShard } from '../../stages/read.js';
import { isUnscoredPosition } from '../../schemas/contract.js';
import { verify } from '../../index.js';
import * as customSource from '../../examples/custom-source.js';
import * as filterExample from '../../examples/filter.js';
import * as unigram from '../../examples/unigram-scorer.js';

async function docsOf(path: string) {
  const out: { id: string; row: number; text: string }[] = [];
  let rejected = 0;
  for await (const it of readShard(path, { textField: 'text', idField: 'id' })) {
    if (it.kind === 'doc') out.push(it.doc);
    else rejected++;
  }
  return { docs: out, rejected };
}

const esc = (s: string) => s.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!);

test('(a) a custom document source (TSV): same rows as the JSONL it was made from; resume and verify work like a file', async (t) => {
  const { docs } = await docsOf(shardPath('clean.jsonl'));
  const dir = tmp();
  const tsv = join(dir, 'clean.tsv');
  writeFileSync(tsv, ['id\ttext', ...docs.map((d) => `${esc(d.id)}\t${esc(d.text)}`)].join('\n') + '\n');
  const out = join(dir, 'out');
  const s = await customSource.main({ tsv, output: out, model: modelPath('llama'), tokenizer: TOKENIZER, cacheDir: CACHE });
  t.is(s.totals.docs_in, docs.length);
  t.is(s.totals.scored, docs.length);
  t.deepEqual(s.shards.map((x) => x.source), [tsv]);

  const ref = tmp();
  await scoreHelper({ inputs: [shardPath('clean.jsonl')], output: ref, context: 64, stride: 32, batchTokens: 1024 });
  const a = readRows(out);
  const b = readRows(ref);
  t.is(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    t.is(a[i].source, tsv);
    t.is(Number(a[i].row), i, 'row = index of the document the source yielded');
    t.is(a[i].id, b[i].id);
    t.deepEqual(listValues(a[i].token_ids), listValues(b[i].token_ids));
    const la = listValues(a[i].ref_logprob);
    const lb = listValues(b[i].ref_logprob);
    t.deepEqual(la.map((x) => x === null), lb.map((x) => x === null));
    t.true(la.every((x, j) => x === null || Math.abs(x - (lb[j] as number)) < 1e-5), `row ${i}: log-probs as from the JSONL`);
  }
  // Resume: the same source again skips every unit.
  const again = await customSource.main({ tsv, output: out, model: modelPath('llama'), tokenizer: TOKENIZER, cacheDir: CACHE });
  t.is(again.run.units_written, 0);
  t.is(again.run.units_skipped, s.run.units_written);
  // verify re-reads the source by its name.
  const report = await verify({ output: out, sources: [customSource.tsvSource(tsv)], progress: false });
  t.deepEqual(report.errors, []);
  t.true(report.ok);
  t.deepEqual(report.inputs.checked, [tsv]);
});

test('(b) a filter stage: dropped documents are rejects with the stage name and reason, and counted', async (t) => {
  const inputs = [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz')];
  const MIN = 300;
  const expected = new Set<string>();
  let readerRejects = 0;
  let total = 0;
  for (const p of inputs) {
    const { docs, rejected } = await docsOf(p);
    readerRejects += rejected;
    total += docs.length + rejected;
    for (const d of docs) if (d.text.length < MIN) expected.add(`${p}#${d.row}`);
  }
  t.true(expected.size > 0 && expected.size < total, `the rule drops some documents (${expected.size} of ${total})`);
  const out = tmp();
  const { summary, rejects } = await filterExample.main({ inputs, output: out, model: modelPath('llama'), tokenizer: TOKENIZER, minChars: MIN, cacheDir: CACHE });
  const filtered = rejects.filter((r) => r.reason.startsWith('min-length: '));
  t.deepEqual(new Set(filtered.map((r) => `${r.source}#${r.row}`)), expected);
  for (const r of filtered) t.regex(r.reason, /^min-length: \d+ characters, fewer than 300$/);
  t.is(summary.totals.docs_in, total);
  t.is(summary.totals.rejected, expected.size + readerRejects);
  t.is(summary.totals.scored + summary.totals.rejected, summary.totals.docs_in);
  const stage = summary.stages.find((s) => s.name === 'min-length')!;
  t.is(stage.rejected, expected.size);
  t.is(stage.docs_in - stage.docs_out, expected.size);
  const rows = readRows(out);
  t.is(rows.length, total - expected.size - readerRejects);
  t.false(rows.some((r) => expected.has(`${r.source}#${r.row}`)));
});

test('(c) a custom Scorer (unigram, plain TypeScript): every score is log((count+1)/(N+V)), nulls where the window rule has no context', async (t) => {
  const train = (await docsOf(shardPath('noisy.jsonl.gz'))).docs.map((d) => d.text).join('\n');
  const out = tmp();
  const { summary, trainingIds, vocabSize } = await unigram.main({ trainingText: train, inputs: [shardPath('clean.jsonl')], output: out, tokenizer: TOKENIZER });
  t.true(summary.totals.scored > 0);
  // Independent of the scorer's code: counts from the training ids, float32 like the output column.
  const counts = new Map<number, number>();
  for (const id of trainingIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  const expect = (id: number) => Math.fround(Math.log(((counts.get(id) ?? 0) + 1) / (trainingIds.length + vocabSize)));
  const rows = readRows(out);
  let checked = 0;
  for (const r of rows) {
    const ids = listValues(r.token_ids) as number[];
    const lp = listValues(r.unigram_logprob);
    for (let i = 0; i < ids.length; i++) {
      if (isUnscoredPosition(i, 32, 32)) t.is(lp[i], null);
      else { t.is(lp[i], expect(ids[i])); checked++; }
    }
  }
  t.true(checked > 1000, `${checked} scores checked`);
});
