// Piecewise tokenization of very long documents. Tokenizing a 32 MiB document in one call of the `tokenizers`
// binding builds one Encoding of ~13M tokens (ids, type ids, token strings, offsets, masks: a 5.5 GiB peak
// measured); here the text goes through in bounded pieces whose concatenated ids equal the whole text's.
//
// A cut is only right where the tokenizer makes no decision across it. Rather than trusting a model of each
// normalizer / pre-tokenizer / model, every cut is proven on the text itself:
//   main window  W  = text[s, e+M)      (e = s+P, P piece size, M margin); candidate cut b <= e is a clean token
//                                        boundary of W (a token ends at b and the next starts at b, so b is never
//                                        inside a character that byte-level tokens split);
//   left check   L  = text[b, b+M)      tokens ending by b+M/2 must equal W's tokens after b (the next piece starts
//                                        at b: starting there must not change its first tokens);
//   right check  R  = text[c, b+M/2)    (c an earlier boundary of W, about M/2 before b) tokens up to b must equal
//                                        W's and end exactly at b (a different right end and left start must not
//                                        move the boundary).
// The first candidate that passes is the cut; W's tokens before it are kept and the next piece starts there.
// Candidates are tried word starts first (" word"), then line starts, then between two non-space characters
// (CJK), then anything else. When no candidate passes, the piece is tried twice as long (up to maxGrowth times);
// then the document is tokenized whole (the caller says so). The checks are evidence taken on the text at each
// cut, not a proof for every conceivable tokenizer; the tests compare against whole-text tokenization.
//
// Tokenizers that add something at the start of every text are cut where that addition is what the whole
// text has anyway (the cut mode, from tokenizer.json): a Prepend("▁") normalizer (Llama-2/Mistral SentencePiece
// BPE) re-creates the "▁" of a space, so the cut is at a space and the piece starts after it; a Metaspace
// pre-tokenizer or a ByteLevel one with add_prefix_space adds nothing to a text that starts with a space, so
// the piece starts at a space. Components whose effect is not local (Strip, BPE dropout, unknown types) are
// not cut at all.
import type { Tokenizer } from 'tokenizers';

/** Where a piece may start: anywhere; at a space; at a space that the tokenizer re-creates (the piece starts after it). */
export type CutMode = 'any' | 'atSpace' | 'afterSpace';

export interface PieceOptions {
  /** Characters (UTF-16 units) per piece, about. */
  pieceChars: number;
  /** Right context tokenized past each piece and length of the checks around each cut. */
  marginChars: number;
  /** A piece with no cut that holds is retried twice as long, up to this many times pieceChars (default 16). */
  maxGrowth?: number;
}

export const DEFAULT_PIECES: PieceOptions = { pieceChars: 256 * 1024, marginChars: 4096 };

/** What a document's piecewise tokenization did (tests assert that cuts really happened). */
export interface PieceStats {
  cuts: number;
  /** Candidates whose checks failed before a cut was found. */
  rejectedCandidates: number;
}

type Json = Record<string, unknown> | null | undefined;

const LOCAL_NORMALIZERS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase', 'Replace', 'BertNormalizer', 'StripAccents', 'Precompiled', 'Nmt', 'NMT', 'ByteLevel', 'Prepend', 'Sequence']);
const LOCAL_PRE_TOKENIZERS = new Set(['ByteLevel', 'Split', 'Whitespace', 'WhitespaceSplit', 'BertPreTokenizer', 'Metaspace', 'Punctuation', 'Digits', 'UnicodeScripts', 'CharDelimiterSplit', 'Sequence']);
const MODELS = new Set(['BPE', 'WordPiece', 'WordLevel', 'Unigram']);

/**
 * The cut mode of a tokenizer.json, or why it cannot be cut (its documents are tokenized whole).
 */
export function cutModeOf(tokenizerJson: Json): { mode: CutMode } | { unsupported: string } {
  if (!tokenizerJson) return { unsupported: 'no tokenizer.json' };
  let mode: CutMode = 'any';
  const stricter = (m: CutMode) => {
    const rank = { any: 0, atSpace: 1, afterSpace: 2 } as const;
    if (rank[m] > rank[mode]) mode = m;
  };
  let why: string | null = null;
  const walk = (node: Json, kind: 'normalizer' | 'pre_tokenizer') => {
    if (!node || why) return;
    const type = String(node.type);
    const allowed = kind === 'normalizer' ? LOCAL_NORMALIZERS : LOCAL_PRE_TOKENIZERS;
    if (!allowed.has(type)) { why = `${kind} ${type}`; return; }
    if (type === 'Sequence') {
      for (const child of (node.normalizers ?? node.pretokenizers ?? []) as Json[]) walk(child, kind);
      return;
    }
    if (kind === 'normalizer' && type === 'Prepend') {
      // Only the SentencePiece form is understood: "▁" prepended, spaces replaced by "▁" (so a piece that starts
      // right after a space gets exactly the "▁" of that space).
      if (node.prepend !== '\u2581' || !replacesSpaceWithMetaspace(tokenizerJson.normalizer as Json)) { why = `normalizer Prepend(${JSON.stringify(node.prepend)})`; return; }
      stricter('afterSpace');
    }
    if (kind === 'pre_tokenizer' && type === 'Metaspace') {
      const scheme = node.prepend_scheme ?? (node.add_prefix_space === false ? 'never' : 'always');
      if (scheme !== 'never') stricter('atSpace');
    }
    if (kind === 'pre_tokenizer' && type === 'ByteLevel' && node.add_prefix_space) stricter('atSpace');
  };
  walk(tokenizerJson.normalizer as Json, 'normalizer');
  walk(tokenizerJson.pre_tokenizer as Json, 'pre_tokenizer');
  if (why) return { unsupported: why };
  const model = tokenizerJson.model as Json;
  if (!model || !MODELS.has(String(model.type))) return { unsupported: `model ${model?.type}` };
  if (model.type === 'BPE' && model.dropout) return { unsupported: 'BPE dropout' };
  return { mode };
}

function replacesSpaceWithMetaspace(normalizer: Json): boolean {
  if (!normalizer) return false;
  if (normalizer.type === 'Sequence') return ((normalizer.normalizers ?? []) as Json[]).some(replacesSpaceWithMetaspace);
  const pattern = normalizer.pattern as { String?: string } | undefined;
  return normalizer.type === 'Replace' && pattern?.String === ' ' && normalizer.content === '\u2581';
}

/** Tokens of a slice with absolute UTF-16 [start, end) positions in the whole text. */
interface Toks {
  ids: number[];
  start: Int32Array;
  end: Int32Array;
}

const SURROGATE = /[\uD800-\uDFFF]/;

async function tokensOf(tok: Tokenizer, text: string, from: number, to: number): Promise<Toks> {
  const slice = text.slice(from, to);
  const enc = await tok.encode(slice, null, { addSpecialTokens: false });
  const ids = enc.getIds();
  const offsets = enc.getOffsets();
  // Offsets count code points of the slice; positions here are UTF-16 indices.
  let cpToU16: Int32Array | null = null;
  if (SURROGATE.test(slice)) {
    cpToU16 = new Int32Array(slice.length + 1);
    let cp = 0;
    for (let i = 0; i < slice.length; i++) {
      cpToU16[cp++] = i;
      const c = slice.charCodeAt(i);
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < slice.length) {
        const d = slice.charCodeAt(i + 1);
        if (d >= 0xdc00 && d < 0xe000) i++;
      }
    }
    cpToU16[cp] = slice.length;
  }
  const n = ids.length;
  const start = new Int32Array(n);
  const end = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const [a, b] = offsets[i];
    start[i] = from + (cpToU16 ? cpToU16[a] : a);
    end[i] = from + (cpToU16 ? cpToU16[b] : b);
  }
  return { ids, start, end };
}

/** An end position that does not split a surrogate pair. */
function safeEnd(text: string, at: number): number {
  if (at >= text.length) return text.length;
  const c = text.charCodeAt(at - 1);
  return c >= 0xd800 && c < 0xdc00 ? at - 1 : at;
}

const isSpace = (c: number) => c === 32 || c === 9 || c === 10 || c === 13 || c === 0x0b || c === 0x0c || c === 0xa0 || c === 0x3000 || c === 0x85 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029;

/** Token index k of W is a clean boundary: token k ends where token k+1 starts. */
const clean = (w: Toks, k: number) => k + 1 < w.ids.length && w.end[k] === w.start[k + 1] && w.end[k] > w.start[k];

/** The candidate classes of a cut at b (lower is preferred), or -1 when the cut mode forbids b. */
function cutClass(text: string, b: number, mode: CutMode): number {
  const prev = text.charCodeAt(b - 1);
  const cur = text.charCodeAt(b);
  const next = b + 1 < text.length ? text.charCodeAt(b + 1) : 32;
  if (mode !== 'any' && cur !== 32) return -1;
  if (cur === 32 && !isSpace(prev) && !isSpace(next)) return 0; // " word"
  if (mode !== 'any') return 3;
  if (prev === 10 && !isSpace(cur)) return 1; // line start
  if (!isSpace(prev) && !isSpace(cur)) return 2; // between two non-space characters (CJK, inside words)
  return 3;
}

/** W's tokens k0..k1 (inclusive) equal X's tokens j0..j0+(k1-k0) (ids and ends). */
function sameTokens(w: Toks, k0: number, k1: number, x: Toks, j0: number): boolean {
  if (k1 - k0 + 1 > x.ids.length - j0) return false;
  for (let k = k0, j = j0; k <= k1; k++, j++) if (w.ids[k] !== x.ids[j] || w.end[k] !== x.end[j]) return false;
  return true;
}

/**
 * The ids of `text` without special tokens, tokenized in pieces; null when some piece had no cut that passed
 * its checks, even grown (the caller tokenizes the document whole). `onTokens` hears of each piece's tokens as it
 * is done (the progress line moves inside a long document).
 */
export async function encodeInPieces(tok: Tokenizer, text: string, mode: CutMode, opts: PieceOptions, stats?: PieceStats, onTokens?: (n: number) => void): Promise<Int32Array | null> {
  const P = Math.max(1, Math.floor(opts.pieceChars));
  const M = Math.max(8, Math.floor(opts.marginChars));
  const maxGrowth = opts.maxGrowth ?? 16;
  const skipAt = mode === 'afterSpace' ? 1 : 0;
  const parts: Int32Array[] = [];
  let total = 0;
  let s = 0;
  let skip = 0;
  for (;;) {
    // A piece with no cut that holds (inside a run of thousands of spaces, a word of repeated letters, CJK for a
    // tokenizer that cuts only at spaces) is tried again twice as long, up to maxGrowth times the piece size.
    let cut = -1;
    let w: Toks | null = null;
    let last = false;
    for (let len = P; len <= P * maxGrowth && cut < 0; len *= 2) {
      if (text.length - s <= len + M) { last = true; break; }
      w = await tokensOf(tok, text, s + skip, safeEnd(text, s + len + M));
      cut = await findCut(tok, text, w, mode, s, skip, safeEnd(text, s + len), M, stats);
    }
    if (last) {
      const rest = await tokensOf(tok, text, s + skip, text.length);
      parts.push(Int32Array.from(rest.ids));
      total += rest.ids.length;
      onTokens?.(rest.ids.length);
      break;
    }
    if (cut < 0 || !w) return null;
    const kept = Int32Array.from(w.ids.slice(0, cut + 1));
    parts.push(kept);
    total += kept.length;
    onTokens?.(kept.length);
    s = w.end[cut];
    skip = skipAt;
    if (stats) stats.cuts++;
  }
  if (parts.length === 1) return parts[0];
  const ids = new Int32Array(total);
  let off = 0;
  for (const p of parts) { ids.set(p, off); off += p.length; }
  return ids;
}

/** The index of W's token after which the piece is cut (the first candidate whose checks hold), or -1. */
async function findCut(tok: Tokenizer, text: string, w: Toks, mode: CutMode, s: number, skip: number, e: number, M: number, stats?: PieceStats): Promise<number> {
  // Candidates: clean boundaries b in (s+skip, e], nearest to e first, a few of each class.
  const byClass: number[][] = [[], [], [], []];
  const quota = [6, 3, 4, 3];
  let k = w.ids.length - 1;
  while (k >= 0 && w.end[k] > e) k--;
  for (; k >= 0 && w.end[k] > s + skip; k--) {
    if (!clean(w, k)) continue;
    const cls = cutClass(text, w.end[k], mode);
    if (cls >= 0 && byClass[cls].length < quota[cls]) byClass[cls].push(k);
    if (byClass.every((c, i) => c.length >= quota[i])) break;
  }
  for (const k of byClass.flat()) {
    if (await cutHolds(tok, text, w, k, mode, s, skip, Math.floor(M / 2), M)) return k;
    if (stats) stats.rejectedCandidates++;
  }
  return -1;
}

/** The left and right checks of a cut after W's token k (see the top of the file). */
async function cutHolds(tok: Tokenizer, text: string, w: Toks, k: number, mode: CutMode, s: number, skip: number, half: number, M: number): Promise<boolean> {
  const b = w.end[k];
  const skipAt = mode === 'afterSpace' ? 1 : 0;
  // Left: a piece that starts at b gives W's tokens after b, up to b+M/2.
  const left = await tokensOf(tok, text, b + skipAt, safeEnd(text, b + M));
  let kl = k;
  while (kl + 1 < w.ids.length && w.end[kl + 1] <= b + half) kl++;
  if (kl === k) return false; // nothing to compare: a token longer than the check
  if (!sameTokens(w, k + 1, kl, left, 0)) return false;
  if (left.ids.length > kl - k && left.end[kl - k] <= b + half) return false; // the piece has more tokens in that span
  // Right: from an earlier boundary c (about M/2 before b) to b+M/2, the tokens up to b are W's and end at b.
  let j = k - 1;
  while (j >= 0 && w.end[j] > b - half) j--;
  while (j >= 0 && !(clean(w, j) && (mode === 'any' || text.charCodeAt(w.end[j]) === 32))) j--;
  const c = j >= 0 ? w.end[j] : s;
  const cSkip = j >= 0 ? skipAt : skip;
  const right = await tokensOf(tok, text, c + cSkip, safeEnd(text, b + half));
  if (!sameTokens(w, j + 1, k, right, 0)) return false;
  const after = k - j; // right's index of the first token after b
  return after < right.ids.length && right.start[after] === b;
}
