// Byte spans of tokens: where in the UTF-8 bytes of a document each token lies. Two tokenizers agree on the
// bytes of a text, not on their tokens, so byte spans are the common ground of cross-tokenizer scoring
// (stages/project.ts). The `tokenizers` binding gives offsets in code points; byte-level BPE can split one
// multi-byte character over several tokens, which then all report the whole character: the character's
// bytes are shared out by each token's own byte length (known exactly for byte-level and byte-fallback
// vocabularies), else evenly. See docs/cross-tokenizer.md for the rules.

/** Per token [start, end) in UTF-8 bytes of the document text. start == end: an empty span (special token) at start. */
export interface ByteSpans {
  start: Int32Array;
  end: Int32Array;
}

/**
 * Prefix table: bytes[k] = UTF-8 length of the first k code points of `text` (length = code points + 1).
 * Lone surrogates count 3 bytes (they encode as U+FFFD), as TextEncoder and the Rust binding do.
 */
export function codePointByteOffsets(text: string): Int32Array {
  const out = new Int32Array(text.length + 1);
  let cp = 0;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
    out[++cp] = bytes;
  }
  return out.subarray(0, cp + 1);
}

/** The GPT-2 byte-level alphabet: byte b is written as the character BYTE_LEVEL_CHARS[b] in a vocabulary. */
function byteLevelChars(): Map<number, number> {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const set = new Set(printable);
  const charToByte = new Map<number, number>();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (set.has(b)) charToByte.set(b, b);
    else charToByte.set(256 + n++, b);
  }
  return charToByte;
}

const BYTE_FALLBACK = /^<0x[0-9A-Fa-f]{2}>$/;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | [string, number][]; byte_fallback?: boolean };
  pre_tokenizer?: unknown;
  decoder?: unknown;
  added_tokens?: { id: number; content: string }[];
}

function mentionsByteLevel(node: unknown): boolean {
  if (!node || typeof node !== 'object') return false;
  if ((node as { type?: string }).type === 'ByteLevel') return true;
  return Object.values(node as Record<string, unknown>).some((v) => (Array.isArray(v) ? v.some(mentionsByteLevel) : mentionsByteLevel(v)));
}

/**
 * Byte length of each token id's text, where the vocabulary says it exactly: byte-level BPE (every character
 * of the vocabulary string is one byte) and byte-fallback pieces `<0xNN>` (one byte). -1 elsewhere
 * (SentencePiece pieces with `▁`, added tokens): their spans come from the offsets alone.
 */
export function tokenByteLengths(json: TokenizerJson): Int32Array {
  const added = new Set((json.added_tokens ?? []).map((t) => t.id));
  const vocab = json.model?.vocab;
  const entries: [string, number][] = !vocab ? [] : Array.isArray(vocab) ? vocab.map(([s], i) => [s, i] as [string, number]) : Object.entries(vocab);
  let maxId = -1;
  for (const [, id] of entries) if (id > maxId) maxId = id;
  for (const id of added) if (id > maxId) maxId = id;
  const out = new Int32Array(maxId + 1).fill(-1);
  const byteLevel = mentionsByteLevel(json.pre_tokenizer) || mentionsByteLevel(json.decoder);
  const alphabet = byteLevel ? byteLevelChars() : null;
  const fallback = Boolean(json.model?.byte_fallback);
  for (const [s, id] of entries) {
    if (added.has(id)) continue;
    if (fallback && BYTE_FALLBACK.test(s)) {
      out[id] = 1;
      continue;
    }
    if (alphabet) {
      let n = 0;
      let ok = true;
      for (const ch of s) {
        if (!alphabet.has(ch.codePointAt(0)!)) { ok = false; break; }
        n++;
      }
      if (ok && n > 0) out[id] = n;
    }
  }
  return out;
}

/**
 * Byte spans of one encoding. `offsets` are the binding's code-point offsets per token, `cpBytes` the prefix
 * table of the text (codePointByteOffsets), `lengths` the per-id byte lengths (tokenByteLengths).
 *
 * Rules (docs/cross-tokenizer.md):
 * 1. A token with an empty offset range (a special token added by the post-processor) has an empty span.
 * 2. Non-empty spans are disjoint and in token order. Tokens that share a character (byte-level BPE splitting
 *    it) split its bytes: each takes its own byte length from the vocabulary, or an even share if unknown.
 * 3. Non-empty spans tile [0, text bytes) without gaps: bytes no token claims (offsets trimmed of whitespace,
 *    a normalizer that removed characters) go to the next token, trailing ones to the last token.
 * 4. An empty span sits where it is in the token order: at the end of the previous non-empty span (0 if none),
 *    so a post-processor's EOS lies at the end of the text and its BOS at 0.
 */
export function byteSpans(ids: ArrayLike<number>, offsets: ArrayLike<ArrayLike<number>>, cpBytes: Int32Array, lengths: Int32Array): ByteSpans {
  const n = ids.length;
  const start = new Int32Array(n);
  const end = new Int32Array(n);
  const nBytes = cpBytes[cpBytes.length - 1];
  const cpMax = cpBytes.length - 1;
  const a = new Int32Array(n);
  const b = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const o = offsets[i];
    const s = Math.min(Math.max(o[0], 0), cpMax);
    const e = Math.min(Math.max(o[1], s), cpMax);
    a[i] = cpBytes[s];
    b[i] = cpBytes[e];
  }
  // Pass 1: disjoint spans in order (rule 2).
  let pos = 0;
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) {
      start[i] = end[i] = -1; // placed in pass 2
      continue;
    }
    const s = Math.max(a[i], pos);
    let e = b[i];
    // The next non-empty tokens that start inside this token's bytes share its last character(s).
    let sharing = 0;
    for (let j = i + 1; j < n; j++) {
      if (a[j] === b[j]) continue;
      if (a[j] < b[i]) sharing++;
      else break;
    }
    if (sharing > 0) {
      const id = ids[i];
      const len = id >= 0 && id < lengths.length ? lengths[id] : -1;
      e = len > 0 ? Math.min(s + len, b[i]) : s + Math.floor((b[i] - s) / (sharing + 1));
    }
    if (e < s) e = s;
    start[i] = s;
    end[i] = e;
    if (e > pos) pos = e;
  }
  // Pass 2: tile [0, nBytes) (rule 3) and place empty spans (rules 1, 4).
  let prevEnd = 0;
  let lastNonEmpty = -1;
  for (let i = 0; i < n; i++) {
    if (start[i] < 0 || start[i] === end[i]) {
      start[i] = end[i] = prevEnd;
      continue;
    }
    start[i] = prevEnd;
    prevEnd = end[i];
    lastNonEmpty = i;
  }
  if (lastNonEmpty >= 0 && end[lastNonEmpty] < nBytes) {
    end[lastNonEmpty] = nBytes;
    for (let i = lastNonEmpty + 1; i < n; i++) start[i] = end[i] = nBytes;
  }
  return { start, end };
}
