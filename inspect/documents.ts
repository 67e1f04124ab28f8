// Finding scored documents in an output dir (by id, by position, or a seeded sample) and giving each its text
// and per-token scores, for `show` and `report`. Reads one batch at a time; only the chosen documents stay
// in memory.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RecordBatch } from 'apache-arrow';
import { COL, META, logprobColumn } from '../schemas/contract.js';
import { openScoreSet, setBatches, fileBatches, listView, boolListBytes, type ScoreSet } from '../pipeline/io/score-files.js';
import { LAYOUT } from '../schemas/layout.js';
import { ConfigError } from '../schemas/errors.js';
import { readShard, shardFormat } from '../stages/read.js';
import { TextTokenizer } from '../stages/tokenize.js';
import { sha256 } from '../stages/write.js';
import { segmentsByDecoding, segmentsFromOffsets, specialTokenIds, type DocText } from './segments.js';

export interface ScoredDoc {
  id: string;
  source: string;
  row: number;
  /** Position of the document in the whole output dir (files in order, rows in file order), 0-based. */
  index: number;
  file: string;
  tokenIds: Int32Array;
  /** Per model: log-prob per token, null where unscored. */
  logprobs: Record<string, (number | null)[]>;
  /** Per token, when the files have `select_mask`. */
  selectMask: boolean[] | null;
}

export type DocSelector = { id: string } | { index: number } | { sample: number; seed: number };

function extractDoc(set: ScoreSet, batch: RecordBatch, r: number, index: number, file: string): ScoredDoc {
  const ids = listView<Int32Array>(batch, COL.tokenIds);
  const a = ids.offsets[r];
  const b = ids.offsets[r + 1];
  const logprobs: Record<string, (number | null)[]> = {};
  for (const m of set.models) {
    const v = listView<Float32Array>(batch, logprobColumn(m));
    const out: (number | null)[] = [];
    for (let j = v.offsets[r]; j < v.offsets[r + 1]; j++) out.push(v.valid(j) ? v.values[j] : null);
    logprobs[m] = out;
  }
  let selectMask: boolean[] | null = null;
  if (set.hasSelect) {
    const mk = boolListBytes(batch, COL.selectMask);
    selectMask = Array.from(mk.bytes.subarray(mk.offsets[r], mk.offsets[r + 1]), (x) => x === 1);
  }
  return {
    id: String(batch.getChild(COL.id)!.get(r)),
    source: String(batch.getChild(COL.source)!.get(r)),
    row: Number(batch.getChild(COL.row)!.get(r)),
    index,
    file,
    tokenIds: Int32Array.from(ids.values.subarray(a, b)),
    logprobs,
    selectMask,
  };
}

/** Small seeded PRNG (mulberry32): the same --seed picks the same documents on every machine. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function findDocuments(set: ScoreSet, sel: DocSelector): Promise<ScoredDoc[]> {
  if ('index' in sel && !(Number.isInteger(sel.index) && sel.index >= 0)) throw new ConfigError(`--row ${sel.index}: give a document position 0, 1, 2, ...`);
  if ('sample' in sel && !(Number.isInteger(sel.sample) && sel.sample >= 1)) throw new ConfigError(`--sample ${sel.sample}: give a positive number of documents`);
  // Pass 1 reads only the id column to choose documents; pass 2 decodes the full rows of the chosen ones.
  const random = 'sample' in sel ? seededRandom(sel.seed) : null;
  const chosen: { fileIndex: number; rowInFile: number; index: number }[] = [];
  let index = 0;
  let lastFile = -1;
  let rowInFile = 0;
  search: for await (const { batch, fileIndex } of setBatches(set, [COL.id])) {
    if (fileIndex !== lastFile) { lastFile = fileIndex; rowInFile = 0; }
    const ids = batch.getChild(COL.id)!;
    for (let r = 0; r < batch.numRows; r++, index++, rowInFile++) {
      const at = { fileIndex, rowInFile, index };
      if ('id' in sel) {
        if (String(ids.get(r)) === sel.id) { chosen.push(at); break search; }
      } else if ('index' in sel) {
        if (index === sel.index) { chosen.push(at); break search; }
      } else if (chosen.length < sel.sample) chosen.push(at);
      else {
        // Reservoir sampling (Algorithm R): each document is kept with probability sample / (index + 1).
        const j = Math.floor(random!() * (index + 1));
        if (j < sel.sample) chosen[j] = at;
      }
    }
  }
  if (chosen.length === 0 && 'id' in sel) throw new ConfigError(`${set.root}: no document with id "${sel.id}" in ${set.files.length} score file(s) (${index} documents)`);
  if (chosen.length === 0 && 'index' in sel) throw new ConfigError(`${set.root}: --row ${sel.index} is past the end: the dir holds ${index} documents (rows 0..${index - 1})`);
  chosen.sort((a, b) => a.index - b.index);

  const docs: ScoredDoc[] = [];
  for (const fileIndex of [...new Set(chosen.map((c) => c.fileIndex))]) {
    const wanted = chosen.filter((c) => c.fileIndex === fileIndex);
    const file = set.files[fileIndex];
    let first = 0;
    for await (const batch of fileBatches(file)) {
      for (const w of wanted) {
        if (w.rowInFile >= first && w.rowInFile < first + batch.numRows) docs.push(extractDoc(set, batch, w.rowInFile - first, w.index, file.path));
      }
      first += batch.numRows;
      if (first > wanted[wanted.length - 1].rowInFile) break;
    }
  }
  return docs;
}

export interface TextOptions {
  /** Path of tokenizer.json; default: the one named in the files' metadata. */
  tokenizer?: string;
  /** Field of the source records that held the text; default: the run's `text_field` (_rho/config.json). */
  textField?: string;
  /** Do not try to re-read the source document; decode token_ids instead. */
  decodeOnly?: boolean;
}

/** Everything needed to turn token ids back into text, loaded once per output dir. */
export interface TextContext {
  tokenizer: TextTokenizer;
  tokenizerPath: string;
  specialIds: Set<number>;
  textField: string;
  idField: string | null;
  decodeOnly: boolean;
  /** Warnings for stderr (e.g. a tokenizer whose sha256 differs from the one that scored). */
  warnings: string[];
}

export function loadTextContext(set: ScoreSet, opts: TextOptions = {}): TextContext {
  const warnings: string[] = [];
  const recorded = set.tokenizer;
  const path = opts.tokenizer ?? recorded?.path;
  if (!path) throw new ConfigError(`${set.files[0].path}: metadata ${META.tokenizer} names no tokenizer; give --tokenizer PATH`);
  if (!existsSync(path)) {
    throw new ConfigError(opts.tokenizer
      ? `--tokenizer ${path}: file not found`
      : `tokenizer ${path} (from metadata ${META.tokenizer} of ${set.files[0].path}) not found from ${process.cwd()}; give --tokenizer PATH`);
  }
  const bytes = readFileSync(path);
  if (recorded?.sha256 && sha256(bytes) !== recorded.sha256) {
    warnings.push(`tokenizer ${path} has sha256 ${sha256(bytes).slice(0, 12)}, but the scores were made with ${recorded.sha256.slice(0, 12)}: token text may be wrong`);
  }
  let tokenizer: TextTokenizer;
  try {
    tokenizer = TextTokenizer.load(path);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  let textField = opts.textField;
  let idField: string | null = null;
  try {
    const cfg = JSON.parse(readFileSync(join(set.root, LAYOUT.config), 'utf8')) as { text_field?: string; id_field?: string | null };
    textField ??= cfg.text_field;
    idField = cfg.id_field ?? null;
  } catch { /* no run config: the default field name below */ }
  return { tokenizer, tokenizerPath: path, specialIds: specialTokenIds(path), textField: textField ?? 'text', idField, decodeOnly: Boolean(opts.decodeOnly), warnings };
}

async function readSourceText(doc: ScoredDoc, ctx: TextContext): Promise<{ text: string } | { why: string }> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(doc.source)) return { why: `source ${doc.source} is not a local file` };
  if (!existsSync(doc.source)) return { why: `source ${doc.source} not found from ${process.cwd()}` };
  try { shardFormat(doc.source); } catch (e) { return { why: (e as Error).message }; }
  const items = readShard(doc.source, { textField: ctx.textField, idField: ctx.idField ?? undefined, skipRowsBefore: (r) => r < doc.row });
  try {
    for await (const item of items) {
      const row = item.kind === 'doc' ? item.doc.row : item.reject.row;
      if (row < doc.row) continue;
      if (row > doc.row) break;
      if (item.kind === 'reject') return { why: `${doc.source} row ${doc.row}: ${item.reject.reason}` };
      if (ctx.idField && item.doc.id !== doc.id) return { why: `${doc.source} row ${doc.row} now has id "${item.doc.id}", not "${doc.id}"` };
      return { text: item.doc.text };
    }
  } finally {
    await items.return(undefined);
  }
  return { why: `${doc.source} has no row ${doc.row} any more` };
}

/**
 * The document's text and token segments: from the source row and the tokenizer's offsets when the source
 * re-tokenizes to exactly the stored ids (an EOS appended by --append-eos is allowed at the end), else by
 * decoding the stored ids.
 */
export async function documentText(doc: ScoredDoc, ctx: TextContext): Promise<DocText> {
  let note: string | undefined;
  if (!ctx.decodeOnly) {
    const src = await readSourceText(doc, ctx);
    if ('text' in src) {
      const enc = await ctx.tokenizer.offsets(src.text);
      const n = enc.ids.length;
      const stored = doc.tokenIds;
      let diff = -1;
      for (let i = 0; i < Math.min(n, stored.length); i++) if (enc.ids[i] !== stored[i]) { diff = i; break; }
      const tailOk = stored.length === n || (stored.length === n + 1 && ctx.specialIds.has(stored[n]));
      if (diff < 0 && tailOk) {
        const offsets = enc.offsets.slice();
        if (stored.length === n + 1) offsets.push([0, 0]);
        const { segments, specials } = segmentsFromOffsets(src.text, offsets);
        return { text: src.text, segments, specials, origin: 'source' };
      }
      note = diff >= 0
        ? `source row re-tokenizes differently from the stored token_ids (first difference at token ${diff}); text decoded from token_ids`
        : `source row re-tokenizes to ${n} tokens, the stored token_ids have ${stored.length}; text decoded from token_ids`;
    } else note = `${src.why}; text decoded from token_ids`;
  } else note = 'text decoded from token_ids (--decode)';
  const d = await segmentsByDecoding(ctx.tokenizer, doc.tokenIds, ctx.specialIds);
  return { ...d, origin: 'decoded', note };
}

export async function openForDocuments(dir: string): Promise<ScoreSet> {
  return openScoreSet(dir);
}
