// Token selection (Rho-1 Selective Language Modeling, static variant): a score per token, then keep the top
// fraction k of the scored tokens of each scope (a document, a training batch, or the whole dataset).
//
// Rules (docs/select.md):
// - score: `excess` = L_base - L_ref = ref_logprob - base_logprob; `ref_loss` = -L_ref = ref_logprob (the
//   excess loss with a constant base loss: tokens the reference finds most predictable first). Higher is kept.
// - null positions (no context) and NaN scores are never selected and are not counted in N.
// - exact scopes keep exactly m = ceil(k * N) tokens, where k * N within 1e-9 of an integer counts as that
//   integer (0.55 * 100 = 55.00000000000001 keeps 55, not 56);
// - ties at the threshold: earlier tokens (in training order) first.
// - threshold mode (global scope from a sketch): keep every token with score >= threshold.
import type { RecordBatch } from 'apache-arrow';
import { Bool, Int32, makeData, type Data } from 'apache-arrow';
import { COL, IGNORE_INDEX, logprobColumn } from '../schemas/contract.js';
import { listView } from './lists.js';
import { listData } from './write.js';
import { keepCount, thresholdRank, type SelectBy } from '../schemas/selection-cut.js';

// The cut itself (how many are kept, where the threshold lies) is defined once in schemas/selection-cut.ts,
// which stats/report/show use too.
export { keepCount, type SelectBy };
export type SelectScope = 'document' | 'batch' | 'global';

export { SELECT_META } from '../schemas/contract.js';

export interface ScoreSpec {
  by: SelectBy;
  ref: string;
  base: string;
}

export function scoreFormula(s: ScoreSpec): string {
  return s.by === 'excess' ? `${logprobColumn(s.ref)} - ${logprobColumn(s.base)}` : logprobColumn(s.ref);
}

/** Columns the score reads. */
export function scoreInputs(s: ScoreSpec): string[] {
  return s.by === 'excess' ? [logprobColumn(s.ref), logprobColumn(s.base)] : [logprobColumn(s.ref)];
}

export interface BatchScores {
  /** rows + 1 offsets into `scores`, starting at 0. */
  offsets: Int32Array;
  /** One per token; NaN where the token cannot be selected (null or NaN input). */
  scores: Float64Array;
}

/** The selection score of every token of a record batch. */
export function batchScores(batch: RecordBatch, s: ScoreSpec): BatchScores {
  const rows = batch.numRows;
  const ref = listView<Float32Array>(batch, logprobColumn(s.ref));
  const base = s.by === 'excess' ? listView<Float32Array>(batch, logprobColumn(s.base)) : null;
  const r0 = ref.offsets[0];
  const n = ref.offsets[rows] - r0;
  const offsets = new Int32Array(rows + 1);
  for (let r = 0; r <= rows; r++) offsets[r] = ref.offsets[r] - r0;
  const scores = new Float64Array(n);
  if (!base) {
    for (let j = 0; j < n; j++) scores[j] = ref.valid(r0 + j) ? ref.values[r0 + j] : NaN;
  } else {
    const b0 = base.offsets[0];
    for (let r = 0; r < rows; r++) {
      if (base.offsets[r + 1] - b0 !== offsets[r + 1]) throw new Error(`internal: ${logprobColumn(s.base)} and ${logprobColumn(s.ref)} differ in length in row ${r}`);
    }
    for (let j = 0; j < n; j++) {
      scores[j] = ref.valid(r0 + j) && base.valid(b0 + j) ? ref.values[r0 + j] - base.values[b0 + j] : NaN;
    }
  }
  return { offsets, scores };
}

/** Where the top m of a scope end: keep score > threshold, plus the first `tieTake` tokens equal to it. */
export interface Cut {
  threshold: number;
  tieTake: number;
  /** Scored tokens in the scope (N) and tokens to keep (m). */
  scored: number;
  keep: number;
}

/** The cut for a scope from its scored values (NaN-free, any order). `values` is sorted in place. */
export function cutOf(values: Float64Array, ratio: number): Cut {
  const n = values.length;
  const m = keepCount(ratio, n);
  // Scores are higher-kept in both --by modes, so the threshold is the excess-side rank (the m-th largest).
  const rank = thresholdRank('excess', ratio, n);
  if (rank === null) return { threshold: Infinity, tieTake: 0, scored: n, keep: 0 };
  values.sort();
  const threshold = values[rank];
  let greater = 0;
  for (let i = n - 1; i >= 0 && values[i] > threshold; i--) greater++;
  return { threshold, tieTake: m - greater, scored: n, keep: m };
}

/** Applies a cut token by token, in training order, across record batches. */
export class CutApplier {
  private tiesLeft: number;
  constructor(readonly cut: { threshold: number; tieTake: number }) {
    this.tiesLeft = cut.tieTake;
  }

  keep(score: number): boolean {
    if (!(score >= this.cut.threshold)) return false; // NaN too
    if (score > this.cut.threshold) return true;
    if (this.tiesLeft > 0) {
      this.tiesLeft--;
      return true;
    }
    return false;
  }
}

/** Collects the scored values of a scope (growable, NaN skipped). */
export class ValueBuffer {
  private buf = new Float64Array(1024);
  length = 0;

  push(v: number): void {
    if (Number.isNaN(v)) return;
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }

  take(): Float64Array {
    const out = this.buf.subarray(0, this.length);
    this.buf = new Float64Array(1024);
    this.length = 0;
    return out;
  }
}

/** `select_mask` and `labels` columns for one record batch from its 0/1 mask and token ids. */
export function selectColumns(batch: RecordBatch, mask: Uint8Array, offsets: Int32Array): { selectMask: Data; labels: Data } {
  const tok = listView<Int32Array>(batch, COL.tokenIds);
  const t0 = tok.offsets[0];
  const n = mask.length;
  const bits = new Uint8Array((n + 7) >> 3);
  const labels = new Int32Array(n);
  for (let j = 0; j < n; j++) {
    if (mask[j]) {
      bits[j >> 3] |= 1 << (j & 7);
      labels[j] = tok.values[t0 + j];
    } else labels[j] = IGNORE_INDEX;
  }
  return {
    selectMask: listData(new Bool(), false, offsets, makeData({ type: new Bool(), length: n, data: bits })),
    labels: listData(new Int32(), false, offsets, makeData({ type: new Int32(), length: n, data: labels })),
  };
}

/** `select_mask` alone (list<bool>, bit-packed) from a 0/1 mask per token: what a compact selection stores. */
export function selectMaskData(mask: Uint8Array, offsets: Int32Array): Data {
  const n = mask.length;
  const bits = new Uint8Array((n + 7) >> 3);
  for (let j = 0; j < n; j++) if (mask[j]) bits[j >> 3] |= 1 << (j & 7);
  return listData(new Bool(), false, offsets, makeData({ type: new Bool(), length: n, data: bits }));
}

/** Median of a list of numbers (the lower one for an even count); NaN when empty. */
export function summarize(values: Float64Array): { min: number; median: number; max: number; count: number } | null {
  if (values.length === 0) return null;
  const s = Float64Array.from(values).sort();
  return { min: s[0], median: s[(s.length - 1) >> 1], max: s[s.length - 1], count: s.length };
}
