// What `rho report` plots beyond `rho stats`, gathered in the same streaming pass (a StatsHooks.onBatch):
// loss by position in the window, the joint distribution of reference vs base loss, per-document mean losses
// per source, and which tokens a selection drops most often. Memory is bounded by the bins, not the data:
// fixed fine bins (whose merges the plots draw, so every plotted count is exact) and one counter pair per
// distinct token id (at most the vocabulary).
import type { RecordBatch } from 'apache-arrow';
import { COL, logprobColumn, lossMeanColumn } from '../schemas/contract.js';
import { listView, boolListBytes, setBatches, type ScoreSet } from '../pipeline/io/score-files.js';
import { onKeptSide, keptSide, selectArgs } from '../schemas/selection-cut.js';
import { FineHistogram, FINE_LOSS, runStats, pickReference, type HistogramSpec, type StatsOptions, type StatsRun } from './stats.js';

/** Loss bins of the per-position histograms (0.05 nats): quartiles are reported as the bin that holds them. */
export const POSITION_LOSS: HistogramSpec = { lo: 0, width: 0.05, bins: 640 };
/** Bins of the joint reference/base loss grid: 0.1 nats on [0, 20) on both axes. */
export const JOINT: HistogramSpec = { lo: 0, width: 0.1, bins: 200 };
/** At most this many position buckets per window (positions are grouped evenly beyond it). */
export const MAX_POSITION_BUCKETS = 256;

export interface PositionProfile {
  context: number;
  stride: number;
  /** Positions per bucket: bucket b holds positions [b*width, (b+1)*width). */
  width: number;
  /** Per model: per bucket token count, loss sum, and a loss histogram (POSITION_LOSS). */
  models: Record<string, { count: Float64Array; sum: Float64Array; hist: Float64Array[] }>;
}

export interface JointProfile {
  /** x axis: the reference's loss; y axis: the other model's loss. */
  reference: string;
  model: string;
  spec: HistogramSpec;
  /** counts[ix * bins + iy] */
  counts: Float64Array;
  /** Tokens with either loss outside [lo, lo + bins*width). */
  outside: number;
  total: number;
}

export interface DocMean { id: string; source: string; means: Record<string, number | null> }

export interface Profile {
  positions: PositionProfile | null;
  joint: JointProfile | null;
  /** Per source (the first ProfileOptions.maxSources), per model: histogram (FINE_LOSS) of the documents' `<model>_loss_mean`. */
  docMeans: Map<string, Record<string, FineHistogram>>;
  /** Sources past maxSources: counted in the totals, not plotted one by one. */
  otherSources: Set<string>;
  /** Every document's mean losses (only with ProfileOptions.keepDocMeans, for `report A B`). */
  docs: DocMean[] | null;
  /**
   * Per token id: scored occurrences and unselected ones: by select_mask when the dir has one, else by the
   * whole dir's cut at the first --ratio (see `tokensBy`).
   */
  tokens: Map<number, { n: number; unselected: number }> | null;
  /** What "unselected" means in `tokens`. */
  tokensBy: string | null;
}

/** Window position of token i: i - kS, k the first window [kS, kS+C) holding it (the contract's rule). */
export function windowPosition(i: number, context: number, stride: number): number {
  if (i < context) return i;
  const k = Math.floor((i - context) / stride) + 1;
  return i - k * stride;
}

export interface ProfileOptions {
  keepDocMeans?: boolean;
  /** Sources plotted one by one (fine histograms each); default 24. */
  maxSources?: number;
}

class Profiler {
  readonly profile: Profile;
  private readonly models: string[];
  private readonly reference: string;
  private readonly maxSources: number;
  constructor(set: ScoreSet, reference: string, private readonly opts: ProfileOptions) {
    this.maxSources = opts.maxSources ?? 24;
    this.models = set.models;
    this.reference = reference;
    let positions: PositionProfile | null = null;
    if (set.context && set.stride) {
      const width = Math.ceil(set.context / MAX_POSITION_BUCKETS);
      const buckets = Math.ceil(set.context / width);
      const models: PositionProfile['models'] = {};
      for (const m of set.models) {
        models[m] = {
          count: new Float64Array(buckets),
          sum: new Float64Array(buckets),
          hist: Array.from({ length: buckets }, () => new Float64Array(POSITION_LOSS.bins)),
        };
      }
      positions = { context: set.context, stride: set.stride, width, models };
    }
    const other = set.models.find((m) => m !== reference);
    this.profile = {
      positions,
      joint: other ? { reference, model: other, spec: JOINT, counts: new Float64Array(JOINT.bins * JOINT.bins), outside: 0, total: 0 } : null,
      docMeans: new Map(),
      otherSources: new Set(),
      docs: opts.keepDocMeans ? [] : null,
      tokens: set.hasSelect ? new Map() : null,
      tokensBy: set.hasSelect ? 'select_mask' : null,
    };
  }

  add(batch: RecordBatch): void {
    const p = this.profile;
    const views = this.models.map((m) => listView<Float32Array>(batch, logprobColumn(m)));
    const layout = views[0];
    const sources = batch.getChild(COL.source)!;
    const means = this.models.map((m) => batch.getChild(lossMeanColumn(m)));
    const ids = p.docs ? batch.getChild(COL.id) : null;
    const tok = p.tokens ? listView<Int32Array>(batch, COL.tokenIds) : null;
    const mask = p.tokens ? boolListBytes(batch, COL.selectMask) : null;
    const ri = this.models.indexOf(this.reference);
    const oi = p.joint ? this.models.indexOf(p.joint.model) : -1;
    for (let r = 0; r < batch.numRows; r++) {
      const source = String(sources.get(r));
      let perModel = p.docMeans.get(source) ?? null;
      if (!perModel && p.docMeans.size < this.maxSources) {
        perModel = {};
        for (const m of this.models) perModel[m] = new FineHistogram(FINE_LOSS);
        p.docMeans.set(source, perModel);
      } else if (!perModel) p.otherSources.add(source);
      const docMean: Record<string, number | null> = {};
      this.models.forEach((m, i) => {
        const v = means[i]?.get(r);
        const x = v === null || v === undefined ? null : Number(v);
        docMean[m] = x;
        if (x !== null && Number.isFinite(x)) perModel?.[m].add(x);
      });
      if (p.docs) p.docs.push({ id: String(ids!.get(r)), source, means: docMean });

      const start = layout.offsets[r];
      const end = layout.offsets[r + 1];
      if (p.positions) {
        const { context, stride, width } = p.positions;
        this.models.forEach((m, i) => {
          const v = views[i];
          const acc = p.positions!.models[m];
          for (let j = start; j < end; j++) {
            if (!v.valid(j)) continue;
            const loss = -v.values[j];
            const b = Math.floor(windowPosition(j - start, context, stride) / width);
            acc.count[b]++;
            acc.sum[b] += loss;
            const k = Math.floor((loss - POSITION_LOSS.lo) / POSITION_LOSS.width);
            acc.hist[b][k < 0 ? 0 : k >= POSITION_LOSS.bins ? POSITION_LOSS.bins - 1 : k]++;
          }
        });
      }
      if (p.joint) {
        const J = p.joint;
        const rv = views[ri];
        const ov = views[oi];
        for (let j = start; j < end; j++) {
          if (!rv.valid(j) || !ov.valid(j)) continue;
          J.total++;
          const x = Math.floor((-rv.values[j] - J.spec.lo) / J.spec.width);
          const y = Math.floor((-ov.values[j] - J.spec.lo) / J.spec.width);
          if (x < 0 || y < 0 || x >= J.spec.bins || y >= J.spec.bins) J.outside++;
          else J.counts[x * J.spec.bins + y]++;
        }
      }
      if (p.tokens && tok && mask) {
        const t0 = tok.offsets[r];
        const m0 = mask.offsets[r];
        for (let j = start; j < end; j++) {
          if (!layout.valid(j)) continue;
          const id = tok.values[t0 + (j - start)];
          let c = p.tokens.get(id);
          if (!c) p.tokens.set(id, (c = { n: 0, unselected: 0 }));
          c.n++;
          if (!mask.bytes[m0 + (j - start)]) c.unselected++;
        }
      }
    }
  }
}

/** The stats of a dir and the report's profile of it, in one pass. */
export async function profileDir(dir: string, opts: StatsOptions & ProfileOptions = {}): Promise<StatsRun & { profile: Profile }> {
  let profiler: Profiler | null = null;
  const run = await runStats(dir, opts, {
    fine: true,
    fineSources: opts.maxSources ?? 24,
    columns: (set) => [...set.models.map(lossMeanColumn), ...(opts.keepDocMeans ? [COL.id] : []), ...(set.hasSelect ? [COL.tokenIds] : [])],
    onBatch: (batch, set) => {
      if (!profiler) {
        const reference = pickReference(set.models, opts.reference);
        profiler = new Profiler(set, reference, opts);
      }
      profiler.add(batch);
    },
  });
  if (!profiler) throw new Error(`${dir}: no rows to profile`);
  const profile = (profiler as Profiler).profile;
  if (!run.set.hasSelect) await tokensOutsideCut(run, profile);
  return { ...run, profile };
}

/**
 * Without select_mask: which tokens the whole dir's cut at the first ratio leaves out (by excess with two
 * models, else by the reference's loss): a second pass over token ids and logprobs, the threshold from the
 * first. Tokens tied at the threshold count as kept (select keeps the earliest of them: a few at most).
 */
async function tokensOutsideCut(run: StatsRun, profile: Profile): Promise<void> {
  const s = run.stats;
  const d = s.metrics.find((x) => x.kind === 'excess') ?? s.metrics.find((x) => x.model === s.reference);
  const ratio = s.ratios[0];
  const t = d && ratio !== undefined ? s.groups[0].metrics[d.name].thresholds[String(ratio)] : null;
  if (!d || t === null || t === undefined) return;
  const tokens = new Map<number, { n: number; unselected: number }>();
  const cols = [COL.tokenIds, logprobColumn(d.model), ...(d.reference ? [logprobColumn(d.reference)] : [])];
  for await (const { batch } of setBatches(run.set, cols)) {
    const tok = listView<Int32Array>(batch, COL.tokenIds);
    const m = listView<Float32Array>(batch, logprobColumn(d.model));
    const r = d.reference ? listView<Float32Array>(batch, logprobColumn(d.reference)) : null;
    for (let row = 0; row < batch.numRows; row++) {
      const a = m.offsets[row];
      const t0 = tok.offsets[row];
      const r0 = r ? r.offsets[row] : 0;
      for (let j = a; j < m.offsets[row + 1]; j++) {
        if (!m.valid(j) || (r && !r.valid(r0 + (j - a)))) continue;
        // The metric as stats computes it: excess = ref_logprob - model_logprob, loss = -logprob (float64).
        const v = r ? r.values[r0 + (j - a)] - m.values[j] : -m.values[j];
        const id = tok.values[t0 + (j - a)];
        let c = tokens.get(id);
        if (!c) tokens.set(id, (c = { n: 0, unselected: 0 }));
        c.n++;
        if (!onKeptSide(d.kind, v, t)) c.unselected++;
      }
    }
  }
  profile.tokens = tokens;
  profile.tokensBy = `${selectArgs(d.kind, d.model, d.reference, ratio)} (no select_mask in the dir: the whole dir's cut, ${d.name} ${keptSide(d.kind) === 'at_or_below' ? '<=' : '>='} ${t.toFixed(4)}, ties kept)`;
}
