// The ONE definition of a top-k% selection cut, shared by `rho select` (which applies it) and `rho stats`,
// `rho report`, `rho show` (which describe it). Whatever is drawn or printed as "the 60% cut" is the
// threshold select applies on the same tokens.
//
// A selection ranks tokens by a score where higher is kept (docs/select.md):
//   --by ref_loss: score = ref_logprob = -ref_loss  -> keeps the LOWEST reference losses (loss <= threshold)
//   --by excess:   score = ref_logprob - base_logprob = base_loss - ref_loss -> keeps the HIGHEST excess loss
// Out of N scored tokens a cut keeps m = keepCount(ratio, N); the threshold is the m-th best value, so the
// kept side is "at or below" (losses) or "at or above" (excess) the threshold.

export type SelectBy = 'ref_loss' | 'excess';

/** The metric a cut is described on, in nats: a model's loss (-logprob) or an excess loss (base - ref). */
export type CutMetric = 'loss' | 'excess';

/** Which side of the threshold (on the metric, in nats) a selection keeps. */
export type KeptSide = 'at_or_below' | 'at_or_above';

export function metricOf(by: SelectBy): CutMetric {
  return by === 'excess' ? 'excess' : 'loss';
}

export function byOf(metric: CutMetric): SelectBy {
  return metric === 'excess' ? 'excess' : 'ref_loss';
}

/** The side of the metric a selection keeps: low losses, high excess losses. */
export function keptSide(metric: CutMetric): KeptSide {
  return metric === 'loss' ? 'at_or_below' : 'at_or_above';
}

/** select's score from the metric value (nats): -loss for `ref_loss`, the excess loss itself for `excess`. */
export function scoreFromMetric(metric: CutMetric, value: number): number {
  return metric === 'loss' ? -value : value;
}

/** Number of tokens to keep out of n scored ones: ceil(k*n), with k*n within 1e-9 of an integer taken as that integer. */
export function keepCount(ratio: number, n: number): number {
  const x = ratio * n;
  const r = Math.round(x);
  return Math.abs(x - r) <= 1e-9 * Math.max(1, x) ? r : Math.ceil(x);
}

/**
 * 0-based ascending rank, among n values of the metric, of the threshold of a cut keeping `ratio`; null when
 * nothing is kept. Losses: the m-th smallest (rank m-1); excess: the m-th largest (rank n-m). On select's
 * score (higher kept) both are the m-th largest score.
 */
export function thresholdRank(metric: CutMetric, ratio: number, n: number): number | null {
  const m = keepCount(ratio, n);
  if (m === 0 || n === 0) return null;
  return metric === 'loss' ? m - 1 : n - m;
}

/** Whether a value of the metric lies on the kept side of a threshold (ties included; NaN never). */
export function onKeptSide(metric: CutMetric, value: number, threshold: number): boolean {
  return metric === 'loss' ? value <= threshold : value >= threshold;
}

/** "loss <= 5.051" / "excess >= 0.42": the kept side in words. */
export function keptLabel(metric: CutMetric, threshold: number, digits = 3): string {
  return `${metric === 'loss' ? 'loss' : 'excess'} ${metric === 'loss' ? '<=' : '>='} ${threshold.toFixed(digits)}`;
}

/** Short label of a ratio: `keep 60%`. */
export function keepRatioLabel(ratio: number): string {
  return `keep ${+(ratio * 100).toFixed(2)}%`;
}

/**
 * The `rho select` flags that apply this cut to a metric of `rho stats` (global scope, so its threshold is
 * the one stats reports): `loss` of model M -> `--by ref_loss --ref M`; excess of M over R -> `--by excess
 * --ref R --base M`.
 */
export function selectArgs(metric: CutMetric, model: string, reference: string | undefined, ratio: number): string {
  const by = metric === 'loss' ? `--by ref_loss --ref ${model}` : `--by excess --ref ${reference} --base ${model}`;
  return `${by} --ratio ${ratio} --scope global`;
}
