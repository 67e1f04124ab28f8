// Byte-identity regression: `rho score`, `rho select` and `rho export` must write the very same bytes for the
// fixtures before and after a change of structure. The golden list (golden.json beside this file's source) was
// recorded from the code as it was before the issue-11 restructure (commit 610af3c) — it is not a statement of
// correctness (the oracle tests do that), only of "nothing moved". Regenerate deliberately, never to make this
// pass: RHO_REGRESSION_WRITE=1 npx ava dist/test/regression/bytes.test.js
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ROOT, RHO, CACHE, tmp } from '../helpers.js';

const run = promisify(execFile);
const GOLDEN = join(ROOT, 'test', 'regression', 'golden.json');
const WRITE = process.env.RHO_REGRESSION_WRITE === '1';

const M = (n: string) => `fixtures/models/${n}/model.onnx`;
const TOK = 'fixtures/tokenizer/tokenizer.json';
const SHARDS = ['clean.jsonl', 'noisy.jsonl.gz', 'mixed.jsonl.zst', 'mixed.parquet', 'mixed.arrow'].map((s) => `fixtures/shards/${s}`);

/**
 * Provenance records each model and tokenizer path as given and resolved (absolute), so the bytes would depend on
 * where the checkout lives. rho runs from a fixed directory whose `fixtures` links to this checkout's fixtures:
 * the resolved paths (lexical, links not followed) are then the same in every checkout.
 */
const FIXED_ROOT = join(tmpdir(), 'rho-regression-root');
function fixedRoot(): string {
  mkdirSync(FIXED_ROOT, { recursive: true });
  const link = join(FIXED_ROOT, 'fixtures');
  let ok = false;
  try { ok = existsSync(join(readlinkSync(link), 'tokenizer', 'tokenizer.json')); } catch { /* no link yet */ }
  if (!ok) {
    // Another checkout's link that still works is as good (fixtures are committed files); a broken one is replaced.
    const tmpLink = `${link}.${process.pid}`;
    symlinkSync(join(ROOT, 'fixtures'), tmpLink);
    renameSync(tmpLink, link);
  }
  return FIXED_ROOT;
}

async function rho(args: string[]): Promise<void> {
  try {
    await run(RHO, [...args, '--no-progress'], { cwd: fixedRoot(), env: { ...process.env, RHO_CACHE_DIR: CACHE }, maxBuffer: 1 << 26 });
  } catch (e) {
    const x = e as { code: number; stderr: string };
    throw new Error(`rho ${args.join(' ')} exited ${x.code}: ${x.stderr}`);
  }
}

/**
 * sha256 of every file rho writes as data or as a deterministic record: data files, completion records,
 * rejects, the run identity, export arrays/headers. Not manifest.json (its "run" field holds wall-clock time) nor
 * select's report _rho/select.json (it names the temporary dirs).
 */
function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      // Claims, rank summaries (wall-clock time) and run info (the input list as typed): bookkeeping, not data.
      // _rho/inputs holds each shard's canonical (absolute) location: it depends on where the checkout is.
      if (statSync(p).isDirectory()) { if (!['claims', 'ranks', 'runs'].includes(n) && !(n === 'inputs' && relative(dir, d) === '_rho')) walk(p); continue; }
      const rel = relative(dir, p);
      // Reports that name the (temporary) dirs or hold wall-clock time, not data.
      if (rel === 'manifest.json' || rel === '_rho/select.json') continue;
      out[rel] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

test('score, select and export write byte-identical files for the fixtures (golden list)', async (t) => {
  const base = tmp('rho-regress-');
  const d = (n: string) => join(base, n);
  // Two models (ref, base) + entropy + C/S with overlap + several units per shard.
  await rho(['score', '--model', `ref=${M('llama')}`, '--model', `base=${M('gpt2')}`, '--tokenizer', TOK, '--input', ...SHARDS,
    '--id-field', 'id', '--context', '64', '--stride', '32', '--entropy', '--unit-docs', '7', '--batch-tokens', '512',
    '--max-reject-ratio', '1', '--output', d('score-two')]);
  // Arrow, fp16 model, S = C, Hive partitions, appended EOS, a glob input.
  await rho(['score', '--model', M('llama-fp16'), '--tokenizer', TOK, '--input', 'fixtures/shards/*', '--format', 'arrow',
    '--context', '48', '--partition-by', 'shard', '--append-eos', '--max-reject-ratio', '1', '--output', d('score-arrow')]);
  // Defaults: C from config.json, default ids, default batch tokens; KV-cache export of the same model.
  await rho(['score', '--model', M('llama-kv'), '--model-name', 'kv', '--tokenizer', TOK, '--input', SHARDS[0], SHARDS[1],
    '--max-reject-ratio', '1', '--output', d('score-default')]);
  await rho(['select', d('score-two'), '--output', d('select-batch'), '--ratio', '0.6', '--by', 'excess', '--scope', 'batch', '--batch-tokens', '256']);
  await rho(['select', d('score-arrow'), '--output', d('select-global'), '--ratio', '0.5', '--by', 'ref_loss', '--scope', 'global']);
  await rho(['select', d('score-two'), '--output', d('select-doc'), '--ratio', '0.7', '--by', 'ref_loss', '--scope', 'document', '--format', 'arrow']);
  await rho(['export', d('select-batch'), '--format', 'memmap', '--output', d('export-batch')]);
  await rho(['export', d('score-arrow'), '--format', 'memmap', '--score-dtype', 'float16', '--output', d('export-f16')]);
  await rho(['export', d('score-two'), '--format', 'memmap', '--columns', 'base_logprob', '--output', d('export-cols')]);

  const got: Record<string, Record<string, string>> = {};
  for (const n of readdirSync(base).sort()) got[n] = hashes(d(n));
  if (WRITE) {
    writeFileSync(GOLDEN, JSON.stringify(got, null, 2) + '\n');
    t.log(`wrote ${GOLDEN}`);
  }
  const golden = JSON.parse(readFileSync(GOLDEN, 'utf8')) as typeof got;
  t.deepEqual(Object.keys(got), Object.keys(golden), 'the same output dirs');
  // Every difference at once (ava stops at a test's first failed assertion): file, golden hash, this run's.
  const differ: string[] = [];
  for (const [dir, files] of Object.entries(golden)) {
    t.true(Object.keys(files).some((f) => /\.(parquet|arrow|bin)$/.test(f)), `${dir}: the golden list holds data files`);
    for (const f of new Set([...Object.keys(files), ...Object.keys(got[dir] ?? {})])) {
      if (files[f] !== got[dir]?.[f]) differ.push(`${dir}/${f}: golden ${files[f]?.slice(0, 12) ?? 'absent'}, now ${got[dir]?.[f]?.slice(0, 12) ?? 'absent'}`);
    }
  }
  t.deepEqual(differ, [], 'every file byte-identical to the golden list');
});
