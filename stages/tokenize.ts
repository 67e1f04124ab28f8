// Tokenization with any Hugging Face tokenizer.json through the `tokenizers` Rust binding. encodeBatch runs
// on the binding's own thread pool, off the event loop. Special tokens are what the tokenizer's
// post-processor adds (what `tokenizer(text)` does in Hugging Face); `appendEos` adds EOS after that.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import type { Document, Flow, TokenizedDocument } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';
import { byteSpans, codePointByteOffsets, tokenByteLengths, type ByteSpans } from './spans.js';
import { cutModeOf, DEFAULT_PIECES, encodeInPieces, type CutMode, type PieceOptions, type PieceStats } from './pieces.js';

/** A document's tokens with their UTF-8 byte spans (cross-tokenizer scoring). */
export interface SpannedTokens {
  tokenIds: Int32Array;
  spans: ByteSpans;
}

export interface TokenizerInfo {
  path: string;
  /** Largest token id + 1, added tokens included: every id the tokenizer can emit is below this. */
  vocabSize: number;
  eosToken: string | null;
  eosId: number | null;
}

const EOS_CANDIDATES = ['</s>', '<|endoftext|>', '<|end_of_text|>', '<|eos|>', '<eos>', '<|im_end|>'];

export class TextTokenizer {
  readonly info: TokenizerInfo;
  private readonly tok: Tokenizer;
  private readonly appendEos: boolean;
  private byteLengths: Int32Array | null = null;
  private pieces: PieceOptions | null;
  /** How long documents are cut (stages/pieces.ts), and the special tokens the post-processor puts around a text; found on the first long document. */
  private longPlan: { mode: CutMode; before: number[]; after: number[] } | { unsupported: string } | null = null;
  private warnedWhole = false;
  /** Totals of the piecewise tokenizations so far (tests read them). */
  readonly pieceStats: PieceStats & { wholeFallbacks: number } = { cuts: 0, rejectedCandidates: 0, wholeFallbacks: 0 };

  private constructor(tok: Tokenizer, info: TokenizerInfo, appendEos: boolean, pieces: PieceOptions | null) {
    this.tok = tok;
    this.info = info;
    this.appendEos = appendEos;
    this.pieces = pieces;
  }

  /**
   * Load a tokenizer.json. The EOS token comes from `eosToken`, else tokenizer_config.json next to it,
   * else a well-known name present in the vocabulary. Truncation and padding configured in the file are
   * switched off: rho windows long documents itself and must see every token.
   */
  static load(path: string, opts: { appendEos?: boolean; eosToken?: string; pieces?: PieceOptions | false } = {}): TextTokenizer {
    if (!existsSync(path)) throw new Error(`tokenizer not found: ${path} (give the path of a Hugging Face tokenizer.json)`);
    let tok: Tokenizer;
    try {
      tok = Tokenizer.fromFile(path);
    } catch (e) {
      throw new Error(`${path}: not a readable Hugging Face tokenizer.json (${(e as Error).message})`);
    }
    tok.disableTruncation();
    tok.disablePadding();
    const vocab = tok.getVocab(true);
    let maxId = -1;
    for (const id of Object.values(vocab)) if (id > maxId) maxId = id;
    let eosToken = opts.eosToken ?? configuredEos(path);
    if (eosToken === null) eosToken = EOS_CANDIDATES.find((t) => tok.tokenToId(t) !== null) ?? null;
    const eosId = eosToken === null ? null : tok.tokenToId(eosToken);
    if (opts.appendEos && (eosToken === null || eosId === null)) {
      throw new Error(`${path}: --append-eos given but no EOS token found${eosToken ? ` ("${eosToken}" is not in the vocabulary)` : ''}; name it with --eos-token`);
    }
    const pieces = opts.pieces === undefined ? piecesFromEnv() : opts.pieces || null;
    return new TextTokenizer(tok, { path, vocabSize: maxId + 1, eosToken, eosId }, Boolean(opts.appendEos), pieces);
  }

  /**
   * Tokenize a chunk of documents: the short ones with one batch call, each very long one (over pieceChars +
   * marginChars characters) in bounded pieces (stages/pieces.ts) whose ids equal the whole text's. `onTokens`
   * hears of tokens as they are done, inside a long document too (progress).
   */
  async encode(docs: Document[], onTokens?: (n: number) => void): Promise<TokenizedDocument[]> {
    if (docs.length === 0) return [];
    const limit = this.pieces ? this.pieces.pieceChars + this.pieces.marginChars : Infinity;
    const ids: ArrayLike<number>[] = new Array(docs.length);
    const short = docs.flatMap((d, i) => (d.text.length > limit ? [] : [i]));
    if (short.length > 0) {
      const encodings = await this.tok.encodeBatch(short.map((i) => docs[i].text));
      short.forEach((i, j) => { ids[i] = encodings[j].getIds(); });
    }
    const eos = this.appendEos ? 1 : 0;
    if (short.length > 0) onTokens?.(short.reduce((a, i) => a + ids[i].length + eos, 0));
    for (let i = 0; i < docs.length; i++) {
      if (ids[i] !== undefined) continue;
      // Pieces are counted as they are done; the special tokens and EOS when the document is.
      let counted = 0;
      ids[i] = await this.encodeLong(docs[i].text, onTokens && ((n) => { counted += n; onTokens(n); }));
      onTokens?.(ids[i].length + eos - counted);
    }
    // One allocation per chunk, a view per document: a typed array per document cost ~15 µs each here.
    let total = 0;
    for (const x of ids) total += x.length + eos;
    const all = new Int32Array(total);
    let off = 0;
    return docs.map((d, i) => {
      const n = ids[i].length + eos;
      const tokenIds = all.subarray(off, off + n);
      tokenIds.set(ids[i]);
      if (eos) tokenIds[n - 1] = this.info.eosId!;
      off += n;
      return { ...d, docSeq: d.docSeq ?? i, tokenIds };
    });
  }

  /** Change how long documents are cut (tests force tiny pieces); null tokenizes every document whole. */
  setPieces(pieces: PieceOptions | null): void {
    this.pieces = pieces;
  }

  /** The ids of one very long text with the post-processor's special tokens, tokenized in pieces when the tokenizer allows it. */
  async encodeLong(text: string, onTokens?: (n: number) => void): Promise<ArrayLike<number>> {
    const plan = await this.planLong();
    if ('mode' in plan) {
      let counted = 0;
      const body = await encodeInPieces(this.tok, text, plan.mode, this.pieces!, this.pieceStats, onTokens && ((n) => { counted += n; onTokens(n); }));
      // A document that fell back after some pieces: those tokens are counted again by the whole tokenization.
      if (!body && counted > 0) onTokens!(-counted);
      if (body) {
        const ids = new Int32Array(plan.before.length + body.length + plan.after.length);
        ids.set(plan.before, 0);
        ids.set(body, plan.before.length);
        ids.set(plan.after, plan.before.length + body.length);
        return ids;
      }
    }
    this.pieceStats.wholeFallbacks++;
    if (!this.warnedWhole) {
      this.warnedWhole = true;
      const why = 'mode' in plan ? 'no cut passed its checks' : plan.unsupported;
      process.stderr.write(`rho: a document of ${text.length} characters is tokenized whole, not in pieces (${this.info.path}: ${why}); memory grows with its length (said once)\n`);
    }
    return (await this.tok.encode(text)).getIds();
  }

  private async planLong(): Promise<{ mode: CutMode; before: number[]; after: number[] } | { unsupported: string }> {
    if (this.longPlan) return this.longPlan;
    let json: Record<string, unknown> | null = null;
    try { json = JSON.parse(readFileSync(this.info.path, 'utf8')) as Record<string, unknown>; } catch { /* unsupported below */ }
    const cut = cutModeOf(json);
    if (!('mode' in cut)) return (this.longPlan = cut);
    // The special tokens around a text: those the post-processor adds to a probe, before and after its own ids.
    const probe = 'Hello world, a probe.';
    const [plain, full] = [await this.tok.encode(probe, null, { addSpecialTokens: false }), await this.tok.encode(probe)];
    const p = plain.getIds();
    const f = full.getIds();
    const mask = full.getSpecialTokensMask();
    let before = 0;
    while (before < f.length && mask[before] === 1) before++;
    const after = f.length - before - p.length;
    const same = after >= 0 && p.every((id, i) => f[before + i] === id) && mask.slice(before + p.length).every((m) => m === 1);
    if (!same) return (this.longPlan = { unsupported: 'the post-processor does more than put special tokens around the text' });
    return (this.longPlan = { mode: cut.mode, before: f.slice(0, before), after: f.slice(before + p.length) });
  }

  /**
   * Tokenize texts with one batch call and derive each token's UTF-8 byte span (stages/spans.ts); the ids are
   * the same as encode()'s, EOS appended when asked (an empty span at the end of the text). `cpBytes` may give
   * each text's code-point → byte prefix table when the caller already has it.
   */
  async encodeSpans(texts: string[], cpBytes?: Int32Array[]): Promise<SpannedTokens[]> {
    if (texts.length === 0) return [];
    this.byteLengths ??= tokenByteLengths(JSON.parse(readFileSync(this.info.path, 'utf8')));
    const encodings = await this.tok.encodeBatch(texts);
    const eos = this.appendEos ? 1 : 0;
    return encodings.map((enc, i) => {
      const ids = enc.getIds();
      const cpb = cpBytes?.[i] ?? codePointByteOffsets(texts[i]);
      const spans = byteSpans(ids, enc.getOffsets(), cpb, this.byteLengths!);
      if (!eos) return { tokenIds: Int32Array.from(ids), spans };
      const n = ids.length + 1;
      const tokenIds = new Int32Array(n);
      tokenIds.set(ids);
      tokenIds[n - 1] = this.info.eosId!;
      const nBytes = cpb[cpb.length - 1];
      const start = new Int32Array(n);
      const end = new Int32Array(n);
      start.set(spans.start);
      end.set(spans.end);
      start[n - 1] = end[n - 1] = nBytes;
      return { tokenIds, spans: { start, end } };
    });
  }

  /** Token boundaries as code-point offsets [start, end) into the text (for `show`). */
  async offsets(text: string): Promise<{ ids: number[]; offsets: number[][] }> {
    const enc = await this.tok.encode(text);
    return { ids: enc.getIds(), offsets: enc.getOffsets() };
  }

  async decode(ids: number[]): Promise<string> {
    return this.tok.decode(ids, false);
  }

  idToToken(id: number): string | null {
    return this.tok.idToToken(id);
  }
}

/** Test only: RHO_TEST_TOKENIZE_PIECES="pieceChars,marginChars" forces small pieces (a CLI run cuts every document). */
function piecesFromEnv(): PieceOptions {
  const v = process.env.RHO_TEST_TOKENIZE_PIECES;
  if (!v) return DEFAULT_PIECES;
  const [pieceChars, marginChars] = v.split(',').map(Number);
  if (!(pieceChars >= 1) || !(marginChars >= 8)) throw new Error(`RHO_TEST_TOKENIZE_PIECES must be "pieceChars,marginChars" (got ${JSON.stringify(v)})`);
  return { pieceChars, marginChars };
}

function configuredEos(tokenizerPath: string): string | null {
  const cfgPath = join(dirname(tokenizerPath), 'tokenizer_config.json');
  if (!existsSync(cfgPath)) return null;
  try {
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { eos_token?: string | { content?: string } };
    const eos = cfg.eos_token;
    if (typeof eos === 'string') return eos;
    if (eos && typeof eos.content === 'string') return eos.content;
  } catch {
    // A broken config is not fatal: the well-known names are tried next.
  }
  return null;
}

export interface TokenizeStageOptions {
  /** A chunk is tokenized with one encodeBatch call once it holds this many documents or characters. */
  chunkDocs?: number;
  chunkChars?: number;
  /** Keep each document's text past this stage (a later stage reads it again: the cross-tokenizer stage). Default false. */
  keepText?: boolean;
}

/**
 * The tokenize stage: documents in chunks through one encodeBatch call each; a chunk is also cut at the end of
 * a unit (so a unit's documents never wait for the next unit's). Gives each document its `docSeq`, the key
 * that later stages reassemble windows by.
 */
export function tokenizeStage(tokenizer: TextTokenizer, opts: TokenizeStageOptions = {}): Stage<Flow<Document>, Flow<TokenizedDocument>> {
  const chunkDocs = opts.chunkDocs ?? 256;
  const chunkChars = opts.chunkChars ?? 2_000_000;
  return stage('tokenize', async function* (input, ctx) {
    // Tokens tokenized so far, counted piece by piece inside a long document (the progress line shows them).
    ctx.stats.counters.tokenized_tokens = 0;
    let nextSeq = 0;
    let chunk: Extract<Flow<Document>, { kind: 'doc' }>[] = [];
    let chars = 0;
    async function* flush(): AsyncGenerator<Flow<TokenizedDocument>> {
      if (chunk.length === 0) return;
      const c = chunk;
      chunk = [];
      chars = 0;
      const tokenized = await tokenizer.encode(c.map((it) => ({ ...it.doc, docSeq: nextSeq++ })), (n) => { ctx.stats.counters.tokenized_tokens += n; });
      // The raw text is not needed past this point (the output holds token ids): drop it, so a unit in flight
      // holds ids and scores, not also its text (unless a later stage asks for it; it drops it then).
      for (let i = 0; i < c.length; i++) yield { kind: 'doc', unit: c[i].unit, doc: opts.keepText ? tokenized[i] : { ...tokenized[i], text: '' } };
      ctx.crashPoint('tokenized');
    }
    for await (const it of input) {
      if (it.kind === 'doc') {
        chunk.push(it);
        chars += it.doc.text.length;
        if (chunk.length >= chunkDocs || chars >= chunkChars) yield* flush();
        continue;
      }
      if (it.kind === 'end') yield* flush();
      yield it;
    }
    yield* flush();
  });
}
