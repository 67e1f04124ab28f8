// Batch formation: windows are pooled, sorted by length and cut into padded batches under a token budget
// (rows * width <= batchTokens), so that padding stays small. Output order does not depend on this: the
// pipeline reassembles documents by docSeq.
import type { Batch, BatchFlow, Flow, Window, WindowedDocument } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';

export interface BatchPlan {
  windows: Window[];
  width: number;
}

/**
 * Cut a pool of windows into batches. Longest first; a batch's width is its longest window; a window joins while
 * (rows + 1) * width <= batchTokens and the batch's padding stays <= maxPadding (fraction of its positions), so
 * the short end of the pool (many rows, lengths falling fast) does not pay for padding: every padded position
 * costs a full [V] logits row. A window longer than the budget gets a batch of its own.
 * Deterministic for a given pool: ties are broken by (docSeq, start).
 */
export function planBatches(pool: Window[], batchTokens: number, maxPadding = 0.05): BatchPlan[] {
  const sorted = [...pool].sort((a, b) => (b.end - b.start) - (a.end - a.start) || a.docSeq - b.docSeq || a.start - b.start);
  const plans: BatchPlan[] = [];
  let cur: BatchPlan | null = null;
  let curReal = 0;
  for (const w of sorted) {
    const len = w.end - w.start;
    if (cur) {
      const computed = (cur.windows.length + 1) * cur.width;
      if (computed <= batchTokens && 1 - (curReal + len) / computed <= maxPadding) {
        cur.windows.push(w);
        curReal += len;
        continue;
      }
    }
    cur = { windows: [w], width: len };
    curReal = len;
    plans.push(cur);
  }
  return plans;
}

/** Materialize a plan into the padded token matrix the scorer feeds. */
export function buildBatch(plan: BatchPlan, tokensOf: (docSeq: number) => Int32Array): Batch {
  const rows = plan.windows.length;
  const width = plan.width;
  const tokens = new Int32Array(rows * width);
  const lengths = new Int32Array(rows);
  plan.windows.forEach((w, r) => {
    const doc = tokensOf(w.docSeq);
    tokens.set(doc.subarray(w.start, w.end), r * width);
    lengths[r] = w.end - w.start;
  });
  return { rows, width, tokens, lengths, windows: plan.windows };
}

/** Fraction of computed positions that are padding, for the progress line and the benchmark. */
export function paddingFraction(plans: BatchPlan[]): { real: number; computed: number } {
  let real = 0;
  let computed = 0;
  for (const p of plans) {
    computed += p.windows.length * p.width;
    for (const w of p.windows) real += w.end - w.start;
  }
  return { real, computed };
}

/**
 * The score job's pooling policy, shared with the benchmark so both form the very same batches: windows
 * collect in a pool that is cut into batches (planBatches) once it holds enough tokens. The first pool is
 * small so that the model starts at once; later pools are larger, for better length bucketing.
 */
export class WindowPool {
  private windows: Window[] = [];
  private tokens = 0;
  private limit: number;
  private readonly fullLimit: number;

  constructor(private readonly batchTokens: number, contextTokens: number) {
    this.limit = Math.max(batchTokens * 2, contextTokens);
    this.fullLimit = Math.max(batchTokens * 16, contextTokens * 4);
  }

  /** Add a document's windows; returns the batches to run when the pool is full, else null. */
  add(windows: Window[]): BatchPlan[] | null {
    for (const w of windows) {
      this.windows.push(w);
      this.tokens += w.end - w.start;
    }
    return this.tokens >= this.limit ? this.flush() : null;
  }

  /** Cut whatever is pooled into batches (at the end of the input). */
  flush(): BatchPlan[] {
    const plans = planBatches(this.windows, this.batchTokens);
    this.windows = [];
    this.tokens = 0;
    this.limit = this.fullLimit;
    return plans;
  }
}

/**
 * The batch stage: every document passes on first (later stages reassemble it), then its windows join the
 * pool (WindowPool) and come out as padded batches when the pool is full; the rest at the end of the input.
 * Holds a document's tokens until its last window is in a batch. Counters: batches, padded and real positions.
 */
export function batchStage(opts: { batchTokens: number; contextTokens: number }): Stage<Flow<WindowedDocument>, BatchFlow> {
  return stage('batch', async function* (input, ctx) {
    const pool = new WindowPool(opts.batchTokens, opts.contextTokens);
    const held = new Map<number, { tokenIds: Int32Array; windows: number }>();
    const c = ctx.stats.counters;
    c.batches = 0;
    c.padded_positions = 0;
    c.real_positions = 0;
    function* emit(plans: BatchPlan[] | null): Generator<BatchFlow> {
      for (const plan of plans ?? []) {
        const batch = buildBatch(plan, (seq) => held.get(seq)!.tokenIds);
        c.batches++;
        c.padded_positions += batch.rows * batch.width;
        for (const w of plan.windows) {
          c.real_positions += w.end - w.start;
          const h = held.get(w.docSeq)!;
          if (--h.windows === 0) held.delete(w.docSeq);
        }
        yield { kind: 'batch', batch };
      }
    }
    for await (const it of input) {
      yield it;
      if (it.kind !== 'doc' || it.doc.windows.length === 0) continue;
      held.set(it.doc.docSeq, { tokenIds: it.doc.tokenIds, windows: it.doc.windows.length });
      yield* emit(pool.add(it.doc.windows));
    }
    yield* emit(pool.flush());
  });
}
