// The cross-tokenizer stage (--model-tokenizer NAME=PATH): a model with its own tokenizer reads each document
// in its own tokens and its own windows (the window rule counted in its tokens), on its own scorer; when all
// of a document's windows are back, its log-probs are projected onto the trainer's (primary tokenizer's)
// tokens by byte overlap (stages/project.ts). Documents come in assembled (the primary models' scores done)
// and leave with the projected models' scores added, in completion order; rejects and unit ends pass on.
import { TextTokenizer, type SpannedTokens } from './tokenize.js';
import { planWindows } from './window.js';
import { WindowPool, buildBatch, type BatchPlan } from './batch.js';
import { OnnxScorer as Scorer } from './score.js';
import { projectLogprobs, PROJECTION_RULE } from './project.js';
import { codePointByteOffsets, type ByteSpans } from './spans.js';
import { stage, type Stage } from './stage.js';
import type { PreparedModel } from '../model/prepare.js';
import type { Flow, ScoredDocument, TokenizedDocument, WindowSpec } from '../schemas/types.js';

export { PROJECTION_RULE };

/** One model's projected scores for one document. nativeSum is NaN when the reference scored no token. */
export interface ProjectedScores {
  logprob: Float32Array;
  nativeSum: number;
}

export interface CrossTokenizerOptions {
  /** The models with their own tokenizer, and that tokenizer's path (several models may share one). */
  models: { model: PreparedModel; tokenizerPath: string }[];
  primary: TextTokenizer;
  appendEos: boolean;
  spec: WindowSpec;
  batchTokens: number;
  device: 'cpu' | 'cuda' | 'webgpu';
  deviceIds: (number | undefined)[];
  intraOpThreads?: number;
}

type OnDocument = (docSeq: number, scores: Map<string, ProjectedScores>) => void;
type OnError = (e: unknown) => void;

/** Where a group reports: once per document with its models' projected scores, or a failure. */
interface Listener {
  onDocument: OnDocument;
  onError: OnError;
}

interface GroupDoc {
  trainer: ByteSpans;
  ref: SpannedTokens;
  native: Map<string, Float32Array>;
  pendingWindows: number;
}

/** The models that read text with one (non-primary) tokenizer: one scorer per device, one window pool. */
class TokenizerGroup {
  readonly docs = new Map<number, GroupDoc>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly busy: Map<Scorer, number>;
  /** Seconds spent projecting, and tokenizing with spans (for the benchmark's overhead figure). */
  projectSeconds = 0;
  tokenizeSeconds = 0;

  constructor(
    readonly tokenizer: TextTokenizer,
    readonly models: PreparedModel[],
    readonly scorers: Scorer[],
    private readonly pool: WindowPool,
    private readonly opts: CrossTokenizerOptions,
    private readonly listener: Listener,
  ) {
    this.busy = new Map(scorers.map((s) => [s, 0]));
  }

  async add(docs: TokenizedDocument[], trainer: SpannedTokens[], cpBytes: Int32Array[]): Promise<void> {
    const t0 = performance.now();
    const ref = await this.tokenizer.encodeSpans(docs.map((d) => d.text), cpBytes);
    this.tokenizeSeconds += (performance.now() - t0) / 1000;
    for (let i = 0; i < docs.length; i++) {
      const doc = docs[i];
      const n = ref[i].tokenIds.length;
      const native = new Map(this.models.map((m) => [m.name, new Float32Array(n).fill(Number.NaN)]));
      // A document the trainer gives no token has nothing to carry a score: the reference is not run on it.
      const windows = doc.tokenIds.length === 0 ? [] : planWindows(doc.docSeq, n, this.opts.spec);
      const gd: GroupDoc = { trainer: trainer[i].spans, ref: ref[i], native, pendingWindows: windows.length };
      this.docs.set(doc.docSeq, gd);
      if (windows.length === 0) {
        this.finish(doc.docSeq, gd);
        continue;
      }
      const plans = this.pool.add(windows);
      if (plans) await this.dispatch(plans);
    }
  }

  async drain(): Promise<void> {
    await this.dispatch(this.pool.flush());
    while (this.inflight.size > 0) await Promise.race(this.inflight);
  }

  private async dispatch(plans: BatchPlan[]): Promise<void> {
    const maxInflight = 2 * this.scorers.length;
    for (const plan of plans) {
      while (this.inflight.size >= maxInflight) await Promise.race(this.inflight);
      const batch = buildBatch(plan, (seq) => this.docs.get(seq)!.ref.tokenIds);
      const scorer = [...this.busy].sort((a, b) => a[1] - b[1])[0][0];
      this.busy.set(scorer, this.busy.get(scorer)! + 1);
      const p: Promise<void> = scorer.score(batch).then((res) => {
        batch.windows.forEach((w, r) => {
          const gd = this.docs.get(w.docSeq)!;
          const rowBase = r * batch.width;
          for (const [name, s] of res) {
            gd.native.get(name)!.set(s.logprob.subarray(rowBase + w.scoreFrom - w.start, rowBase + w.end - w.start), w.scoreFrom);
          }
          if (--gd.pendingWindows === 0) this.finish(w.docSeq, gd);
        });
      }).catch((e) => this.listener.onError(e)).finally(() => {
        this.inflight.delete(p);
        this.busy.set(scorer, this.busy.get(scorer)! - 1);
      });
      this.inflight.add(p);
    }
  }

  private finish(docSeq: number, gd: GroupDoc): void {
    this.docs.delete(docSeq);
    const t0 = performance.now();
    const out = new Map<string, ProjectedScores>();
    for (const [name, lp] of gd.native) {
      const p = projectLogprobs(gd.trainer, gd.ref.spans, lp);
      let any = false;
      for (let i = 0; i < lp.length && !any; i++) any = !Number.isNaN(lp[i]);
      out.set(name, { logprob: p.logprob, nativeSum: any ? p.nativeSum : Number.NaN });
    }
    this.projectSeconds += (performance.now() - t0) / 1000;
    this.listener.onDocument(docSeq, out);
  }

  async close(): Promise<void> {
    await Promise.all(this.scorers.map((s) => s.close()));
  }
}

export class CrossTokenizerModels {
  private constructor(private readonly groups: TokenizerGroup[], private readonly primary: TextTokenizer, private readonly listener: Listener) {}

  /** Set where projected scores and failures go (the stage does, before the first document). */
  listen(onDocument: OnDocument, onError: OnError): void {
    this.listener.onDocument = onDocument;
    this.listener.onError = onError;
  }

  /** Number of onDocument calls each document gets (one per tokenizer group). */
  get groupCount(): number {
    return this.groups.length;
  }

  /** Per model tokenizer: one of its scorers and its models (the preflight runs a full window on each). */
  get probes(): { scorer: Scorer; models: PreparedModel[] }[] {
    return this.groups.map((g) => ({ scorer: g.scorers[0], models: g.models }));
  }

  /** Seconds spent in projection so far, over all groups. */
  get projectSeconds(): number {
    return this.groups.reduce((a, g) => a + g.projectSeconds, 0);
  }

  /** Seconds spent tokenizing with byte spans (the trainer's tokens again, and each model tokenizer's). */
  get tokenizeSeconds(): number {
    return this.trainerSeconds + this.groups.reduce((a, g) => a + g.tokenizeSeconds, 0);
  }

  private trainerSeconds = 0;

  /** Load each model tokenizer and start its scorers. Throws a plain Error naming the model on bad input. */
  static async open(opts: CrossTokenizerOptions): Promise<CrossTokenizerModels> {
    const byPath = new Map<string, PreparedModel[]>();
    for (const { model, tokenizerPath } of opts.models) byPath.set(tokenizerPath, [...(byPath.get(tokenizerPath) ?? []), model]);
    const groups: TokenizerGroup[] = [];
    const listener: Listener = { onDocument: () => { throw new Error('internal: cross-tokenizer scores with no listener'); }, onError: () => undefined };
    try {
      for (const [path, models] of byPath) {
        let tok: TextTokenizer;
        try {
          tok = TextTokenizer.load(path, { appendEos: opts.appendEos });
        } catch (e) {
          throw new Error(`--model-tokenizer of ${models.map((m) => m.name).join(', ')}: ${(e as Error).message}`);
        }
        const scorers: Scorer[] = [];
        try {
          for (const deviceId of opts.deviceIds) {
            scorers.push(await Scorer.open({ models, device: opts.device, deviceId, intraOpThreads: opts.intraOpThreads, tokenizerVocabSize: tok.info.vocabSize }));
          }
        } catch (e) {
          await Promise.all(scorers.map((s) => s.close()));
          throw e;
        }
        groups.push(new TokenizerGroup(tok, models, scorers, new WindowPool(opts.batchTokens, opts.spec.contextTokens), opts, listener));
      }
    } catch (e) {
      await Promise.all(groups.map((g) => g.close()));
      throw e;
    }
    return new CrossTokenizerModels(groups, opts.primary, listener);
  }

  /** Hand in a chunk of tokenized documents (the trainer's tokens); scores come back through onDocument. */
  async add(docs: TokenizedDocument[]): Promise<void> {
    if (docs.length === 0) return;
    const texts = docs.map((d) => d.text);
    const cpBytes = texts.map(codePointByteOffsets);
    // The trainer's spans: the primary tokenizer again, with offsets (the same ids as the job's own call).
    const t0 = performance.now();
    const trainer = await this.primary.encodeSpans(texts, cpBytes);
    this.trainerSeconds += (performance.now() - t0) / 1000;
    for (let i = 0; i < docs.length; i++) {
      if (trainer[i].tokenIds.length !== docs[i].tokenIds.length) throw new Error(`internal: document ${docs[i].id}: ${trainer[i].tokenIds.length} trainer tokens with offsets, ${docs[i].tokenIds.length} without`);
    }
    for (const g of this.groups) await g.add(docs, trainer, cpBytes);
  }

  /** Run whatever is pooled and wait for every document. */
  async drain(): Promise<void> {
    for (const g of this.groups) await g.drain();
  }

  async close(): Promise<void> {
    await Promise.all(this.groups.map((g) => g.close()));
  }
}

/**
 * Check `--model-tokenizer NAME=PATH` values against the models and hash each file. A model tokenizer whose
 * file is the primary tokenizer's (same sha256) IS the primary tokenizer: that model is scored on the trainer's
 * tokens directly, so the output is byte-identical to a run without the flag. Returns the models that project.
 */
export async function resolveModelTokenizers(
  specs: { name: string; path: string }[],
  modelNames: readonly string[],
  primarySha256: string,
  fileSha256: (path: string) => Promise<string>,
): Promise<Map<string, { path: string; sha256: string }>> {
  const out = new Map<string, { path: string; sha256: string }>();
  const seen = new Set<string>();
  for (const s of specs) {
    if (!modelNames.includes(s.name)) throw new Error(`--model-tokenizer ${s.name}=${s.path}: no --model is named "${s.name}" (models: ${modelNames.join(', ')})`);
    if (seen.has(s.name)) throw new Error(`--model-tokenizer given twice for model "${s.name}"`);
    seen.add(s.name);
    let sha: string;
    try {
      sha = await fileSha256(s.path);
    } catch (e) {
      throw new Error(`--model-tokenizer ${s.name}=${s.path}: cannot read the file (${(e as Error).message}); give the path of the model's tokenizer.json`);
    }
    if (sha !== primarySha256) out.set(s.name, { path: s.path, sha256: sha });
  }
  return out;
}

/**
 * The stage: documents are handed to the projected models in chunks (one tokenizer batch call each) and leave
 * once every tokenizer group has projected its scores onto them. Counter `projected_docs`.
 */
export function crossTokenizerStage(cross: CrossTokenizerModels, opts: { chunkDocs?: number } = {}): Stage<Flow<ScoredDocument>, Flow<ScoredDocument>> {
  const chunkDocs = opts.chunkDocs ?? 256;
  return stage('cross-tokenizer', async function* (input, ctx) {
    const waiting = new Map<number, { item: Extract<Flow<ScoredDocument>, { kind: 'doc' }>; groups: number }>();
    const ready: Flow<ScoredDocument>[] = [];
    let failure: unknown = null;
    cross.listen(
      (docSeq, scores) => {
        const w = waiting.get(docSeq)!;
        for (const [name, p] of scores) w.item.doc.scores.set(name, p);
        if (--w.groups === 0) {
          waiting.delete(docSeq);
          // The text was kept for this stage only (tokenizeStage keepText): the output holds token ids.
          ready.push({ ...w.item, doc: { ...w.item.doc, text: '' } });
        }
      },
      (e) => { failure ??= e; },
    );
    const c = ctx.stats.counters;
    c.projected_docs = 0;
    let chunk: Extract<Flow<ScoredDocument>, { kind: 'doc' }>[] = [];
    const flush = async () => {
      const docs = chunk;
      chunk = [];
      for (const it of docs) waiting.set(it.doc.docSeq, { item: it, groups: cross.groupCount });
      await cross.add(docs.map((it) => it.doc));
    };
    for await (const it of input) {
      if (it.kind !== 'doc') { yield it; continue; }
      chunk.push(it);
      if (chunk.length >= chunkDocs) await flush();
      if (failure) throw failure;
      while (ready.length) { c.projected_docs++; yield ready.shift()!; }
    }
    await flush();
    await cross.drain();
    if (failure) throw failure;
    while (ready.length) { c.projected_docs++; yield ready.shift()!; }
    if (waiting.size > 0) throw new Error(`internal: ${waiting.size} documents still wait for projected scores at the end of the input`);
  });
}
