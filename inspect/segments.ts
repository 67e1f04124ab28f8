// Where each token's text lies in a document, for heatmaps. Two ways:
//  - from the original text and the tokenizer's offsets (exact; used when the source row can be re-read and
//    re-tokenizes to the stored token_ids). Offsets count Unicode code points: they are mapped to JS string
//    (UTF-16) indices before slicing, so emoji and other astral characters stay whole.
//  - by decoding the stored token_ids, when the source is gone or changed. A byte-level BPE can split one
//    character over several tokens (each alone decodes to U+FFFD); such tokens are decoded together.
// Either way a character covered by several tokens becomes ONE segment listing all of them, so the text is
// shown exactly once, in order.
import { readFileSync } from 'node:fs';
import type { TextTokenizer } from '../stages/tokenize.js';

export interface Segment {
  /** [start, end) in JS string indices of DocText.text */
  start: number;
  end: number;
  /** Token positions (indices into token_ids) whose text this is; empty for text no token covers. */
  tokens: number[];
}

export interface DocText {
  text: string;
  segments: Segment[];
  /** Token positions with no text of their own (special tokens such as BOS/EOS). */
  specials: number[];
  origin: 'source' | 'decoded';
  /** Why the text was decoded rather than read from the source, when it was. */
  note?: string;
}

/** JS string index of every code point boundary: cpToUnit[k] = UTF-16 index of code point k (k <= count). */
export function codePointIndex(text: string): number[] {
  const out: number[] = [];
  let u = 0;
  for (const ch of text) { out.push(u); u += ch.length; }
  out.push(u);
  return out;
}

/**
 * Segments from tokenizer offsets (code points, [start, end) per token). Tokens with an empty span are
 * specials. Overlapping spans merge; text between spans becomes a token-less segment.
 */
export function segmentsFromOffsets(text: string, offsets: number[][]): { segments: Segment[]; specials: number[] } {
  const cp = codePointIndex(text);
  const maxCp = cp.length - 1;
  const segments: Segment[] = [];
  const specials: number[] = [];
  let covered = 0; // JS index up to which text has been emitted
  for (let i = 0; i < offsets.length; i++) {
    const [s0, e0] = offsets[i];
    if (!(e0 > s0)) { specials.push(i); continue; }
    if (s0 < 0 || e0 > maxCp) throw new Error(`token ${i}: offsets [${s0}, ${e0}) outside the text (${maxCp} code points)`);
    const s = cp[s0];
    const e = cp[e0];
    const last = segments.at(-1);
    if (last && last.tokens.length > 0 && s < last.end) {
      // Shares characters with the previous token (a character split across byte-level tokens): merge.
      last.tokens.push(i);
      if (e > last.end) { last.end = e; covered = e; }
      continue;
    }
    if (s > covered) segments.push({ start: covered, end: s, tokens: [] });
    segments.push({ start: Math.max(s, covered), end: Math.max(e, covered), tokens: [i] });
    covered = Math.max(e, covered);
  }
  if (covered < text.length) segments.push({ start: covered, end: text.length, tokens: [] });
  return { segments, specials };
}

/** Ids of the tokenizer's special added tokens (BOS, EOS, ...): they carry no text of the document. */
export function specialTokenIds(tokenizerPath: string): Set<number> {
  const json = JSON.parse(readFileSync(tokenizerPath, 'utf8')) as { added_tokens?: { id: number; special?: boolean }[] };
  return new Set((json.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
}

const REPLACEMENT = '\uFFFD';

/**
 * Text and segments by decoding token ids. A token's text is what it adds to the decoded text of the tokens
 * before it; to stay linear, the decoded prefix is anchored at the previous segment (enough for decoders
 * that treat the first token specially, such as SentencePiece's leading space) and falls back to the full
 * prefix when the anchored decode disagrees.
 */
export async function segmentsByDecoding(tok: TextTokenizer, ids: ArrayLike<number>, specialIds: Set<number>): Promise<{ text: string; segments: Segment[]; specials: number[] }> {
  const specials: number[] = [];
  const plain: number[] = []; // positions of non-special tokens, in order
  for (let i = 0; i < ids.length; i++) (specialIds.has(ids[i]) ? specials : plain).push(i);
  const idAt = (k: number) => ids[plain[k]];
  const decodeRange = (a: number, b: number) => tok.decode(Array.from({ length: b - a }, (_, j) => idAt(a + j)));

  const segments: Segment[] = [];
  let text = '';
  let start = 0; // first plain token of the pending segment
  let anchor = 0; // first plain token of the previous segment: it decodes whole, so it is a safe anchor
  for (let k = 0; k < plain.length; k++) {
    const head = anchor < start ? await decodeRange(anchor, start) : '';
    let piece: string | null = null;
    const withPending = await decodeRange(anchor, k + 1);
    if (withPending.startsWith(head)) piece = withPending.slice(head.length);
    if (piece === null || (anchor > 0 && !text.endsWith(head))) {
      const full = await decodeRange(0, k + 1);
      piece = full.startsWith(text) ? full.slice(text.length) : full.slice(commonPrefix(full, text));
    }
    // An incomplete UTF-8 sequence decodes to U+FFFD: keep adding tokens until the character is whole.
    if (piece.endsWith(REPLACEMENT) && k + 1 < plain.length) continue;
    const tokens = plain.slice(start, k + 1);
    segments.push({ start: text.length, end: text.length + piece.length, tokens });
    text += piece;
    anchor = start;
    start = k + 1;
  }
  return { text, segments, specials };
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}
