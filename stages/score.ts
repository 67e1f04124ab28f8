// The score stage: batches go to a Scorer (an interface: the onnxruntime scorer below is one implementation;
// examples/ has another), several in flight at once, and come out with the scores of every model.
// OnnxScorer runs a worker thread per device that holds one onnxruntime session per prepared model; score() may
// be called again before an earlier call resolved; requests queue in the worker so the model stays busy.

import { Worker } from 'node:worker_threads';
import type { Batch, BatchFlow, ModelBatchScores, ScoredBatchFlow } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';
import type { PreparedModel } from '../model/prepare.js';
import type { WorkerModel, WorkerReply, WorkerRequest, WorkerScores } from './score-worker.js';

export interface ScorerOptions {
  models: PreparedModel[];
  device: 'cpu' | 'cuda' | 'webgpu';
  deviceId?: number;
  intraOpThreads?: number;
  tokenizerVocabSize: number;
}

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
}

type Distributive<T> = T extends unknown ? Omit<T, 'id'> : never;

/**
 * Shift the graph's output (value at t scores token t+1) to the batch alignment of ModelBatchScores
 * (value at t scores token t); index 0 of every row and padding positions are NaN.
 */
export function alignScores(raw: Float32Array, rows: number, width: number, lengths: Int32Array): Float32Array {
  // In place: raw is ours (transferred from the worker).
  for (let b = 0; b < rows; b++) {
    const o = b * width;
    const len = Math.max(0, Math.min(width, lengths[b]!));
    if (len > 1) raw.copyWithin(o + 1, o, o + len - 1);
    raw[o] = Number.NaN;
    raw.fill(Number.NaN, o + Math.max(len, 1), o + width);
  }
  return raw;
}

/**
 * Scores padded batches. `score` may be called again before an earlier call resolved. Its result holds, per
 * model name, [rows * width] values aligned with the batch tokens (ModelBatchScores: value t scores token t of
 * the row given tokens 0..t-1; index 0 of every row and padding are NaN).
 */
export interface Scorer {
  /** Model names, in column order: the output gets `<name>_logprob` (and `<name>_entropy`) for each. */
  readonly modelNames: readonly string[];
  /**
   * What identifies the scores a custom scorer gives (e.g. a hash of its weights), for the run identity and
   * provenance: a rerun with another fingerprint is refused. Default 'custom-scorer'. OnnxScorer runs are
   * identified by the models' sha256 instead.
   */
  readonly fingerprint?: string;
  score(batch: Batch): Promise<Map<string, ModelBatchScores>>;
  close(): Promise<void>;
}

export class OnnxScorer implements Scorer {
  readonly vocabSizes = new Map<string, number>();
  /** Per model: graph nodes run by each onnxruntime execution provider in the opening probe (from its profile). */
  readonly nodeProviders = new Map<string, Record<string, number>>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | null = null;
  private closed = false;

  private constructor(
    private readonly worker: Worker,
    private readonly models: PreparedModel[],
  ) {
    worker.on('message', (m: WorkerReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.type === 'error') {
        const e = new Error(m.message);
        if (m.stack) e.stack = m.stack;
        p.reject(e);
      } else p.resolve(m);
    });
    worker.on('error', (e) => this.fail(new Error(`score worker crashed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => {
      if (!this.closed || this.pending.size > 0) this.fail(new Error(`score worker exited unexpectedly (code ${code})`));
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private request(req: Distributive<WorkerRequest>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('Scorer is closed'));
    const id = this.nextId++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id } as WorkerRequest, transfer);
    });
  }

  /** Start the worker, load every model once, and check the tokenizer's vocabulary against each model's. */
  get modelNames(): string[] {
    return this.models.map((m) => m.name);
  }

  static async open(opts: ScorerOptions): Promise<OnnxScorer> {
    if (opts.models.length === 0) throw new Error('Scorer.open: no models given');
    const names = new Set<string>();
    for (const m of opts.models) {
      if (names.has(m.name)) throw new Error(`two models are named "${m.name}": give each model a distinct name`);
      names.add(m.name);
    }
    const worker = new Worker(new URL('./score-worker.js', import.meta.url));
    const scorer = new OnnxScorer(worker, opts.models);
    try {
      const models: WorkerModel[] = opts.models.map((m) => ({ name: m.name, preparedPath: m.preparedPath, inputs: m.inputs, entropy: m.entropy }));
      const init: Distributive<WorkerRequest> = { type: 'init', models, device: opts.device };
      if (opts.deviceId !== undefined) init.deviceId = opts.deviceId;
      if (opts.intraOpThreads !== undefined) init.intraOpThreads = opts.intraOpThreads;
      await scorer.request(init);
      // Probe: a 1x2 batch reads each model's vocabulary size (last dim of its logits).
      const probe = await scorer.raw(1, 2, new Int32Array(2), Int32Array.of(2));
      for (const m of opts.models) {
        const v = probe[m.name]!.vocabSize;
        scorer.vocabSizes.set(m.name, v);
        const providers = probe[m.name]!.providers ?? {};
        scorer.nodeProviders.set(m.name, providers);
        // onnxruntime adds the CPU provider behind any other for nodes it cannot place: a session that put no node
        // on the requested device is a CPU run in disguise, so it is refused.
        if (opts.device !== 'cpu' && !Object.keys(providers).some((p) => p.toLowerCase().startsWith(opts.device))) {
          throw new Error(
            `--device ${opts.device}: onnxruntime ran no node of model "${m.name}" (${m.sourcePath}) on the ${opts.device} provider ` +
              `(nodes per provider: ${JSON.stringify(providers)}); refusing a silent CPU fallback`,
          );
        }
        if (opts.tokenizerVocabSize > v) {
          throw new Error(
            `tokenizer vocabulary (${opts.tokenizerVocabSize} tokens) is larger than the vocabulary of model "${m.name}" ` +
              `(${m.sourcePath}: ${v} logits): token ids >= ${v} cannot be scored; use the tokenizer that belongs to this model`,
          );
        }
      }
      return scorer;
    } catch (e) {
      await scorer.close().catch(() => undefined);
      throw e;
    }
  }

  private async raw(rows: number, width: number, tokens: Int32Array, lengths: Int32Array): Promise<Record<string, WorkerScores>> {
    const r = await this.request({ type: 'score', rows, width, tokens, lengths }, [tokens.buffer as ArrayBuffer, lengths.buffer as ArrayBuffer]);
    if (r.type !== 'result') throw new Error(`score worker: unexpected reply ${r.type}`);
    return r.scores;
  }

  /** Score one padded batch with every model. The batch's own arrays are not touched (copies go to the worker). */
  async score(batch: Batch): Promise<Map<string, ModelBatchScores>> {
    const { rows, width } = batch;
    if (batch.tokens.length !== rows * width) throw new Error(`batch has ${batch.tokens.length} tokens, expected rows*width = ${rows * width}`);
    if (batch.lengths.length !== rows) throw new Error(`batch has ${batch.lengths.length} lengths, expected ${rows}`);
    const lengths = batch.lengths.slice();
    const scores = await this.raw(rows, width, batch.tokens.slice(), lengths);
    const out = new Map<string, ModelBatchScores>();
    for (const m of this.models) {
      const s = scores[m.name]!;
      const r: ModelBatchScores = { logprob: alignScores(s.logprob, rows, width, batch.lengths) };
      if (s.entropy) r.entropy = alignScores(s.entropy, rows, width, batch.lengths);
      out.set(m.name, r);
    }
    return out;
  }

  /** Release the sessions and stop the worker. Pending requests finish first (the worker processes in order). */
  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.failure) {
      try {
        await this.request({ type: 'close' });
      } catch {
        // the worker is gone or failing: terminate below
      }
    }
    this.closed = true;
    await this.worker.terminate();
  }
}

/**
 * The score stage: each batch goes to the least busy scorer, up to `inflightPerScorer` batches per scorer at
 * once (two: one running, one queued in the worker, so a model never waits for the main thread). Documents pass
 * on at once; a batch comes out with its scores as soon as it is done, in completion order.
 */
export function scoreStage(scorers: readonly Scorer[], opts: { inflightPerScorer?: number } = {}): Stage<BatchFlow, ScoredBatchFlow> {
  if (scorers.length === 0) throw new Error('scoreStage: no scorer given');
  const max = (opts.inflightPerScorer ?? 2) * scorers.length;
  return stage('score', async function* (input, ctx) {
    const busy = new Map<Scorer, number>(scorers.map((x) => [x, 0]));
    const done: { batch: Batch; ok: boolean; scores?: Map<string, ModelBatchScores>; error?: unknown }[] = [];
    let pending = 0;
    let wake: (() => void) | null = null;
    const launch = (batch: Batch) => {
      const scorer = [...busy].sort((a, b) => a[1] - b[1])[0][0];
      busy.set(scorer, busy.get(scorer)! + 1);
      pending++;
      // Never a rejected promise left behind: an error becomes a value, thrown when it comes out.
      scorer.score(batch).then((scores) => ({ batch, ok: true, scores }), (error: unknown) => ({ batch, ok: false, error })).then((d) => {
        pending--;
        busy.set(scorer, busy.get(scorer)! - 1);
        done.push(d);
        wake?.();
      });
    };
    const settled = () => (done.length ? Promise.resolve() : new Promise<void>((r) => { wake = r; })).then(() => { wake = null; });
    function* drain(): Generator<ScoredBatchFlow> {
      while (done.length) {
        const d = done.shift()!;
        if (!d.ok) throw d.error;
        yield { kind: 'scored', batch: d.batch, scores: d.scores! };
      }
    }
    for await (const it of input) {
      yield* drain();
      if (it.kind !== 'batch') { yield it; continue; }
      while (pending >= max) { await settled(); yield* drain(); }
      launch(it.batch);
      ctx.crashPoint('batch-dispatched');
    }
    while (pending > 0 || done.length > 0) { await settled(); yield* drain(); }
  });
}
