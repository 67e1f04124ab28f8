// The executor apart from the score stages: any pipeline built from stages gets units, resume, ranks and
// durable commits. Here a pipeline with no model at all: token counts per unit, written as JSONL.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { TOKENIZER, tmp } from '../helpers.js';
import {
  Executor, LocalStore, readDocuments, compose, tokenizeStage, TextTokenizer, stage, LAYOUT, shardKey,
  type DocumentSource, type EncodedUnit, type TokenizedDocument, type UnitRecords, type CompletionRecord,
} from '../../index.js';

const TEXTS = ['one two three', 'four', 'five six', 'seven eight nine ten', 'eleven', '', 'thirteen fourteen', 'fifteen', 'sixteen seventeen', 'eighteen'];
const source: DocumentSource = {
  name: 'words',
  *documents() {
    for (let i = 0; i < TEXTS.length; i++) {
      if (i === 4) yield { id: 'bad', text: 42 as unknown as string }; // a reject, accounted in its unit
      else yield { id: `w${i}`, text: TEXTS[i] };
    }
  },
};

const countTokens = stage<UnitRecords<TokenizedDocument>, EncodedUnit>('count-tokens', async function* (input) {
  for await (const u of input) {
    const docs = u.records.flatMap((r) => (r.kind === 'doc' ? [r.doc] : []));
    const tokens = docs.reduce((a, d) => a + d.tokenIds.length, 0);
    const lines = docs.map((d) => JSON.stringify({ id: d.id, row: d.row, n: d.tokenIds.length }) + '\n').join('');
    yield {
      unit: u.unit, file: `${u.unit.name}.jsonl`, bytes: new TextEncoder().encode(lines), records: u.records.length, scored: docs.length,
      rejects: u.records.flatMap((r) => (r.kind === 'reject' ? [r.reject] : [])), tokens, scoredTokens: tokens,
    };
  }
});

async function runCounts(out: string, rank = 0, worldSize = 1) {
  const x = await Executor.open({ store: new LocalStore(out), inputs: [{ source: source.name, bytes: 0, read: () => readDocuments(source) }], unitDocs: 3, rank, worldSize, configSha: 'count-tokens-v1', progress: false });
  let stats: { name: string; docs_in: number }[] = [];
  await x.execute((src) => {
    const c = compose<EncodedUnit>(src, [tokenizeStage(TextTokenizer.load(TOKENIZER)), x.gather<TokenizedDocument>(), countTokens], { rank, worldSize, crashPoint: () => undefined });
    stats = c.stats;
    return c.output;
  });
  const { manifest } = await x.finish({ 'rho.schema_version': '1' }, {});
  return { counts: x.counts, stats, manifest };
}

test('a model-free pipeline on the executor: one file and one completion record per unit, rejects accounted, resume skips', async (t) => {
  const out = tmp();
  const { counts, stats, manifest } = await runCounts(out);
  t.is(counts.units_written, 4);
  t.is(counts.docs_in, 10);
  t.is(counts.rejected, 1);
  t.deepEqual(stats.map((s) => s.name), ['tokenize', 'gather', 'count-tokens']);
  t.is(stats[0].docs_in, 9);
  t.is(manifest.totals.docs_in, 10);
  // Token counts against the tokenizers library directly.
  const tok = Tokenizer.fromFile(TOKENIZER);
  const rows: { id: string; row: number; n: number }[] = [];
  for (let p = 0; p < 4; p++) {
    const rec = JSON.parse(readFileSync(join(out, LAYOUT.doneDir, recordName(p)), 'utf8')) as CompletionRecord;
    t.is(rec.first_row, p * 3);
    rows.push(...readFileSync(join(out, rec.file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  }
  t.deepEqual(rows.map((r) => r.row), [0, 1, 2, 3, 5, 6, 7, 8, 9]);
  for (const r of rows) t.is(r.n, (await tok.encode(TEXTS[r.row])).getIds().length, `${r.id}: token count`);
  t.true(existsSync(join(out, LAYOUT.rejectsDir)));
  const again = await runCounts(out);
  t.is(again.counts.units_written, 0);
  t.is(again.counts.units_skipped, 4);
});

test('two ranks share the units: each written exactly once', async (t) => {
  const out = tmp();
  const a = await runCounts(out, 0, 2);
  const b = await runCounts(out, 1, 2);
  t.is(a.counts.units_written + b.counts.units_written, 4);
  t.is(a.counts.units_other_rank, b.counts.units_written);
  t.is(b.manifest.totals.units_done, 4);
});

const recordName = (part: number) => `${shardKey('words')}/part-${String(part).padStart(5, '0')}.json`;
