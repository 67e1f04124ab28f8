// Interrupts and runners that die mid-run. SIGINT/SIGTERM: the CLI says what happened and how to resume,
// releases its claims, leaves no temporary file, exits 130/143, and a rerun completes. A runner whose
// neighbour died during its run takes the neighbour's units over before exiting. Verified with rho verify.
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CACHE, RHO, ROOT, TOKENIZER, modelPath, score, tmp } from '../helpers.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';
import { LAYOUT } from '../../schemas/layout.js';

const docs = (n: number) => Array.from({ length: n }, (_, i) => JSON.stringify({ id: `d${i}`, text: `Document ${i}: ${'a few words to score here '.repeat(6)}` })).join('\n') + '\n';
const files = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String) : []);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, ms = 120_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await sleep(20);
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test.serial(`${signal}: says what happened and how to resume, releases claims, leaves no temp file; the rerun completes`, async (t) => {
    const base = tmp('rho-interrupt-');
    const input = join(base, 'a.jsonl');
    writeFileSync(input, docs(400));
    const out = join(base, 'out');
    const args = ['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', input, '--output', out,
      '--id-field', 'id', '--context', '16', '--unit-docs', '20', '--cache-dir', CACHE, '--no-progress'];
    const child = spawn(RHO, args, { cwd: ROOT, env: { ...process.env, RHO_CACHE_DIR: CACHE } });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await waitFor(() => files(join(out, LAYOUT.doneDir)).some((f) => f.endsWith('.json')));
    child.kill(signal);
    const code = await exited;
    t.is(code, signal === 'SIGINT' ? 130 : 143, stderr);
    t.regex(stderr, new RegExp(`interrupted by ${signal}`));
    t.regex(stderr, /rerun the same command to resume/);
    t.deepEqual(files(out).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
    const held = files(join(out, LAYOUT.claimsDir)).filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(out, LAYOUT.claimsDir, f), 'utf8')) as { state: string; error?: string });
    t.true(held.every((c) => c.state === 'failed'), 'claims released (failed), so another runner takes over at once');
    const s = await score({ inputs: [input], output: out, context: 16, unitDocs: 20 });
    t.is(s.manifest.totals.docs_in, 400);
    t.true(s.run.units_skipped >= 1, 'the finished units were kept');
    const v = await verifyOutput(out, { inputs: true });
    t.deepEqual(v.errors, []);
  });
}

test.serial('a runner takes over, before exiting, the units of a neighbour that died during its run', async (t) => {
  const base = tmp('rho-survivor-');
  const input = join(base, 'a.jsonl');
  writeFileSync(input, docs(200));
  const out = join(base, 'out');
  // Learn the shard folder (a first run on another dir, same input path), then plant a live claim on part 1
  // held by a process of this host that dies while our run is under way.
  const probe = await score({ inputs: [input], output: join(base, 'probe'), context: 16, unitDocs: 20 });
  const key = probe.manifest.shards[0].key;
  const neighbour = spawn('sleep', ['600']);
  const unit = `${key}/part-00001`;
  mkdirSync(join(out, LAYOUT.claimsDir, key), { recursive: true });
  writeFileSync(join(out, LAYOUT.claimsDir, `${unit}.g0.json`), JSON.stringify({ unit, gen: 0, runner: 'neighbour', host: hostname(), pid: neighbour.pid, rank: 0, expires_at: Date.now() + 3_600_000, state: 'working' }) + '\n');
  // The neighbour dies once our runner has passed part 1 and committed part 3.
  const killer = waitFor(() => existsSync(join(out, LAYOUT.doneDir, key, 'part-00003.json'))).then(() => neighbour.kill('SIGKILL'));
  const s = await score({ inputs: [input], output: out, context: 16, unitDocs: 20 });
  await killer;
  t.is(s.run.units_claimed_elsewhere, 0, 'nothing left to a later run');
  t.is(s.run.units_written, 10);
  t.true(existsSync(join(out, LAYOUT.doneDir, `${unit}.json`)));
  t.is(s.manifest.totals.docs_in, 200);
  const v = await verifyOutput(out, { inputs: true });
  t.deepEqual(v.errors, []);
});
