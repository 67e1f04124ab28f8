// Benchmark figure: the scoring head at vocabularies of 32k, 128k and 152k (Llama 2, Llama 3, Qwen3), full head
// (log-softmax over the model's [B,T,V] logits) vs chunked head (vocabulary slices, model/chunked-head.ts), same
// batches. Reports tokens/s and peak RSS (min / median / max over interleaved repetitions, each run in its own child
// process so its peak RSS is its own), and the chunked head alone on a batch of 8192 tokens at the largest vocabulary.
//
// Standalone: node dist/bench/figures/vocab.js [--vocabs 32000,128256,151936] [--d 64 --layers 2] [--tokens 2048]
//   [--big-tokens 8192] [--reps 3] [--batches 2] [--threads N] [--device cpu|cuda] [--slice 8192] [--mode loop|unrolled]
//   [--json bench/work/vocab.json]
// As a module: vocabFigure(options) returns the rows and the table lines; vocabFigures are the three target rows
// `npm run bench` reports (registered in bench/figures/index.ts; the full table with 128k and the full head at 152k is
// this script's, see docs/models.md).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { prepareModel } from '../../model/prepare.js';
import { feeds, type WorkerModel } from '../../stages/score-worker.js';
import type { BenchContext, Contender, Figure, Sample } from './types.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const WORK = join(ROOT, 'bench', 'work');
const SELF = fileURLToPath(import.meta.url);

export interface VocabFigureOptions {
  vocabs: number[];
  d: number;
  layers: number;
  /** Tokens per batch for the full vs chunked comparison (the full head at V = 152k holds [tokens, V] twice). */
  tokens: number;
  /** Tokens per batch for the chunked-only large-batch row. */
  bigTokens: number;
  reps: number;
  batches: number;
  threads: number;
  device: 'cpu' | 'cuda';
  slice?: number;
  mode?: 'loop' | 'unrolled';
}

interface ChildArgs {
  model: string;
  head: 'full' | 'chunked';
  tokens: number;
  batches: number;
  threads: number;
  device: 'cpu' | 'cuda';
  vocab: number;
  slice?: number;
  sliceElements?: number;
  mode?: 'loop' | 'unrolled';
  cacheDir: string;
}

interface ChildResult {
  tokens_per_second: number;
  max_rss_mib: number;
  head: string;
}

export interface VocabRow {
  vocab: number;
  head: 'full' | 'chunked';
  tokens: number;
  tps: number[];
  rss: number[];
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const mmm = (xs: number[], f: (x: number) => string) => `${f(Math.min(...xs))} / ${f(median(xs))} / ${f(Math.max(...xs))}`;

/** One measurement (child process): prepare, open a session, run `batches` batches of `tokens` tokens. */
async function child(a: ChildArgs): Promise<ChildResult> {
  const p = await prepareModel({ path: a.model, name: 'ref', cacheDir: a.cacheDir, entropy: false, head: a.head, sliceVocab: a.slice, sliceElements: a.sliceElements, sliceMode: a.mode });
  if (a.head === 'chunked' && p.head.kind !== 'chunked') throw new Error(`chunked head not recognised: ${p.head.reason}`);
  const session = await ort.InferenceSession.create(p.preparedPath, {
    graphOptimizationLevel: 'all',
    executionProviders: a.device === 'cuda' ? [{ name: 'cuda', deviceId: 0 }] : ['cpu'],
    intraOpNumThreads: a.threads,
  });
  const width = Math.min(1024, a.tokens);
  const rows = Math.max(1, Math.floor(a.tokens / width));
  const m: WorkerModel = { name: 'ref', preparedPath: p.preparedPath, inputs: p.inputs, entropy: false };
  let s = 12345;
  const tokens = Int32Array.from({ length: rows * width }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % a.vocab));
  const f = feeds(m, rows, width, tokens, new Int32Array(rows).fill(width));
  await session.run(f); // warm-up (allocations, first-run planning): not timed, but in the peak RSS
  const t0 = performance.now();
  for (let i = 0; i < a.batches; i++) await session.run(f);
  const seconds = (performance.now() - t0) / 1000;
  await session.release();
  return { tokens_per_second: (rows * width * a.batches) / seconds, max_rss_mib: process.resourceUsage().maxRSS / 1024, head: p.head.kind };
}

function runChild(a: ChildArgs): ChildResult {
  const r = spawnSync(process.execPath, [SELF, '--child', JSON.stringify(a)], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`vocab figure: measurement ${a.head} V=${a.vocab} failed (exit ${r.status ?? r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
}

function ensureModel(vocab: number, d: number, layers: number): string {
  const dir = join(WORK, `vocab-${vocab}-d${d}-l${layers}`);
  const model = join(dir, 'model.onnx');
  if (!existsSync(model)) {
    mkdirSync(dir, { recursive: true });
    const heads = Math.max(1, d / 32);
    const r = spawnSync('/usr/bin/python3', [join(ROOT, 'bench', 'make_model.py'), '--out', dir, '--vocab', String(vocab), '--d', String(d), '--layers', String(layers), '--heads', String(heads), '--ff', String(d * 2)], {
      cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (r.status !== 0) throw new Error(`vocab figure: bench/make_model.py failed for V=${vocab} (needs /usr/bin/python3 with torch + onnx): ${r.stderr.slice(-500)}`);
  }
  return model;
}

export function vocabFigure(o: VocabFigureOptions, log: (s: string) => void = (s) => process.stderr.write(`[vocab ${new Date().toISOString().slice(11, 19)}] ${s}\n`)) {
  const cacheDir = join(WORK, 'cache-vocab');
  const models = new Map(o.vocabs.map((v) => [v, ensureModel(v, o.d, o.layers)]));
  const rows: VocabRow[] = [];
  const row = (vocab: number, head: 'full' | 'chunked', tokens: number) => {
    let r = rows.find((x) => x.vocab === vocab && x.head === head && x.tokens === tokens);
    if (!r) rows.push((r = { vocab, head, tokens, tps: [], rss: [] }));
    return r;
  };
  const base = { batches: o.batches, threads: o.threads, device: o.device, slice: o.slice, mode: o.mode, cacheDir };
  for (let rep = 0; rep < o.reps; rep++) {
    for (const v of o.vocabs) {
      // Interleaved A B / B A, so drift on a shared machine hits both heads alike.
      const order: ('full' | 'chunked')[] = rep % 2 === 0 ? ['full', 'chunked'] : ['chunked', 'full'];
      for (const head of order) {
        const r = runChild({ ...base, model: models.get(v)!, head, tokens: o.tokens, vocab: v });
        row(v, head, o.tokens).tps.push(r.tokens_per_second);
        row(v, head, o.tokens).rss.push(r.max_rss_mib);
        log(`V=${v} ${head} ${o.tokens} tokens: ${r.tokens_per_second.toFixed(0)} tok/s, peak RSS ${r.max_rss_mib.toFixed(0)} MiB`);
      }
    }
    const vmax = Math.max(...o.vocabs);
    const r = runChild({ ...base, model: models.get(vmax)!, head: 'chunked', tokens: o.bigTokens, vocab: vmax });
    row(vmax, 'chunked', o.bigTokens).tps.push(r.tokens_per_second);
    row(vmax, 'chunked', o.bigTokens).rss.push(r.max_rss_mib);
    log(`V=${vmax} chunked ${o.bigTokens} tokens: ${r.tokens_per_second.toFixed(0)} tok/s, peak RSS ${r.max_rss_mib.toFixed(0)} MiB`);
  }
  const get = (v: number, h: 'full' | 'chunked', t: number) => rows.find((x) => x.vocab === v && x.head === h && x.tokens === t);
  const vmin = Math.min(...o.vocabs);
  const vmax = Math.max(...o.vocabs);
  const rssRatio = median(get(vmax, 'chunked', o.tokens)!.rss) / median(get(vmin, 'chunked', o.tokens)!.rss);
  const tpsRatio = median(get(vmin, 'chunked', o.tokens)!.tps) / median(get(vmin, 'full', o.tokens)!.tps);
  const bigRss = median(get(vmax, 'chunked', o.bigTokens)!.rss);
  const targets = {
    rss_flat_in_v: { value: rssRatio, target: '<= 1.2', pass: rssRatio <= 1.2 },
    chunked_speed_at_min_v: { value: tpsRatio, target: '>= 0.95', pass: tpsRatio >= 0.95 },
    big_batch_rss_mib: { value: bigRss, target: '< 2048', pass: bigRss < 2048 },
  };
  const f0 = (x: number) => x.toFixed(0);
  const table = [
    `Model: Llama-style, d=${o.d}, ${o.layers} layers, tied head; ${o.device}, ${o.threads} threads; ${o.batches} timed batches per run after one warm-up; ${o.reps} interleaved runs; chunked head: ${o.slice ? `slices of ${o.slice}` : 'slice size chosen at run time (at most 16M values per [tokens, slice] tensor)'}, ${o.mode ?? 'loop'}.`,
    '',
    '| V | head | tokens / batch | tokens/s (min / median / max) | peak RSS MiB (min / median / max) |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.vocab} | ${r.head} | ${r.tokens} | ${mmm(r.tps, f0)} | ${mmm(r.rss, f0)} |`),
    '',
    `- chunked peak RSS at V=${vmax} ÷ at V=${vmin}: ${rssRatio.toFixed(2)} (target <= 1.2): ${targets.rss_flat_in_v.pass ? 'PASS' : 'FAIL'}`,
    `- chunked ÷ full tokens/s at V=${vmin}: ${tpsRatio.toFixed(2)} (target >= 0.95): ${targets.chunked_speed_at_min_v.pass ? 'PASS' : 'FAIL'}`,
    `- chunked head, V=${vmax}, ${o.bigTokens}-token batch: peak RSS ${bigRss.toFixed(0)} MiB (target < 2048): ${targets.big_batch_rss_mib.pass ? 'PASS' : 'FAIL'}`,
  ];
  return { rows, targets, table };
}

// ---- as rows of `npm run bench` (bench/figures/index.ts): the three targets, min / median / max over rounds ----

const vocabContender = (key: string, vocab: number, head: 'full' | 'chunked', tokens: number): Contender => ({
  key,
  run: (ctx: BenchContext): Sample => {
    const r = runChild({ model: ensureModel(vocab, 64, 2), head, tokens, vocab, batches: 2, threads: ctx.threads, device: ctx.device, cacheDir: join(ctx.work, 'cache-vocab') });
    return { tokens_per_second: r.tokens_per_second, max_rss_mib: r.max_rss_mib };
  },
});
const full32k = vocabContender('vocab_full_32k', 32000, 'full', 2048);
const chunked32k = vocabContender('vocab_chunked_32k', 32000, 'chunked', 2048);
const chunked152k = vocabContender('vocab_chunked_152k', 151936, 'chunked', 2048);
const chunked152kBig = vocabContender('vocab_chunked_152k_8192', 151936, 'chunked', 8192);
const rssOf = (s: Sample | undefined) => s?.max_rss_mib ?? NaN;
const tpsOf = (s: Sample | undefined) => s?.tokens_per_second ?? NaN;

export const vocabFigures: Figure[] = [
  {
    key: 'vocab_rss_flat',
    title: 'chunked head: peak RSS at V=151,936 ÷ at V=32,000 (d=64, 2048-token batches)',
    target: '<= 1.2',
    contenders: [chunked32k, chunked152k],
    value: (r) => rssOf(r.vocab_chunked_152k) / rssOf(r.vocab_chunked_32k),
    clears: (v) => v <= 1.2,
    detail: (rs) => `${median(rs.map((r) => rssOf(r.vocab_chunked_152k))).toFixed(0)} vs ${median(rs.map((r) => rssOf(r.vocab_chunked_32k))).toFixed(0)} MiB`,
  },
  {
    key: 'vocab_chunked_speed',
    title: 'chunked ÷ full head tokens/s at V=32,000 (same 2048-token batches)',
    target: '>= 0.95',
    contenders: [chunked32k, full32k],
    value: (r) => tpsOf(r.vocab_chunked_32k) / tpsOf(r.vocab_full_32k),
    clears: (v) => v >= 0.95,
    detail: (rs) => `${median(rs.map((r) => tpsOf(r.vocab_chunked_32k))).toFixed(0)} vs ${median(rs.map((r) => tpsOf(r.vocab_full_32k))).toFixed(0)} tok/s; full head peak RSS ${median(rs.map((r) => rssOf(r.vocab_full_32k))).toFixed(0)} MiB`,
  },
  {
    key: 'vocab_152k_8192_rss',
    title: 'chunked head, V=151,936, one 8192-token batch: peak RSS (MiB)',
    target: '< 2048',
    contenders: [chunked152kBig],
    value: (r) => rssOf(r.vocab_chunked_152k_8192),
    clears: (v) => v < 2048,
    format: (v) => v.toFixed(0),
    detail: (rs) => `${median(rs.map((r) => tpsOf(r.vocab_chunked_152k_8192))).toFixed(0)} tok/s`,
  },
];

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] === SELF) {
  const c = flag('child');
  if (c) {
    child(JSON.parse(c) as ChildArgs).then(
      (r) => console.log(JSON.stringify(r)),
      (e: Error) => {
        console.error(e.stack ?? e.message);
        process.exit(1);
      },
    );
  } else {
    const n = (k: string, d: number) => (flag(k) === undefined ? d : Number(flag(k)));
    const o: VocabFigureOptions = {
      vocabs: (flag('vocabs') ?? '32000,128256,151936').split(',').map(Number),
      d: n('d', 64),
      layers: n('layers', 2),
      tokens: n('tokens', 2048),
      bigTokens: n('big-tokens', 8192),
      reps: n('reps', 3),
      batches: n('batches', 2),
      threads: n('threads', cpus().length),
      device: (flag('device') ?? 'cpu') as 'cpu' | 'cuda',
      slice: flag('slice') ? Number(flag('slice')) : undefined,
      mode: flag('mode') as 'loop' | 'unrolled' | undefined,
    };
    const r = vocabFigure(o);
    console.log(r.table.join('\n'));
    const out = flag('json');
    if (out) writeFileSync(out, JSON.stringify({ options: o, rows: r.rows, targets: r.targets }, null, 2));
  }
}
