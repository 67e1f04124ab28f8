// One measurement, run in its own child process so that its peak RSS is its own (process.resourceUsage().maxRSS).
// bench/run.ts starts it as `node dist/bench/measure.js '<json>'`; it prints one JSON line on stdout.
// Modes:
//   score     rho end to end (runScore in-process: read, tokenize, batch, worker-thread inference, Parquet write)
//   bare      the limit: a bare loop of session.run over the very batches rho forms (same model, shapes, threads)
//   ingraph   session.run of the prepared graph (log-probs in-graph) over a sample of those batches
//   logits    session.run of the plain model + log-softmax and gather in JS, same sample
//   tokenize  rho's tokenize stage vs a bare encodeBatch loop over the same documents, interleaved
//   dump      write the batches for the PyTorch baseline (bench/torch_score.py)
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { Tokenizer } from 'tokenizers';
import { TextTokenizer } from '../stages/tokenize.js';
import { planWindows } from '../stages/window.js';
import { WindowPool, buildBatch, paddingFraction, type BatchPlan } from '../stages/batch.js';
import { feeds, type WorkerModel } from '../stages/score-worker.js';
import { prepareModel } from '../model/prepare.js';
import { runScore } from '../pipeline/jobs/score.js';
import type { Batch, Document, TokenizedDocument } from '../schemas/types.js';

export interface MeasureArgs {
  mode: 'score' | 'bare' | 'ingraph' | 'logits' | 'tokenize' | 'dump';
  corpus: string;
  model: string;
  tokenizer: string;
  context: number;
  batchTokens: number;
  threads: number;
  cacheDir: string;
  /** Execution provider for score/bare/ingraph (bench/gpu.sh passes cuda); default cpu. */
  device?: 'cpu' | 'cuda';
  /** score: output dir; dump: file prefix. */
  out?: string;
  unitDocs?: number;
  /** ingraph/logits: stop after this many computed positions. */
  sampleTokens?: number;
  reps?: number;
}

// Same tokenize chunks as the score job's tokenize stage (stages/tokenize.ts) and the same pooling (WindowPool from stages/batch.ts), so the
// bare loop runs exactly the batches rho forms.
const TOKENIZE_CHUNK_DOCS = 256;

function readCorpus(path: string): Document[] {
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l, row) => {
    const r = JSON.parse(l) as { id: string; text: string };
    return { source: path, row, id: r.id, text: r.text };
  });
}

async function tokenizeAll(a: MeasureArgs, docs: Document[]): Promise<TokenizedDocument[]> {
  const tok = TextTokenizer.load(a.tokenizer);
  const out: TokenizedDocument[] = [];
  for (let i = 0; i < docs.length; i += TOKENIZE_CHUNK_DOCS) {
    out.push(...(await tok.encode(docs.slice(i, i + TOKENIZE_CHUNK_DOCS).map((d, j) => ({ ...d, docSeq: i + j })))));
  }
  return out;
}

/** The batches rho forms for this corpus, in dispatch order, and the number of positions it scores. */
async function planCorpus(a: MeasureArgs): Promise<{ batches: Batch[]; plans: BatchPlan[]; scoredTokens: number }> {
  const docs = await tokenizeAll(a, readCorpus(a.corpus));
  const spec = { contextTokens: a.context, strideTokens: a.context };
  const plans: BatchPlan[] = [];
  const pool = new WindowPool(a.batchTokens, a.context);
  let scoredTokens = 0;
  for (const d of docs) {
    const windows = planWindows(d.docSeq, d.tokenIds.length, spec);
    // The first position of every window has no context in it (null in the output), as in rho.
    for (const w of windows) scoredTokens += w.end - Math.max(w.scoreFrom, w.start + 1);
    plans.push(...(pool.add(windows) ?? []));
  }
  plans.push(...pool.flush());
  const batches = plans.map((p) => buildBatch(p, (seq) => docs[seq]!.tokenIds));
  return { batches, plans, scoredTokens };
}

const sessionOptions = (a: MeasureArgs): ort.InferenceSession.SessionOptions => ({
  // Same as stages/score-worker.ts.
  graphOptimizationLevel: 'all',
  executionProviders: a.device === 'cuda' ? [{ name: 'cuda', deviceId: 0 }] : ['cpu'],
  intraOpNumThreads: a.threads,
});

const maxRssMiB = () => process.resourceUsage().maxRSS / 1024;

/** The same untimed 1x2 probe that rho's Scorer.open runs before its clock starts: no side times a cold first run. */
async function probe(session: ort.InferenceSession, m: WorkerModel, dropTarget = false): Promise<void> {
  const f = feeds(m, 1, 2, new Int32Array(2), Int32Array.of(2));
  if (dropTarget) delete f['rho_target_ids'];
  await session.run(f);
}

async function prepared(a: MeasureArgs) {
  return prepareModel({ path: a.model, name: 'ref', cacheDir: join(a.cacheDir, 'models'), entropy: false });
}

async function bare(a: MeasureArgs) {
  const { batches, plans, scoredTokens } = await planCorpus(a);
  const p = await prepared(a);
  const session = await ort.InferenceSession.create(p.preparedPath, sessionOptions(a));
  const m: WorkerModel = { name: 'ref', preparedPath: p.preparedPath, inputs: p.inputs, entropy: false };
  // Feeds are built before the clock starts: the limit is session.run alone.
  const allFeeds = batches.map((b) => feeds(m, b.rows, b.width, b.tokens, b.lengths));
  await probe(session, m);
  const t0 = performance.now();
  for (const f of allFeeds) await session.run(f);
  const seconds = (performance.now() - t0) / 1000;
  const pad = paddingFraction(plans);
  return { seconds, scored_tokens: scoredTokens, tokens_per_second: scoredTokens / seconds, batches: batches.length, padding_fraction: 1 - pad.real / pad.computed, max_rss_mib: maxRssMiB() };
}

async function score(a: MeasureArgs) {
  // A fresh dir: an output dir with finished units would make the run skip them (resume) and measure nothing.
  rmSync(a.out!, { recursive: true, force: true });
  const s = await runScore({
    models: [{ name: 'ref', path: a.model }],
    tokenizer: a.tokenizer,
    inputs: [a.corpus],
    output: a.out!,
    textField: 'text',
    idField: 'id',
    context: a.context,
    batchTokens: a.batchTokens,
    format: 'parquet',
    device: a.device ?? 'cpu',
    appendEos: false,
    entropy: false,
    unitDocs: a.unitDocs ?? 10000,
    maxRejectRatio: 0,
    overwrite: true,
    cacheDir: a.cacheDir,
    threads: a.threads,
    progress: false,
  });
  const r = s.run;
  if (r.scored_tokens === 0) throw new Error(`bench: rho scored no tokens in ${a.out}`);
  return { seconds: r.wall_seconds, scored_tokens: r.scored_tokens, tokens_per_second: r.tokens_per_second, padding_fraction: r.padding_fraction, docs: r.docs_in, units: r.units_written, max_rss_mib: maxRssMiB() };
}

/** First batches of the corpus plan up to sampleTokens computed positions. */
async function sample(a: MeasureArgs): Promise<Batch[]> {
  const { batches } = await planCorpus(a);
  const out: Batch[] = [];
  let n = 0;
  for (const b of batches) {
    if (n >= (a.sampleTokens ?? 16384)) break;
    out.push(b);
    n += b.rows * b.width;
  }
  return out;
}

function countScored(batches: Batch[]): number {
  let n = 0;
  for (const b of batches) for (const len of b.lengths) n += Math.max(0, len - 1); // position 0 of a row has no context
  return n;
}

async function ingraph(a: MeasureArgs) {
  const batches = await sample(a);
  const p = await prepared(a);
  const session = await ort.InferenceSession.create(p.preparedPath, sessionOptions(a));
  const m: WorkerModel = { name: 'ref', preparedPath: p.preparedPath, inputs: p.inputs, entropy: false };
  await probe(session, m);
  const t0 = performance.now();
  let check = 0;
  for (const b of batches) {
    const out = await session.run(feeds(m, b.rows, b.width, b.tokens, b.lengths));
    check += (out['rho_logprob']!.data as Float32Array)[0]!;
  }
  const seconds = (performance.now() - t0) / 1000;
  const n = countScored(batches);
  return { seconds, scored_tokens: n, tokens_per_second: n / seconds, checksum_first: check, max_rss_mib: maxRssMiB() };
}

/** What rho would do without the prepared graph: [B,T,V] logits come out, log-softmax + gather in JS. */
async function logits(a: MeasureArgs) {
  const batches = await sample(a);
  const p = await prepared(a);
  const session = await ort.InferenceSession.create(a.model, sessionOptions(a));
  const m: WorkerModel = { name: 'ref', preparedPath: a.model, inputs: p.inputs, entropy: false };
  await probe(session, m, true);
  const t0 = performance.now();
  let check = 0;
  for (const b of batches) {
    const f = feeds(m, b.rows, b.width, b.tokens, b.lengths);
    delete f['rho_target_ids'];
    const out = await session.run(f);
    const x = out['logits']!.data as Float32Array;
    const V = x.length / (b.rows * b.width);
    const lp = new Float32Array(b.rows * b.width);
    for (let r = 0; r < b.rows; r++) {
      for (let t = 0; t + 1 < b.lengths[r]!; t++) {
        const o = (r * b.width + t) * V;
        let mx = -Infinity;
        for (let v = 0; v < V; v++) if (x[o + v]! > mx) mx = x[o + v]!;
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(x[o + v]! - mx);
        lp[r * b.width + t] = x[o + b.tokens[r * b.width + t + 1]!]! - mx - Math.log(s);
      }
    }
    check += lp[0]!;
  }
  const seconds = (performance.now() - t0) / 1000;
  const n = countScored(batches);
  return { seconds, scored_tokens: n, tokens_per_second: n / seconds, checksum_first: check, max_rss_mib: maxRssMiB() };
}

/** rho's stage (TextTokenizer.encode: batch call + ids into Int32Array) vs bare encodeBatch + getIds, A B A B, same chunks. */
async function tokenize(a: MeasureArgs) {
  const docs = readCorpus(a.corpus);
  const chunks: Document[][] = [];
  for (let i = 0; i < docs.length; i += TOKENIZE_CHUNK_DOCS) chunks.push(docs.slice(i, i + TOKENIZE_CHUNK_DOCS));
  const rho = TextTokenizer.load(a.tokenizer);
  const raw = Tokenizer.fromFile(a.tokenizer);
  const rhoT: number[] = [];
  const bareT: number[] = [];
  let tokens = 0;
  const runRho = async () => {
    const t0 = performance.now();
    let n = 0;
    for (const c of chunks) for (const d of await rho.encode(c)) n += d.tokenIds.length;
    rhoT.push((performance.now() - t0) / 1000);
    return n;
  };
  // The bare loop still reads the ids (getIds): ids are what any caller needs from a tokenizer.
  const runBare = async () => {
    const t0 = performance.now();
    let m = 0;
    for (const c of chunks) for (const e of await raw.encodeBatch(c.map((d) => d.text))) m += e.getIds().length;
    bareT.push((performance.now() - t0) / 1000);
    return m;
  };
  // A B B A ...: neither side always runs first (warm caches, GC debt of the other).
  for (let rep = 0; rep < (a.reps ?? 5); rep++) {
    const [n, m] = rep % 2 === 0 ? [await runRho(), await runBare()] : [await runBare(), await runRho()].reverse();
    if (n !== m) throw new Error(`tokenize: rho gave ${n} tokens, bare encodeBatch ${m}`);
    tokens = n;
  }
  return { tokens, rho_seconds: rhoT, bare_seconds: bareT, chars: docs.reduce((s, d) => s + d.text.length, 0) };
}

async function dump(a: MeasureArgs) {
  const { batches, scoredTokens } = await planCorpus(a);
  const total = batches.reduce((s, b) => s + b.tokens.length, 0);
  const tokens = new Int32Array(total);
  let o = 0;
  const index = batches.map((b) => {
    tokens.set(b.tokens, o);
    const e = { offset: o, rows: b.rows, width: b.width, lengths: [...b.lengths] };
    o += b.tokens.length;
    return e;
  });
  writeFileSync(`${a.out}.tokens.i32`, tokens);
  writeFileSync(`${a.out}.json`, JSON.stringify({ batches: index, scored_tokens: scoredTokens }));
  return { batches: batches.length, computed_positions: total, scored_tokens: scoredTokens };
}

const a = JSON.parse(process.argv[2] ?? '{}') as MeasureArgs;
const modes = { score, bare, ingraph, logits, tokenize, dump } as const;
const fn = modes[a.mode];
if (!fn) {
  console.error(`bench/measure: unknown mode ${String(a.mode)} (one of ${Object.keys(modes).join(', ')})`);
  process.exit(2);
}
const result = await fn(a);
process.stdout.write(JSON.stringify({ mode: a.mode, ...result }) + '\n');
