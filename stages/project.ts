// Cross-tokenizer projection: a reference model's per-token log-probs, computed on its own tokens, shared
// out onto the trainer's tokens by byte overlap. Pure functions; the score job calls them once per document
// when a model has its own tokenizer (--model-tokenizer). The rule and its null/special-token cases are
// documented in docs/cross-tokenizer.md; the tests check it against an independent brute-force version.
import type { ByteSpans } from './spans.js';

/** Name of the rule, recorded in provenance: change it when the rule changes. */
export const PROJECTION_RULE = 'byte-overlap-v1';

export interface Projection {
  /** One value per trainer token; NaN (written as null) where no scored reference token contributed. */
  logprob: Float32Array;
  /** Σ of the reference's non-null log-probs over its own tokens (float64): Σ of `logprob`'s non-null values equals it. */
  nativeSum: number;
  /** Σ of the non-null projected values as computed in float64 before the float32 cast (for tests). */
  projectedSum: number;
}

/**
 * Project reference log-probs (NaN = null: no context) onto trainer tokens.
 *
 * - A scored reference token r with a non-empty byte span of L bytes gives each trainer token t the share
 *   logprob(r) * overlap(r, t) / L. Where boundaries agree a trainer token gets the sum of the reference tokens
 *   that make it up (the chain rule); inside a shared token the split is by bytes.
 * - A reference token with an empty span (a special token) at byte p gives its whole log-prob to one anchor:
 *   the trainer token at the same rank among the trainer's empty-span tokens at p if the trainer has any there,
 *   else the trainer token whose span contains byte p, else (p at the end of the text) the last trainer token
 *   with a non-empty span, else the last trainer token. A non-empty reference token that overlaps no trainer
 *   token (only possible when the trainer has no non-empty span) uses the same anchor.
 * - A null reference token contributes nothing. A trainer token that receives nothing is null.
 * So every non-null reference log-prob lands in full on non-null trainer tokens: Σ projected = Σ native
 * (up to float rounding) whenever the trainer has at least one token.
 *
 * Both span lists must come from byteSpans() over the same text (non-empty spans tile the text's bytes).
 */
export function projectLogprobs(trainer: ByteSpans, ref: ByteSpans, refLogprob: Float32Array): Projection {
  const nT = trainer.start.length;
  const nR = ref.start.length;
  if (refLogprob.length !== nR) throw new Error(`projectLogprobs: ${refLogprob.length} log-probs for ${nR} reference tokens`);
  const acc = new Float64Array(nT);
  const got = new Uint8Array(nT);
  let nativeSum = 0;
  if (nT === 0) {
    for (let r = 0; r < nR; r++) if (!Number.isNaN(refLogprob[r])) nativeSum += refLogprob[r];
    return { logprob: new Float32Array(0), nativeSum, projectedSum: 0 };
  }
  const tS = trainer.start;
  const tE = trainer.end;
  const rS = ref.start;
  const rE = ref.end;
  // Last trainer token with a non-empty span, for anchors at the end of the text.
  let lastNonEmpty = -1;
  for (let t = nT - 1; t >= 0; t--) if (tE[t] > tS[t]) { lastNonEmpty = t; break; }

  // Trainer non-empty spans are sorted and disjoint, and so are the reference's: one forward sweep.
  let t0 = 0; // first trainer token whose span may still overlap the current reference token
  let emptyRank = 0; // rank of the current reference token among the reference's consecutive empty spans at its byte
  for (let r = 0; r < nR; r++) {
    const lp = refLogprob[r];
    const s = rS[r];
    const e = rE[r];
    if (e === s) emptyRank = r > 0 && rE[r - 1] === rS[r - 1] && rS[r - 1] === s ? emptyRank + 1 : 0;
    if (Number.isNaN(lp)) continue;
    nativeSum += lp;
    if (e > s) {
      while (t0 < nT && tE[t0] <= s) t0++;
      let placed = false;
      for (let t = t0; t < nT && tS[t] < e; t++) {
        const o = Math.min(e, tE[t]) - Math.max(s, tS[t]);
        if (o <= 0) continue;
        // o === L gives lp exactly (o / L === 1): the identity case reproduces the values bit for bit.
        acc[t] += lp * (o / (e - s));
        got[t] = 1;
        placed = true;
      }
      if (placed) continue;
    }
    const t = anchor(trainer, s, e === s ? emptyRank : 0, lastNonEmpty);
    acc[t] += lp;
    got[t] = 1;
  }
  const logprob = new Float32Array(nT);
  let projectedSum = 0;
  for (let t = 0; t < nT; t++) {
    if (got[t]) {
      logprob[t] = acc[t];
      projectedSum += acc[t];
    } else logprob[t] = Number.NaN;
  }
  return { logprob, nativeSum, projectedSum };
}

/** The trainer token that takes a reference token with an empty span at byte p (rank among empty spans at p). */
function anchor(trainer: ByteSpans, p: number, rank: number, lastNonEmpty: number): number {
  const { start, end } = trainer;
  const n = start.length;
  // Binary search for the first token with start >= p (starts are non-decreasing in token order).
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (start[mid] < p) lo = mid + 1;
    else hi = mid;
  }
  // lo: first token with start >= p. Empty trainer spans at p come first among those (in token order).
  let firstEmpty = -1;
  let count = 0;
  for (let t = lo; t < n && start[t] === p && end[t] === p; t++) {
    if (firstEmpty < 0) firstEmpty = t;
    count++;
  }
  if (count > 0) return firstEmpty + Math.min(rank, count - 1);
  // The non-empty token containing p: starts at p, or is the one before lo.
  for (let t = lo; t < n && start[t] === p; t++) if (end[t] > p) return t;
  for (let t = lo - 1; t >= 0; t--) {
    if (end[t] > start[t]) {
      if (end[t] > p) return t;
      break;
    }
  }
  return lastNonEmpty >= 0 ? lastNonEmpty : n - 1;
}
