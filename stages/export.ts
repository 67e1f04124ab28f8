// Memmap export: score record batches → flat little-endian arrays that numpy (`np.memmap`) and PyTorch read
// without a Parquet library. One file per column, all in training order, plus document offsets and a header.
// This module turns one record batch into the bytes to append; pipeline/export-job.ts owns files and order.
import type { RecordBatch } from 'apache-arrow';
import { COL, IGNORE_INDEX } from '../schemas/contract.js';
import { boolListBytes, listView } from './lists.js';
import { bfloat16Round, float16Bits } from '../schemas/score-dtype.js';

export const MEMMAP_FORMAT = 'rho-memmap';
export const MEMMAP_VERSION = 1;

export type TokenDtype = 'uint16' | 'uint32';
/** float32; float16 (IEEE binary16); bfloat16 (the high 16 bits of the rounded float32: numpy has no bfloat16, rho_torch and torch read it). */
export type ScoreDtype = 'float32' | 'float16' | 'bfloat16';

export interface ColumnEntry {
  file: string;
  dtype: string;
}

/** header.json: everything a reader needs to map the arrays (shapes, dtypes, files) plus provenance. */
export interface MemmapHeader {
  format: typeof MEMMAP_FORMAT;
  version: typeof MEMMAP_VERSION;
  byte_order: 'little';
  n_docs: number;
  n_tokens: number;
  token_dtype: TokenDtype;
  score_dtype: ScoreDtype;
  vocab_size: number;
  /** Where vocab_size came from: the tokenizer file, a model's config.json, or the largest token id + 1. */
  vocab_size_from: string;
  /** Every per-token array: token_ids, each score column, and labels / select_mask when the input had them. */
  columns: Record<string, ColumnEntry>;
  doc_offsets: ColumnEntry;
  docs: { file: string };
  /** Score arrays hold NaN where the score column is null (no context: position 0, window starts). */
  null_value: 'NaN';
  provenance: Record<string, string>;
}

/** Smallest unsigned dtype that holds every id below vocabSize. */
export function tokenDtypeFor(vocabSize: number): TokenDtype {
  return vocabSize <= 65536 ? 'uint16' : 'uint32';
}

export { float16Bits };

export interface ExportPlan {
  tokenDtype: TokenDtype;
  scoreDtype: ScoreDtype;
  vocabSize: number;
  scoreColumns: string[];
  withSelect: boolean;
}

/** What one record batch adds to each array, as bytes ready to append. */
export interface EncodedBatch {
  tokens: Uint8Array;
  scores: Map<string, Uint8Array>;
  labels: Uint8Array | null;
  selectMask: Uint8Array | null;
  /** Tokens per document, in row order. */
  docLengths: number[];
  docs: { id: string; source: string; row: number; n_tokens: number }[];
}

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/**
 * Encode one record batch. `where(row)` names a row for error messages (file and row index). Throws when a
 * token id does not fit the vocabulary or a per-token column does not line up with token_ids.
 */
/** The rows of a compact selection (rho select --compact) that go with one record batch of scores. */
export interface BatchSelection {
  sources: string[];
  rows: number[];
  /** rows + 1 offsets into `mask` (may start above 0). */
  offsets: Int32Array;
  mask: Uint8Array;
  /** The selection file, for messages. */
  where: string;
}

export function encodeBatch(batch: RecordBatch, plan: ExportPlan, where: (row: number) => string, selection?: BatchSelection): EncodedBatch {
  const rows = batch.numRows;
  const tok = listView<Int32Array>(batch, COL.tokenIds);
  const ids = batch.getChild(COL.id)!;
  const sources = batch.getChild(COL.source)!;
  const rowCol = batch.getChild(COL.row)!;
  const n = tok.offsets[rows] - tok.offsets[0];

  const tokens = plan.tokenDtype === 'uint16' ? new Uint16Array(n) : new Uint32Array(n);
  const docLengths: number[] = [];
  const docs: EncodedBatch['docs'] = [];
  let at = 0;
  for (let r = 0; r < rows; r++) {
    const a = tok.offsets[r];
    const b = tok.offsets[r + 1];
    for (let j = a; j < b; j++) {
      const id = tok.values[j];
      if (id < 0 || id >= plan.vocabSize) {
        throw new Error(`${where(r)}, field ${COL.tokenIds}[${j - a}]: token id ${id} is outside the vocabulary [0, ${plan.vocabSize}); the file does not match its tokenizer`);
      }
      tokens[at++] = id;
    }
    docLengths.push(b - a);
    docs.push({ id: String(ids.get(r)), source: String(sources.get(r)), row: Number(rowCol.get(r)), n_tokens: b - a });
  }

  const aligned = (name: string, offsets: Int32Array) => {
    for (let r = 0; r <= rows; r++) {
      if (offsets[r] - offsets[0] !== tok.offsets[r] - tok.offsets[0]) {
        const row = Math.max(0, r - 1);
        throw new Error(`${where(row)}, field ${name}: ${offsets[row + 1] - offsets[row]} values but ${tok.offsets[row + 1] - tok.offsets[row]} token_ids`);
      }
    }
  };

  const scores = new Map<string, Uint8Array>();
  for (const name of plan.scoreColumns) {
    const v = listView<Float32Array>(batch, name);
    aligned(name, v.offsets);
    const start = v.offsets[0];
    if (plan.scoreDtype === 'float32') {
      const out = new Float32Array(n);
      for (let j = 0; j < n; j++) out[j] = v.valid(start + j) ? v.values[start + j] : NaN;
      scores.set(name, bytesOf(out));
    } else if (plan.scoreDtype === 'float16') {
      const out = new Uint16Array(n);
      for (let j = 0; j < n; j++) out[j] = v.valid(start + j) ? float16Bits(v.values[start + j]) : 0x7e00;
      scores.set(name, bytesOf(out));
    } else {
      const f = new Float32Array(n);
      for (let j = 0; j < n; j++) f[j] = v.valid(start + j) ? bfloat16Round(v.values[start + j]) : NaN;
      // Little-endian: the high half of each float32 is its second uint16.
      const halves = new Uint16Array(f.buffer);
      const out = new Uint16Array(n);
      for (let j = 0; j < n; j++) out[j] = Number.isNaN(f[j]) ? 0x7fc0 : halves[2 * j + 1];
      scores.set(name, bytesOf(out));
    }
  }

  let labels: Uint8Array | null = null;
  let selectMask: Uint8Array | null = null;
  if (plan.withSelect && selection) {
    // Compact selection: the mask comes from the selection file, row for row; labels are derived from token_ids.
    const s0 = selection.offsets[0];
    for (let r = 0; r < rows; r++) {
      const src = String(sources.get(r));
      const row = Number(rowCol.get(r));
      if (selection.sources[r] !== src || selection.rows[r] !== row) {
        throw new Error(`${where(r)}: the selection ${selection.where} has (source ${selection.sources[r]}, row ${selection.rows[r]}) in its place, not (${src}, ${row}); it was made from other score files`);
      }
      const len = selection.offsets[r + 1] - selection.offsets[r];
      if (len !== tok.offsets[r + 1] - tok.offsets[r]) throw new Error(`${where(r)}, field ${COL.selectMask}: ${len} values in ${selection.where} but ${tok.offsets[r + 1] - tok.offsets[r]} token_ids`);
    }
    selectMask = selection.mask.subarray(0, selection.offsets[rows] - s0);
    const l = new Int32Array(n);
    const t0 = tok.offsets[0];
    for (let j = 0; j < n; j++) l[j] = selectMask[j] ? tok.values[t0 + j] : IGNORE_INDEX;
    labels = bytesOf(l);
  } else if (plan.withSelect) {
    const l = listView<Int32Array>(batch, COL.labels);
    aligned(COL.labels, l.offsets);
    labels = bytesOf(Int32Array.from(l.values.subarray(l.offsets[0], l.offsets[0] + n)));
    const m = boolListBytes(batch, COL.selectMask);
    aligned(COL.selectMask, m.offsets);
    selectMask = m.bytes.subarray(m.offsets[0], m.offsets[0] + n);
  }
  return { tokens: bytesOf(tokens), scores, labels, selectMask, docLengths, docs };
}
