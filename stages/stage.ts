// The stage contract (datatrove's PipelineStep, as an async generator): a named function from an
// AsyncIterable of one item type to an AsyncIterable of another. Pull-based, so backpressure is natural: a
// stage does work only when the stage after it asks for an item. Every stage gets counters and a clock.
import type { CrashPoint } from '../schemas/crashpoints.js';
import type { StageStats } from '../schemas/types.js';

export type { StageStats };

export interface StageContext {
  /** This runner's rank and the number of runners (a stage may shard its own work by them). */
  rank: number;
  worldSize: number;
  /** The stage's own counters: a stage may add to `counters`; docs/tokens/rejects are counted for it. */
  stats: StageStats;
  /** Fail points for the crash tests (no-op unless the job wires them). */
  crashPoint(name: CrashPoint): void;
}

export interface Stage<In, Out> {
  readonly name: string;
  run(input: AsyncIterable<In>, ctx: StageContext): AsyncIterable<Out>;
}

/** A stage from a name and an async generator function. */
export function stage<In, Out>(name: string, run: (input: AsyncIterable<In>, ctx: StageContext) => AsyncIterable<Out>): Stage<In, Out> {
  return { name, run };
}

export function emptyStats(name: string): StageStats {
  return { name, docs_in: 0, docs_out: 0, tokens_in: 0, tokens_out: 0, rejected: 0, seconds: 0, counters: {} };
}

/** What an item contributes to the counters: documents (with their tokens) and batches (their real tokens, counted apart). */
function measure(item: unknown): { docs: number; tokens: number; reject: boolean; windowTokens?: number } {
  const it = item as {
    kind?: string; doc?: { tokenIds?: ArrayLike<number> }; batch?: { lengths?: Int32Array };
    records?: { kind: string; doc?: { tokenIds?: ArrayLike<number> } }[] | number; bytes?: unknown; scored?: number; tokens?: number;
  } | null;
  if (it?.kind === 'doc') return { docs: 1, tokens: it.doc?.tokenIds?.length ?? 0, reject: false };
  // A whole unit (UnitRecords) and an encoded one (EncodedUnit) count their documents and tokens.
  if (Array.isArray(it?.records)) {
    let docs = 0;
    let tokens = 0;
    for (const r of it.records) if (r.kind === 'doc') { docs++; tokens += r.doc?.tokenIds?.length ?? 0; }
    return { docs, tokens, reject: false };
  }
  // A unit written (EncodedUnit, or the streaming writer's `unit` item) counts the documents it wrote.
  if ((it?.bytes instanceof Uint8Array || it?.kind === 'unit') && typeof it.scored === 'number') return { docs: it.scored, tokens: it.tokens ?? 0, reject: false };
  if (it?.kind === 'reject') return { docs: 0, tokens: 0, reject: true };
  if ((it?.kind === 'batch' || it?.kind === 'scored') && it.batch?.lengths) {
    let t = 0;
    for (const n of it.batch.lengths) t += n;
    return { docs: 0, tokens: 0, reject: false, windowTokens: t };
  }
  return { docs: 0, tokens: 0, reject: false };
}

/**
 * Run `s` over `input`, counting documents and tokens in and out, rejects it made, and the seconds spent in
 * its own code: the time its output's next() takes, less the time its input's next() took.
 */
export function instrument<In, Out>(s: Stage<In, Out>, input: AsyncIterable<In>, ctx: Omit<StageContext, 'stats'>, stats = emptyStats(s.name)): AsyncIterable<Out> {
  let upstreamMs = 0;
  let rejectsIn = 0;
  const counted: AsyncIterable<In> = {
    [Symbol.asyncIterator]() {
      const it = input[Symbol.asyncIterator]();
      return {
        async next() {
          const t0 = performance.now();
          try {
            const r = await it.next();
            if (!r.done) {
              const m = measure(r.value);
              stats.docs_in += m.docs;
              stats.tokens_in += m.tokens;
              if (m.windowTokens !== undefined) stats.counters.window_tokens_in = (stats.counters.window_tokens_in ?? 0) + m.windowTokens;
              if (m.reject) rejectsIn++;
            }
            return r;
          } finally {
            upstreamMs += performance.now() - t0;
          }
        },
        async return(v?: unknown) {
          return it.return ? it.return(v) : { done: true as const, value: undefined };
        },
      };
    },
  };
  const inner = s.run(counted, { ...ctx, stats });
  return {
    [Symbol.asyncIterator]() {
      const it = inner[Symbol.asyncIterator]();
      return {
        async next() {
          const t0 = performance.now();
          const up0 = upstreamMs;
          try {
            const r = await it.next();
            if (!r.done) {
              const m = measure(r.value);
              stats.docs_out += m.docs;
              stats.tokens_out += m.tokens;
              if (m.windowTokens !== undefined) stats.counters.window_tokens_out = (stats.counters.window_tokens_out ?? 0) + m.windowTokens;
              if (m.reject && --rejectsIn < 0) { rejectsIn = 0; stats.rejected++; }
            }
            return r;
          } finally {
            stats.seconds += (performance.now() - t0 - (upstreamMs - up0)) / 1000;
          }
        },
        async return(v?: unknown) {
          return it.return ? it.return(v) : { done: true as const, value: undefined };
        },
      };
    },
  };
}

/**
 * Chain stages left to right over a source; returns the last stage's output and the stats of every stage, in
 * order (filled in as the output is consumed). Types are checked at each stage's own boundary.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function compose<Out>(source: AsyncIterable<unknown>, stages: readonly Stage<any, any>[], ctx: Omit<StageContext, 'stats'>): { output: AsyncIterable<Out>; stats: StageStats[] } {
  let cur: AsyncIterable<unknown> = source;
  const stats: StageStats[] = [];
  for (const s of stages) {
    const st = emptyStats(s.name);
    stats.push(st);
    cur = instrument(s, cur, ctx, st);
  }
  return { output: cur as AsyncIterable<Out>, stats };
}

export const NO_CRASH_POINTS = (): void => undefined;
