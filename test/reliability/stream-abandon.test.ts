// A unit whose input cannot be read to its end (InputReadError) after some of its row groups were already
// streamed into a staged temp file: the temp file is removed, nothing of the unit is published or vouched for,
// and the other inputs' units are committed as usual. Real store (LocalStore), real tokenizer, the real
// ordering stage and streaming writer; the scores are constants (what is tested is the executor's handling).
import test from 'ava';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TOKENIZER, tmp } from '../helpers.js';
import { Executor } from '../../pipeline/run/executor.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { compose, stage } from '../../stages/stage.js';
import { tokenizeStage, TextTokenizer } from '../../stages/tokenize.js';
import { InputReadError } from '../../stages/read.js';
import { streamWriteStage } from '../../stages/write.js';
import { LAYOUT } from '../../schemas/layout.js';
import type { EncodedFlow, Flow, ReadItem, ScoredDocument, TokenizedDocument } from '../../schemas/types.js';
import type { StoreWriter } from '../../schemas/store.js';

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => { if (!existsSync(d)) return; for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else out.push(relative(dir, p)); } };
  walk(dir);
  return out.sort();
}

async function* docs(source: string, n: number, failAfter: boolean): AsyncGenerator<ReadItem> {
  for (let row = 0; row < n; row++) {
    yield { kind: 'doc', doc: { source, row, id: `${source}-${row}`, text: `document ${row} of ${source} with a few words to tokenize` } };
    // Let the stages run ahead, so row groups are written before the failure.
    if (row % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  if (failAfter) throw new InputReadError(source, new Error('ECONNRESET (test)'));
}

const constantScores = stage<Flow<TokenizedDocument>, Flow<ScoredDocument>>('constant-scores', async function* (input) {
  for await (const it of input) {
    if (it.kind !== 'doc') { yield it; continue; }
    const logprob = Float32Array.from(it.doc.tokenIds, (_, i) => (i === 0 ? NaN : -1));
    yield { ...it, doc: { ...it.doc, scores: new Map([['ref', { logprob }]]) } };
  }
});

test('an input that fails mid-unit after row groups were streamed: its temp file is removed, nothing of it is committed', async (t) => {
  const out = tmp('rho-stream-abandon-');
  const local = new LocalStore(out);
  const opened: string[] = [];
  const aborted: string[] = [];
  // The real store, watched: which streamed files were opened and aborted.
  const store = Object.assign(Object.create(local) as LocalStore, {
    createWriter: async (base: string): Promise<StoreWriter> => {
      const w = await local.createWriter(base);
      opened.push(base);
      return { write: (b) => w.write(b), close: (rel) => w.close(rel), abort: async () => { aborted.push(base); await w.abort(); } };
    },
  });
  const x = await Executor.open({
    store,
    inputs: [
      { source: 'flaky', bytes: 0, read: () => docs('flaky', 3000, true) },
      { source: 'good', bytes: 0, read: () => docs('good', 400, false) },
    ],
    unitDocs: 100_000, configSha: 'stream-abandon-v1', progress: false,
  });
  const metadata = () => new Map([['rho.test', 'x']]);
  await x.execute((src) => compose<EncodedFlow>(src, [
    tokenizeStage(TextTokenizer.load(TOKENIZER)), constantScores, x.ordered<ScoredDocument>(),
    streamWriteStage({ models: ['ref'], entropy: false, spec: { contextTokens: 64, strideTokens: 64 }, format: 'parquet', metadata, rowGroupBytes: 4_000 }),
  ], { rank: 0, worldSize: 1, crashPoint: () => undefined }).output);
  t.is(x.unreadable.length, 1);
  t.is(x.unreadable[0].source, 'flaky');
  t.true(opened.some((b) => b.includes('flaky')), 'the failing unit had started its file (row groups written before the failure)');
  t.true(aborted.some((b) => b.includes('flaky')), 'and it was aborted');
  t.is(x.counts.units_written, 1, 'the good input is committed');
  const left = files(out);
  t.deepEqual(left.filter((f) => f.startsWith('_rho/staged/')), [], 'no staged or temp file left');
  t.deepEqual(left.filter((f) => f.endsWith('.parquet')).map((f) => f.split('/')[0]).map((k) => k.startsWith('good')), [true], 'only the good input has a data file');
  t.deepEqual(left.filter((f) => f.startsWith(`${LAYOUT.doneDir}/`)).map((f) => f.includes('good')), [true], 'only the good input has a record');
});
