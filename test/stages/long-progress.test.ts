// Progress inside one long document: the tokenize stage counts tokens piece by piece (tokenized_tokens) and the
// assemble stage counts scored tokens window by window (scored_tokens), both before the document is whole;
// the progress line shows them (pipeline/run/progress.ts).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compose, type Flow, type Document, type UnitRef } from '../../index.js';
import { tokenizeStage, TextTokenizer } from '../../stages/tokenize.js';
import { assembleStage } from '../../stages/assemble.js';
import { planWindows } from '../../stages/window.js';
import { Progress } from '../../pipeline/run/progress.js';
import type { ScoredBatchFlow, TokenizedDocument, WindowedDocument } from '../../schemas/types.js';
import { ROOT, TOKENIZER } from '../helpers.js';

const ctx = { rank: 0, worldSize: 1, crashPoint: () => undefined };
const unit: UnitRef = { name: 'u/part-00000', source: 'u', part: 0, firstRow: 0 };
const prose = (JSON.parse(readFileSync(join(ROOT, 'fixtures', 'corpus', 'clean_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text).join('\n\n');

test('the tokenize stage counts tokens piece by piece inside one long document', async (t) => {
  const tok = TextTokenizer.load(TOKENIZER, { pieces: { pieceChars: 2000, marginChars: 128 } });
  const text = prose.slice(0, 60_000);
  const seen: number[] = [];
  let stats: { name: string; counters: Record<string, number> }[] = [];
  const source = (async function* (): AsyncGenerator<Flow<Document>> {
    yield { kind: 'doc', unit, doc: { source: 'u', row: 0, id: 'long', text } };
    yield { kind: 'end', unit, records: 1 };
  })();
  const composed = compose<Flow<TokenizedDocument>>(source, [tokenizeStage(tok)], ctx);
  stats = composed.stats;
  // Watch the counter while the one document is tokenized (the binding runs off the event loop).
  const timer = setInterval(() => seen.push(stats[0].counters.tokenized_tokens ?? 0), 2);
  const out = [];
  for await (const it of composed.output) out.push(it);
  clearInterval(timer);
  const doc = out.find((it) => it.kind === 'doc');
  t.truthy(doc && doc.kind === 'doc');
  const n = doc!.kind === 'doc' ? doc!.doc.tokenIds.length : 0;
  t.is(stats[0].counters.tokenized_tokens, n, 'the counter ends at the document\'s tokens');
  const partial = new Set(seen.filter((v) => v > 0 && v < n));
  t.true(partial.size >= 3, `the counter moved inside the document: saw ${[...partial].length} values between 0 and ${n}`);
});

test('the assemble stage counts scored tokens per window, before the document is whole', async (t) => {
  const n = 1000;
  const C = 256;
  const windows = planWindows(0, n, { contextTokens: C, strideTokens: C });
  t.true(windows.length >= 4);
  const doc: WindowedDocument = { source: 'u', row: 0, id: 'long', text: '', docSeq: 0, tokenIds: new Int32Array(n), windows };
  const counts: number[] = [];
  let stats: { counters: Record<string, number> }[] = [];
  const source = (async function* (): AsyncGenerator<ScoredBatchFlow> {
    yield { kind: 'doc', unit, doc };
    for (const w of windows) {
      const width = w.end - w.start;
      const batch = { rows: 1, width, tokens: new Int32Array(width), lengths: Int32Array.of(width), windows: [w] };
      yield { kind: 'scored', batch, scores: new Map([['ref', { logprob: new Float32Array(width).fill(-1) }]]) };
      // assemble asks for the next item only once it has taken this one in
      counts.push(stats[0].counters.scored_tokens);
    }
    yield { kind: 'end', unit, records: 1 };
  })();
  const composed = compose<Flow<WindowedDocument>>(source, [assembleStage({ models: ['ref'], entropy: false })], ctx);
  stats = composed.stats;
  const out = [];
  for await (const it of composed.output) out.push(it);
  t.is(out.filter((it) => it.kind === 'doc').length, 1);
  // Windows of C tokens with S = C: the first scores C-1 tokens (its first has no context), each later one all of its own.
  const expected = windows.map((w, i) => windows.slice(0, i + 1).reduce((a, x) => a + x.end - x.scoreFrom - (x.scoreFrom === x.start ? 1 : 0), 0));
  t.deepEqual(counts, expected);
  t.true(counts[0] > 0 && counts[0] < n - 1);
});

test('the progress line shows tokens tokenized while they are ahead of the scored ones', (t) => {
  let counts = { docs: 0, rejected: 0, tokens: 1200, tokenized: 500_000, inputBytesDone: 10 };
  const p = new Progress(10, () => counts, false);
  t.regex(p.line(), /0 docs, 0 rejected, 1200 tokens \(500000 tokenized\), \d+ tok\/s/);
  counts = { ...counts, tokens: 500_000 };
  t.regex(p.line(), /500000 tokens, \d+ tok\/s/);
  t.notRegex(p.line(), /tokenized/);
});

test('the percentage does not reach 100% while the tokens of a long document read whole are still being scored', (t) => {
  let counts = { docs: 0, rejected: 0, tokens: 0, tokenized: 8_000_000, inputBytesDone: 1000 };
  const p = new Progress(1000, () => counts, false);
  t.regex(p.line(), /^rho:\s+0\.0% 0 docs/, 'every byte read, no token scored yet');
  counts = { ...counts, tokens: 2_000_000 };
  t.regex(p.line(), /^rho:\s+25\.0% 0 docs.* ETA /, 'a quarter of the tokenized tokens scored, with an ETA');
  counts = { ...counts, docs: 1, tokens: 8_000_000 };
  t.regex(p.line(), /^rho: 100\.0% 1 docs/);
  // Without a tokenized count (other jobs) the bytes read alone set it.
  t.regex(new Progress(1000, () => ({ docs: 0, rejected: 0, tokens: 0, inputBytesDone: 500 }), false).line(), /^rho:\s+50\.0% /);
});
