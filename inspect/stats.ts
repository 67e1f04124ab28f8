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
import { keepCount } from '../stages/select.js';
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
  /** Per `--ratio` r: the m-th largest value, m = ceil(r * count): keeping tokens at or above it keeps the top r. */
  thresholds: Record<string, number | null>;
  histogram: Histogram;
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

export const DEFAULT_RATIOS = [0.6, 0.7];
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

  constructor(private readonly spec: HistogramSpec, alpha: number, private readonly budget: ExactBudget) {
    this.sketch = new QuantileSketch(alpha);
    this.counts = new Array<number>(spec.bins).fill(0);
  }

  add(v: number): void {
    this.sketch.add(v);
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
      at = (k) => sorted[k];
    } else at = (k) => s.quantile(n > 1 ? Math.min(1, (k + 0.5) / (n - 1)) : 0); // +0.5: lands on rank k despite rounding
    const has = n > 0;
    const quantiles: Record<string, number | null> = {};
    // SQL PERCENTILE_DISC (DuckDB quantile_disc): the smallest value with at least q*n values at or below it.
    for (const p of QUANTILES) quantiles[quantileName(p)] = has ? at(Math.max(0, Math.ceil(p * n) - 1)) : null;
    const thresholds: Record<string, number | null> = {};
    // The m-th largest value, m = ceil(r*n) as `select` keeps: tokens at or above it are the top r.
    for (const r of ratios) thresholds[String(r)] = has ? at(n - keepCount(r, n)) : null;
    return {
      count: s.count,
      mean: has ? s.mean() : null,
      min: has ? s.min : null,
      max: has ? s.max : null,
      quantiles,
      thresholds,
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
  constructor(readonly dimension: string, readonly key: string, defs: MetricDef[], alpha: number, budget: ExactBudget) {
    this.metrics = defs.map((d) => new MetricAccumulator(d.kind === 'loss' ? LOSS_BINS : EXCESS_BINS, alpha, budget));
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
  const group = (dimension: string, key: string): GroupAccumulator => {
    const k = `${dimension}\u0000${key}`;
    let g = groups.get(k);
    if (!g) { g = new GroupAccumulator(dimension, key, defs, alpha, budget); groups.set(k, g); }
    return g;
  };
  const all = group('all', 'all');

  const columns = [...new Set([COL.source, COL.nTokens, ...set.models.map(logprobColumn), ...(set.hasSelect ? [COL.selectMask] : []), ...by])];
  const progress = opts.progress ? new StatsProgress(set.files.length) : null;
  let lastFile = -1;
  // Per-row scratch: this row's groups, and the value of every metric at one token (NaN = no value).
  const vals = new Float64Array(defs.length);
  for await (const { batch, fileIndex } of setBatches(set, columns)) {
    if (fileIndex !== lastFile) { lastFile = fileIndex; progress?.file(fileIndex, all.tokens); }
    addBatch(batch, set, defs, by, all, group, vals);
  }
  progress?.done(all.tokens);

  const exact = !budget.exhausted;
  const order = (g: GroupAccumulator) => (g.dimension === 'all' ? 0 : g.dimension === COL.source ? 1 : 2 + by.indexOf(g.dimension));
  const sorted = [...groups.values()].sort((a, b) => order(a) - order(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return {
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
    groups: sorted.map((g) => {
      const metrics: Record<string, MetricStats> = {};
      defs.forEach((d, i) => { metrics[d.name] = g.metrics[i].finish(ratios, exact); });
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
