// `rho stats`: one streaming pass over the score files of an output dir. Per group (the whole dir, each
// `source`, each value of a `--by` column) it counts documents and tokens and summarises every metric:
// `<model>_loss` (= -<model>_logprob) and, with two or more models, the static excess loss
// `<model>_loss - <reference>_loss`. Memory is bounded: values are kept for exact quantiles only up to
// `maxExactValues` (all groups and metrics together); past that every quantile comes from the DDSketch that
// is fed alongside (relative error alpha), and the result says which was used.
import { COL, logprobColumn } from '../schemas/contract.js';
import { openScoreSet, setBatches, listView, boolListBytes, type ScoreSet } from '../pipeline/io/score-files.js';
import { ConfigError } from '../schemas/errors.js';
import { QuantileSketch } from '../stages/sketch.js';
import { keepCount, keptSide, thresholdRank, scoreFromMetric, selectArgs, onKeptSide, type KeptSide } from '../schemas/selection-cut.js';
import { DataType, type RecordBatch } from 'apache-arrow';

/** The quantiles every metric reports (p1..p99). */
export const QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99] as const;
export const quantileName = (q: number): string => `p${Math.round(q * 100)}`;

/** Fixed histogram bins (so histograms of any number of files add up): [lo + k*width, lo + (k+1)*width). */
export interface HistogramSpec { lo: number; width: number; bins: number }
export const LOSS_BINS: HistogramSpec = { lo: 0, width: 0.5, bins: 32 };
export const EXCESS_BINS: HistogramSpec = { lo: -8, width: 0.5, bins: 32 };

export interface Histogram extends HistogramSpec {
  counts: number[];
  /** Values below lo / at or above lo + bins*width. */
  below: number;
  above: number;
}

export interface MetricDef {
  /** e.g. `ref_loss`, `excess_loss` */
  name: string;
  kind: 'loss' | 'excess';
  /** How it is computed from the columns, for people and for the recipes. */
  definition: string;
  model: string;
  /** For excess: the reference model it is measured against. */
  reference?: string;
}

export interface MetricStats {
  count: number;
  mean: number | null;
  min: number | null;
  max: number | null;
  /** `p1`..`p99`: SQL PERCENTILE_DISC, the value at 0-based rank ceil(q * count) - 1 of the ascending values. */
  quantiles: Record<string, number | null>;
  /**
   * Per `--ratio` r: the threshold of the cut `rho select` makes with that ratio on this metric
   * (schemas/selection-cut.ts): for a loss the m-th smallest value (select keeps losses at or below it), for an
   * excess loss the m-th largest (kept at or above it), m = ceil(r * count).
   */
  thresholds: Record<string, number | null>;
  /** Per `--ratio`: the same cut spelled out (added in round 2; `thresholds` keeps its shape). */
  cuts: Record<string, MetricCut>;
  histogram: Histogram;
}

export interface MetricCut {
  /** Which side of `threshold` select keeps. */
  kept_side: KeptSide;
  threshold: number | null;
  /** The threshold on select's score (what `rho select` prints and stores in `rho.select.threshold`). */
  select_threshold: number | null;
  /** Tokens of this group a cut of this ratio over the group alone keeps (m), out of `count`. */
  kept: number;
  /**
   * Tokens of this group on the kept side of the WHOLE DIR's threshold (group `all`): what `rho select --scope
   * global` keeps of it (ties at the threshold included), and that as a share of the group's count.
   */
  kept_by_dir_cut: number | null;
  kept_share_by_dir_cut: number | null;
  /** The select flags that make this cut. */
  select_args: string;
}

export interface GroupStats {
  /** `all`, `source`, or the `--by` column name. */
  dimension: string;
  key: string;
  docs: number;
  tokens: number;
  /** Tokens with a score (non-null logprob). */
  scored_tokens: number;
  /** Only when the files have `select_mask`: tokens selected, and their share of the scored tokens. */
  selected_tokens: number | null;
  selected_fraction: number | null;
  metrics: Record<string, MetricStats>;
}

export interface Stats {
  dir: string;
  files: number;
  schema_version: number;
  models: string[];
  reference: string;
  metrics: MetricDef[];
  ratios: number[];
  /** `exact` (every value kept and sorted) or `sketch` (DDSketch, relative error `sketch_alpha`). */
  quantile_method: 'exact' | 'sketch';
  sketch_alpha: number;
  has_select: boolean;
  groups: GroupStats[];
}

export interface StatsOptions {
  ratios?: number[];
  by?: string[];
  /** Reference model for excess loss (default `ref` when present, else the first model). */
  reference?: string;
  /** Values kept for exact quantiles, over all groups and metrics; beyond it, sketches answer. */
  maxExactValues?: number;
  sketchAlpha?: number;
  /** Progress line on stderr. */
  progress?: boolean;
}

/** What `rho report` needs beyond the Stats: fine histograms per group and metric, and a look at every batch. */
export interface StatsHooks {
  /** Keep fine histograms (FINE_LOSS/FINE_EXCESS) for the `all` group and the first `fineSources` sources. */
  fine?: boolean;
  /** At most this many sources get fine histograms (~25 KB per metric each); default 24. */
  fineSources?: number;
  /** More columns to read (given the dir's models and columns). */
  columns?: (set: ScoreSet) => string[];
  /** Called with every batch, after the statistics took it. */
  onBatch?: (batch: RecordBatch, set: ScoreSet) => void;
}

export interface StatsRun {
  stats: Stats;
  set: ScoreSet;
  /** Fine histogram of a metric in a group (`all`/`all`, `source`/<source>); null without hooks.fine. */
  fine(dimension: string, key: string, metric: string): FineHistogram | null;
}

export const DEFAULT_RATIOS = [0.6, 0.7];

/**
 * Fine bins for plots (report only): 0.01 nats, so any plot bin width that is a multiple of 0.01 is a merge
 * of whole fine bins and counts stay exact. Bin of v: floor((v - lo) / width).
 */
export const FINE_LOSS: HistogramSpec = { lo: 0, width: 0.01, bins: 3200 };
export const FINE_EXCESS: HistogramSpec = { lo: -16, width: 0.01, bins: 3200 };

/** Counts on fixed fine bins, with counts below and at-or-above the range. */
export class FineHistogram {
  readonly counts: Float64Array;
  below = 0;
  above = 0;
  total = 0;
  constructor(readonly spec: HistogramSpec) {
    this.counts = new Float64Array(spec.bins);
  }
  add(v: number): void {
    this.total++;
    const k = Math.floor((v - this.spec.lo) / this.spec.width);
    if (k < 0) this.below++;
    else if (k >= this.spec.bins) this.above++;
    else this.counts[k]++;
  }
  /** Values in fine bins below bin k (k in 0..bins), plus those below the range: count(v < lo + k*width). */
  countBelowBin(k: number): number {
    let c = this.below;
    for (let i = 0; i < Math.min(k, this.spec.bins); i++) c += this.counts[i];
    return c;
  }
  /** Fine bin holding the value at 0-based ascending rank `rank`; -1 below the range, bins above it. */
  binOfRank(rank: number): number {
    let seen = this.below;
    if (rank < seen) return -1;
    for (let i = 0; i < this.spec.bins; i++) {
      seen += this.counts[i];
      if (rank < seen) return i;
    }
    return this.spec.bins;
  }
}
export const DEFAULT_MAX_EXACT_VALUES = 4_000_000;

/** Metrics of an output dir's models: each model's loss, and each other model's excess over the reference. */
export function metricDefs(models: string[], reference: string): MetricDef[] {
  const defs: MetricDef[] = models.map((m) => ({ name: `${m}_loss`, kind: 'loss', definition: `-${logprobColumn(m)}`, model: m }));
  const others = models.filter((m) => m !== reference);
  for (const m of others) {
    defs.push({
      name: others.length === 1 ? 'excess_loss' : `excess_loss_${m}`,
      kind: 'excess',
      definition: `${m}_loss - ${reference}_loss = ${logprobColumn(reference)} - ${logprobColumn(m)}`,
      model: m,
      reference,
    });
  }
  return defs;
}

export function pickReference(models: string[], asked?: string): string {
  if (asked !== undefined) {
    if (!models.includes(asked)) throw new ConfigError(`--reference ${asked}: no such model in the score files (models: ${models.join(', ')})`);
    return asked;
  }
  return models.includes('ref') ? 'ref' : models[0];
}

/** Shared budget of exact values: once spent, every accumulator drops its values and sketches answer. */
class ExactBudget {
  used = 0;
  exhausted = false;
  constructor(readonly limit: number) {}
}

class MetricAccumulator {
  private values: Float64Array | null = new Float64Array(1024);
  private n = 0;
  readonly sketch: QuantileSketch;
  readonly counts: number[];
  below = 0;
  above = 0;

  /** Report detail: counts on FINE bins (see FINE_LOSS/FINE_EXCESS), from which plots pick their own bins. */
  readonly fine: FineHistogram | null;
  /** Set by finish(): the ascending values (exact mode), for counting tokens on either side of another group's threshold. */
  sorted: Float64Array | null = null;

  constructor(readonly def: MetricDef, alpha: number, private readonly budget: ExactBudget, detail: boolean) {
    this.spec = def.kind === 'loss' ? LOSS_BINS : EXCESS_BINS;
    this.sketch = new QuantileSketch(alpha);
    this.counts = new Array<number>(this.spec.bins).fill(0);
    this.fine = detail ? new FineHistogram(def.kind === 'loss' ? FINE_LOSS : FINE_EXCESS) : null;
  }
  private readonly spec: HistogramSpec;

  add(v: number): void {
    this.sketch.add(v);
    this.fine?.add(v);
    const k = Math.floor((v - this.spec.lo) / this.spec.width);
    if (k < 0) this.below++;
    else if (k >= this.spec.bins) this.above++;
    else this.counts[k]++;
    if (this.values) {
      if (this.budget.exhausted) { this.values = null; return; }
      if (this.n === this.values.length) {
        const grown = new Float64Array(this.values.length * 2);
        grown.set(this.values);
        this.values = grown;
      }
      this.values[this.n++] = v;
      if (++this.budget.used > this.budget.limit) { this.budget.exhausted = true; this.values = null; }
    }
  }

  finish(ratios: number[], exact: boolean): MetricStats {
    const s = this.sketch;
    const n = s.count;
    // at(k): the k-th smallest value (0-based), exact from the sorted values or within alpha from the sketch.
    let at: (k: number) => number;
    if (exact && this.values) {
      const sorted = this.values.subarray(0, this.n).sort();
      this.sorted = sorted;
      at = (k) => sorted[k];
    } else at = (k) => s.quantile(n > 1 ? Math.min(1, (k + 0.5) / (n - 1)) : 0); // +0.5: lands on rank k despite rounding
    const has = n > 0;
    const quantiles: Record<string, number | null> = {};
    // SQL PERCENTILE_DISC (DuckDB quantile_disc): the smallest value with at least q*n values at or below it.
    for (const p of QUANTILES) quantiles[quantileName(p)] = has ? at(Math.max(0, Math.ceil(p * n) - 1)) : null;
    const thresholds: Record<string, number | null> = {};
    const cuts: Record<string, MetricCut> = {};
    const kind = this.def.kind;
    // The cut `rho select` makes (schemas/selection-cut.ts): low losses, high excess losses.
    for (const r of ratios) {
      const rank = thresholdRank(kind, r, n);
      const t = rank === null ? null : at(rank);
      thresholds[String(r)] = t;
      cuts[String(r)] = {
        kept_side: keptSide(kind),
        threshold: t,
        select_threshold: t === null ? null : scoreFromMetric(kind, t),
        kept: keepCount(r, n),
        kept_by_dir_cut: null,
        kept_share_by_dir_cut: null,
        select_args: selectArgs(kind, this.def.model, this.def.reference, r),
      };
    }
    return {
      count: s.count,
      mean: has ? s.mean() : null,
      min: has ? s.min : null,
      max: has ? s.max : null,
      quantiles,
      thresholds,
      cuts,
      histogram: { ...this.spec, counts: this.counts, below: this.below, above: this.above },
    };
  }
}

class GroupAccumulator {
  docs = 0;
  tokens = 0;
  scored = 0;
  selected = 0;
  readonly metrics: MetricAccumulator[];
  constructor(readonly dimension: string, readonly key: string, defs: MetricDef[], alpha: number, budget: ExactBudget, detail: boolean) {
    this.metrics = defs.map((d) => new MetricAccumulator(d, alpha, budget, detail));
  }
}

function checkRatios(ratios: number[]): void {
  for (const r of ratios) {
    if (!(r > 0 && r <= 1)) throw new ConfigError(`--ratio ${r}: a ratio is the fraction of tokens kept, in (0, 1]`);
  }
}

function checkByColumns(set: ScoreSet, by: string[]): void {
  for (const f of set.files) {
    for (const c of by) {
      const field = f.schema.fields.find((x) => x.name === c);
      if (!field) throw new ConfigError(`${f.path}: --by column "${c}" is missing (columns: ${f.schema.fields.map((x) => x.name).join(', ')})`);
      if (DataType.isList(field.type) || DataType.isStruct(field.type) || DataType.isMap(field.type)) {
        throw new ConfigError(`${f.path}: --by column "${c}" has type ${String(field.type)}; group by a scalar column (string, number, bool)`);
      }
    }
  }
}

export async function computeStats(dir: string, opts: StatsOptions = {}): Promise<Stats> {
  return (await runStats(dir, opts)).stats;
}

/** Index of the first value > t (ascending values). */
function upperBound(a: Float64Array, t: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] <= t) lo = mid + 1; else hi = mid; }
  return lo;
}
/** Index of the first value >= t (ascending values). */
function lowerBound(a: Float64Array, t: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < t) lo = mid + 1; else hi = mid; }
  return lo;
}

export async function runStats(dir: string, opts: StatsOptions = {}, hooks: StatsHooks = {}): Promise<StatsRun> {
  const ratios = opts.ratios ?? DEFAULT_RATIOS;
  checkRatios(ratios);
  const by = opts.by ?? [];
  const alpha = opts.sketchAlpha ?? 0.005;
  const set = await openScoreSet(dir);
  checkByColumns(set, by);
  const reference = pickReference(set.models, opts.reference);
  const defs = metricDefs(set.models, reference);
  const budget = new ExactBudget(opts.maxExactValues ?? DEFAULT_MAX_EXACT_VALUES);

  const groups = new Map<string, GroupAccumulator>();
  let fineSources = 0;
  const fineCap = hooks.fineSources ?? 24;
  const group = (dimension: string, key: string): GroupAccumulator => {
    const k = `${dimension}\u0000${key}`;
    let g = groups.get(k);
    if (!g) {
      // Fine histograms (report plots) for the whole dir and the first sources only: memory stays bounded
      // however many shards the dir holds.
      const fine = Boolean(hooks.fine) && (dimension === 'all' || (dimension === COL.source && fineSources++ < fineCap));
      g = new GroupAccumulator(dimension, key, defs, alpha, budget, fine);
      groups.set(k, g);
    }
    return g;
  };
  const all = group('all', 'all');

  const columns = [...new Set([COL.source, COL.nTokens, ...set.models.map(logprobColumn), ...(set.hasSelect ? [COL.selectMask] : []), ...by, ...(hooks.columns?.(set) ?? [])])];
  const progress = opts.progress ? new StatsProgress(set.files.length) : null;
  let lastFile = -1;
  // Per-row scratch: this row's groups, and the value of every metric at one token (NaN = no value).
  const vals = new Float64Array(defs.length);
  for await (const { batch, fileIndex } of setBatches(set, columns)) {
    if (fileIndex !== lastFile) { lastFile = fileIndex; progress?.file(fileIndex, all.tokens); }
    addBatch(batch, set, defs, by, all, group, vals);
    hooks.onBatch?.(batch, set);
  }
  progress?.done(all.tokens);

  const exact = !budget.exhausted;
  const order = (g: GroupAccumulator) => (g.dimension === 'all' ? 0 : g.dimension === COL.source ? 1 : 2 + by.indexOf(g.dimension));
  const sorted = [...groups.values()].sort((a, b) => order(a) - order(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const finished = sorted.map((g) => {
    const metrics: Record<string, MetricStats> = {};
    defs.forEach((d, i) => { metrics[d.name] = g.metrics[i].finish(ratios, exact); });
    return metrics;
  });
  // Each group's share of the whole dir's cut (what `select --scope global` keeps of it): exact mode only.
  const allMetrics = finished[sorted.indexOf(all)];
  sorted.forEach((g, gi) => {
    defs.forEach((d, i) => {
      const values = g.metrics[i].sorted;
      for (const r of ratios) {
        const t = allMetrics[d.name].thresholds[String(r)];
        const cut = finished[gi][d.name].cuts[String(r)];
        if (!exact || !values) continue;
        const kept = t === null ? 0 : d.kind === 'loss' ? upperBound(values, t) : values.length - lowerBound(values, t);
        cut.kept_by_dir_cut = kept;
        cut.kept_share_by_dir_cut = values.length ? kept / values.length : null;
      }
    });
  });
  const stats: Stats = {
    dir,
    files: set.files.length,
    schema_version: set.schemaVersion,
    models: set.models,
    reference,
    metrics: defs,
    ratios,
    quantile_method: exact ? 'exact' : 'sketch',
    sketch_alpha: alpha,
    has_select: set.hasSelect,
    groups: sorted.map((g, gi) => {
      const metrics = finished[gi];
      return {
        dimension: g.dimension,
        key: g.key,
        docs: g.docs,
        tokens: g.tokens,
        scored_tokens: g.scored,
        selected_tokens: set.hasSelect ? g.selected : null,
        selected_fraction: set.hasSelect ? (g.scored > 0 ? g.selected / g.scored : null) : null,
        metrics,
      };
    }),
  };
  const fineOf = (dimension: string, key: string, metric: string): FineHistogram | null => {
    const g = groups.get(`${dimension}\u0000${key}`);
    const i = defs.findIndex((d) => d.name === metric);
    return g && i >= 0 ? g.metrics[i].fine : null;
  };
  return { stats, set, fine: fineOf };
}

function addBatch(
  batch: RecordBatch, set: ScoreSet, defs: MetricDef[], by: string[], all: GroupAccumulator,
  group: (dimension: string, key: string) => GroupAccumulator, vals: Float64Array,
): void {
  const sources = batch.getChild(COL.source)!;
  const nTokens = batch.getChild(COL.nTokens)!;
  const byCols = by.map((c) => batch.getChild(c)!);
  const views = new Map(set.models.map((m) => [m, listView<Float32Array>(batch, logprobColumn(m))]));
  const mask = set.hasSelect ? boolListBytes(batch, COL.selectMask) : null;
  const defViews = defs.map((d) => ({ model: views.get(d.model)!, ref: d.reference ? views.get(d.reference)! : null }));
  // All models' lists share one row layout (the contract); the first model's offsets stand for all.
  const layout = views.get(set.models[0])!;
  const rowGroups: GroupAccumulator[] = [];
  for (let r = 0; r < batch.numRows; r++) {
    rowGroups.length = 0;
    rowGroups.push(all, group(COL.source, String(sources.get(r))));
    for (let b = 0; b < by.length; b++) rowGroups.push(group(by[b], String(byCols[b].get(r))));
    const start = layout.offsets[r];
    const end = layout.offsets[r + 1];
    let scored = 0;
    for (let j = start; j < end; j++) if (layout.valid(j)) scored++;
    let selected = 0;
    if (mask) for (let j = mask.offsets[r]; j < mask.offsets[r + 1]; j++) selected += mask.bytes[j];
    for (const g of rowGroups) {
      g.docs++;
      g.tokens += Number(nTokens.get(r));
      g.scored += scored;
      g.selected += selected;
    }
    for (let j = start; j < end; j++) {
      for (let d = 0; d < defs.length; d++) {
        const { model, ref } = defViews[d];
        if (!model.valid(j) || (ref && !ref.valid(j))) { vals[d] = NaN; continue; }
        // Excess = (-lp_model) - (-lp_ref), computed in float64 from the stored float32 values.
        vals[d] = ref ? ref.values[j] - model.values[j] : -model.values[j];
      }
      for (const g of rowGroups) {
        for (let d = 0; d < defs.length; d++) if (!Number.isNaN(vals[d])) g.metrics[d].add(vals[d]);
      }
    }
  }
}

class StatsProgress {
  private readonly tty = Boolean(process.stderr.isTTY);
  private last = 0;
  constructor(private readonly files: number) {}
  file(i: number, tokens: number): void {
    const now = performance.now();
    if (this.tty) process.stderr.write(`\r\x1b[2Krho stats: file ${i + 1}/${this.files}, ${tokens} tokens`);
    else if (now - this.last > 10_000) { this.last = now; process.stderr.write(`rho stats: file ${i + 1}/${this.files}, ${tokens} tokens\n`); }
  }
  done(tokens: number): void {
    if (this.tty) process.stderr.write(`\r\x1b[2K`);
    else process.stderr.write(`rho stats: read ${this.files} files, ${tokens} tokens\n`);
  }
}
