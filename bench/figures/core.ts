// rho's own figures: overhead over the limit, the in-graph log-prob, PyTorch, tokenize, padding, memory, scaling.
import { join } from 'node:path';
import type { BenchContext, Contender, Figure, Sample } from './types.js';

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const tps = (s: Sample | undefined) => s?.tokens_per_second ?? NaN;
const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toString() : 'n/a');
const medTps = (rounds: Record<string, Sample>[], key: string) => median(rounds.map((r) => tps(r[key])));

const out = (ctx: BenchContext, name: string) => join(ctx.work, 'out', name);
const batchesPrefix = (ctx: BenchContext) => join(ctx.work, `batches-1x-512-${ctx.batchTokens}`);

const score = (key: string, corpus: '1x' | '4x', context: number): Contender => ({
  key,
  run: (ctx) => ctx.measure({ mode: 'score', corpus: corpus === '1x' ? ctx.corpus1x : ctx.corpus4x, context, out: out(ctx, key), unitDocs: 500 }),
});
export const rho1x = score('rho_1x', '1x', 512);
const rho4x = score('rho_4x', '4x', 512);
const rho2048 = score('rho_1x_c2048', '1x', 2048);
const bare: Contender = { key: 'bare_1x', run: (ctx) => ctx.measure({ mode: 'bare', corpus: ctx.corpus1x, context: 512 }) };
const ingraph: Contender = { key: 'ingraph', run: (ctx) => ctx.measure({ mode: 'ingraph', corpus: ctx.corpus1x, context: 512, sampleTokens: 4096 }) };
const logits: Contender = { key: 'logits', run: (ctx) => ctx.measure({ mode: 'logits', corpus: ctx.corpus1x, context: 512, sampleTokens: 4096 }) };
const tokenize: Contender = { key: 'tokenize', run: (ctx) => ctx.measure({ mode: 'tokenize', corpus: ctx.corpus4x, context: 512, reps: 2 }) };

let dumped = false;
const torch: Contender = {
  key: 'torch_1x',
  unavailable: (ctx) => (ctx.python ? null : 'skipped (--skip-torch, or a non-CPU device)'),
  run: (ctx) => {
    // The windows rho scores, written once for the PyTorch script.
    if (!dumped) { ctx.measure({ mode: 'dump', corpus: ctx.corpus1x, context: 512, out: batchesPrefix(ctx) }); dumped = true; }
    return ctx.runJson(ctx.python!, [join(ctx.root, 'bench', 'torch_score.py'), join(ctx.modelDir, 'weights.pt'), batchesPrefix(ctx), String(ctx.threads)], 'PyTorch baseline');
  },
};

const ratio = (a: string, b: string) => (r: Record<string, Sample>) => tps(r[a]) / tps(r[b]);

export const coreFigures: Figure[] = [
  {
    key: 'overhead', title: 'rho score end to end ÷ bare session.run loop (same batches)', target: '>= 0.95',
    contenders: [rho1x, bare], value: ratio('rho_1x', 'bare_1x'), clears: (v) => v >= 0.95,
    detail: (rs) => `${n0(medTps(rs, 'rho_1x'))} vs ${n0(medTps(rs, 'bare_1x'))} tok/s`,
  },
  {
    key: 'in_graph', title: 'in-graph log-prob ÷ logits + JS log-softmax, V=32000', target: 'several-fold (>= 2)',
    contenders: [ingraph, logits], value: ratio('ingraph', 'logits'), clears: (v) => v >= 2, format: (v) => `${v.toFixed(2)}x`,
    detail: (rs) => `${n0(medTps(rs, 'ingraph'))} vs ${n0(medTps(rs, 'logits'))} tok/s; peak RSS ${n0(median(rs.map((r) => r.ingraph?.max_rss_mib ?? NaN)))} vs ${n0(median(rs.map((r) => r.logits?.max_rss_mib ?? NaN)))} MiB`,
  },
  {
    key: 'vs_torch', title: 'rho ÷ PyTorch (SDPA, inference_mode, its best batch size), same weights and windows', target: '>= 1.8',
    contenders: [rho1x, torch], value: ratio('rho_1x', 'torch_1x'), clears: (v) => v >= 1.8, format: (v) => `${v.toFixed(2)}x`,
    detail: (rs) => {
      const t = rs.map((r) => r.torch_1x).find(Boolean);
      return `${n0(medTps(rs, 'rho_1x'))} vs ${n0(medTps(rs, 'torch_1x'))} tok/s; torch ${String(t?.torch ?? '?')}, ${String(t?.batch_rows ?? '?')} rows per batch`;
    },
  },
  {
    key: 'tokenize', title: 'rho tokenize stage ÷ bare encodeBatch', target: '>= 0.9', contenders: [tokenize],
    value: (r) => median((r.tokenize?.bare_seconds as number[]) ?? []) / median((r.tokenize?.rho_seconds as number[]) ?? []),
    clears: (v) => v >= 0.9,
    detail: (rs) => `${n0(median(rs.map((r) => (r.tokenize?.tokens as number) / median(r.tokenize?.rho_seconds as number[]))))} vs ${n0(median(rs.map((r) => (r.tokenize?.tokens as number) / median(r.tokenize?.bare_seconds as number[]))))} tok/s`,
  },
  {
    key: 'padding', title: 'padding (fraction of computed positions)', target: '<= 5%', contenders: [rho1x],
    value: (r) => (r.rho_1x?.padding_fraction as number) ?? NaN, clears: (v) => v <= 0.05, format: (v) => `${(v * 100).toFixed(1)}%`,
  },
  {
    key: 'memory', title: 'peak RSS 4x corpus ÷ 1x corpus', target: 'flat (<= 1.15)', contenders: [rho1x, rho4x],
    value: (r) => (r.rho_4x?.max_rss_mib ?? NaN) / (r.rho_1x?.max_rss_mib ?? NaN), clears: (v) => v <= 1.15,
    detail: (rs) => `${n0(median(rs.map((r) => r.rho_1x?.max_rss_mib ?? NaN)))} / ${n0(median(rs.map((r) => r.rho_4x?.max_rss_mib ?? NaN)))} MiB`,
  },
  { key: 'tps_1x_c512', title: 'rho tokens/s, 1x corpus, C=512', target: '', contenders: [rho1x], value: (r) => tps(r.rho_1x), format: n0 },
  { key: 'tps_4x_c512', title: 'rho tokens/s, 4x corpus, C=512', target: '', contenders: [rho4x], value: (r) => tps(r.rho_4x), format: n0 },
  { key: 'tps_1x_c2048', title: 'rho tokens/s, 1x corpus, C=2048', target: '', contenders: [rho2048], value: (r) => tps(r.rho_1x_c2048), format: n0 },
];
