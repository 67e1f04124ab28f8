// Exactly-once without determinism: every runner's bytes differ (RHO_TEST_PERTURB_SCORES=1, as GPU kernels
// chosen by batch shape do), and still each unit is committed once, its record names the exact bytes of the
// one visible file, and `read_parquet('DIR/**/*.parquet')` holds every input row once: under concurrent
// runners, a paused runner whose lease ran out, and SIGKILL at every commit step.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, relative } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { LocalStore } from '../../pipeline/io/local.js';
import type { OutputStore } from '../../schemas/store.js';
import { commitUnit, recoverStaged, stagedPath, STAGED_DIR, type UnitOutput } from '../../pipeline/run/commit.js';
import { dataPath, unitName, LAYOUT, type CompletionRecord } from '../../schemas/layout.js';
import { ROOT, RHO, TOKENIZER, CACHE, modelPath, shardPath, tmp, runRho } from '../helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => { if (!existsSync(d)) return; for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else out.push(relative(dir, p)); } };
  walk(dir);
  return out.sort();
}

// ---- the commit protocol itself, in-process ----

const unit = { source: 'data/a.jsonl', part: 0 };
const output = (bytes: Uint8Array): UnitOutput => ({
  file: dataPath(unit, 'parquet'), bytes, rejects: null,
  record: { unit: unitName(unit), source: unit.source, part: 0, first_row: 0, docs_in: 1, scored: 1, rejected: 0, tokens: 1, scored_tokens: 0, config_sha256: 'c' },
});

test('four runners commit one unit with different bytes at once: one record, and the only visible file is its bytes', async (t) => {
  for (let round = 0; round < 20; round++) {
    const dir = tmp('rho-nd-proto-');
    const store = new LocalStore(dir);
    const bytes = Array.from({ length: 4 }, (_, i) => new TextEncoder().encode(`runner ${i} round ${round} ${Math.random()}`));
    const results = await Promise.all(bytes.map((b) => commitUnit(store, output(b), () => true)));
    t.is(results.filter((r) => r.won).length, 1);
    const rec = JSON.parse(readFileSync(join(dir, LAYOUT.doneDir, `${unitName(unit)}.json`), 'utf8')) as CompletionRecord;
    const visible = files(dir).filter((f) => !f.startsWith('_rho/'));
    t.deepEqual(visible, [rec.file]);
    t.is(sha(readFileSync(join(dir, rec.file))), rec.sha256);
    t.deepEqual(files(join(dir, STAGED_DIR)), [], 'no staged file left');
    for (const r of results) if (!r.won) t.is(r.record?.sha256, rec.sha256);
  }
});

test('a runner whose lease ran out commits nothing and leaves nothing', async (t) => {
  const dir = tmp('rho-nd-fence-');
  const r = await commitUnit(new LocalStore(dir), output(new TextEncoder().encode('late')), () => false);
  t.false(r.won);
  t.deepEqual(files(dir), []);
});

test('crash between record and publish: the next runner publishes exactly the recorded bytes; leftovers of losers and dead runners are removed', async (t) => {
  const dir = tmp('rho-nd-recover-');
  const local = new LocalStore(dir);
  // A store whose rename "crashes": the record is created, the data file never published.
  const crashing: OutputStore = Object.assign(Object.create(local) as OutputStore, { rename: async () => { throw new Error('killed'); } });
  const winner = new TextEncoder().encode('winner bytes');
  await t.throwsAsync(commitUnit(crashing, output(winner), () => true), { message: 'killed' });
  // A loser's staged file (different bytes) and a dead runner's staged file of another unit without record.
  writeFileSync(join(dir, stagedPath(unitName(unit), sha(new TextEncoder().encode('loser')), 'parquet')), 'loser');
  const other = unitName({ source: 'data/b.jsonl', part: 3 });
  mkdirSync(dirname(join(dir, stagedPath(other, 'f'.repeat(64), 'parquet'))), { recursive: true });
  writeFileSync(join(dir, stagedPath(other, 'f'.repeat(64), 'parquet')), 'dead');
  t.deepEqual(files(dir).filter((f) => !f.startsWith('_rho/')), [], 'nothing visible before recovery');

  const r = await recoverStaged(local, () => true);
  t.deepEqual(r, { published: 1, deleted: 2 });
  const rec = JSON.parse(readFileSync(join(dir, LAYOUT.doneDir, `${unitName(unit)}.json`), 'utf8')) as CompletionRecord;
  t.is(readFileSync(join(dir, rec.file), 'utf8'), 'winner bytes');
  t.is(sha(readFileSync(join(dir, rec.file))), rec.sha256);
  t.deepEqual(files(join(dir, STAGED_DIR)), []);
});

// ---- the whole CLI, perturbed ----

const inputsDir = tmp('rho-nd-in-');
mkdirSync(inputsDir, { recursive: true });
writeFileSync(join(inputsDir, 'bad.jsonl'), ['{"id":"b0","text":"fine text here"}', 'not json', '{"id":"b2","text":7}', '{"id":"b3","text":"more fine text"}'].join('\n') + '\n');
const INPUTS = [shardPath('clean.jsonl'), shardPath('mixed.parquet'), join(inputsDir, 'bad.jsonl')];
const args = (out: string, extra: string[] = []) => [
  'score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', ...INPUTS, '--output', out,
  '--id-field', 'id', '--context', '64', '--stride', '32', '--batch-tokens', '256', '--unit-docs', '4', '--max-reject-ratio', '0.5', '--no-progress', ...extra,
];
const PERTURB = { RHO_TEST_PERTURB_SCORES: '1' };

const rho = runRho;

let expectedRows = 0;
let expectedUnits = 0;
let reference = '';

test.before(async () => {
  reference = tmp('rho-nd-ref-');
  const r = await rho(args(reference), PERTURB);
  if (r.code !== 0) throw new Error(`reference run failed: ${r.stderr}`);
  const m = JSON.parse(readFileSync(join(reference, LAYOUT.manifest), 'utf8')) as { totals: { scored: number; units_done: number } };
  expectedRows = m.totals.scored;
  expectedUnits = m.totals.units_done;
});

/** Every scored input row once in `read_parquet('DIR/**\/*.parquet')`, each visible file exactly its record's bytes, rho verify clean. */
async function exactlyOnce(t: import('ava').ExecutionContext, out: string, label: string) {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const [[rows, distinct]] = (await (await con.run(`SELECT count(*), count(DISTINCT (source, "row")) FROM read_parquet('${out}/**/*.parquet')`)).getRows()) as [bigint, bigint][];
  t.is(Number(rows), expectedRows, `${label}: rows`);
  t.is(Number(distinct), expectedRows, `${label}: distinct (source, row)`);
  const visible = files(out).filter((f) => f.endsWith('.parquet'));
  const records = files(join(out, LAYOUT.doneDir)).filter((f) => f.endsWith('.json')).map((f) => JSON.parse(readFileSync(join(out, LAYOUT.doneDir, f), 'utf8')) as CompletionRecord);
  t.is(records.length, expectedUnits, `${label}: records`);
  t.deepEqual(visible, records.map((r) => r.file).sort(), `${label}: visible files are exactly the recorded ones`);
  for (const r of records) t.is(sha(readFileSync(join(out, r.file))), r.sha256, `${label}: ${r.file} is its record's bytes`);
  t.deepEqual(files(join(out, STAGED_DIR)), [], `${label}: no staged file left`);
  const v = await rho(['verify', out]);
  t.is(v.code, 0, `${label}: rho verify: ${v.stdout}${v.stderr}`);
}

test('the perturbation is real: two runs of one configuration write different bytes', async (t) => {
  const out = tmp('rho-nd-second-');
  t.is((await rho(args(out), PERTURB)).code, 0);
  // Every unit with a scored token differs (a unit whose documents have no scored position has nothing to perturb).
  const scoredUnits = files(join(reference, LAYOUT.doneDir)).filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(reference, LAYOUT.doneDir, f), 'utf8')) as CompletionRecord).filter((r) => r.scored_tokens > 0);
  t.true(scoredUnits.length >= expectedUnits - 1, `${scoredUnits.length} of ${expectedUnits} units have scored tokens`);
  for (const r of scoredUnits) t.not(sha(readFileSync(join(reference, r.file))), sha(readFileSync(join(out, r.file))), `${r.file} came out byte-identical`);
  await exactlyOnce(t, reference, 'reference');
});

const POINTS: [string, number][] = [
  ['claim-acquired', 2], ['write-temp', 3], ['write-renamed', 2], ['unit-data-written', 3], ['unit-rejects-written', 1],
  ['unit-record-written', 2], ['unit-record-written', 5], ['unit-published', 3], ['summary-written', 1], ['manifest', 1],
];

test('SIGKILL at every commit step with different bytes on every run, then a rerun: exactly once, verify clean', async (t) => {
  for (const [point, n] of POINTS) {
    const out = tmp('rho-nd-crash-');
    const crashed = await rho(args(out), { ...PERTURB, RHO_CRASH_AT: `${point}:${n}` });
    t.is(crashed.signal, 'SIGKILL', `${point}:${n} did not crash: ${crashed.stderr}`);
    const rerun = await rho(args(out), PERTURB);
    t.is(rerun.code, 0, `${point}:${n} rerun: ${rerun.stderr}`);
    await exactlyOnce(t, out, `${point}:${n}`);
  }
});

test('three concurrent runners with different bytes: every unit once, verify clean', async (t) => {
  const out = tmp('rho-nd-conc-');
  const rs = await Promise.all([0, 1, 2].map(() => rho([...args(out), '--json'], PERTURB)));
  for (const r of rs) t.is(r.code, 0, r.stderr);
  const runs = rs.map((r) => JSON.parse(r.stdout).run as { units_written: number });
  t.is(runs.reduce((a, r) => a + r.units_written, 0), expectedUnits);
  await exactlyOnce(t, out, 'concurrent');
});

test('a runner paused past its lease while another takes its units over: it drops its work, the output is exactly once', async (t) => {
  const out = tmp('rho-nd-pause-');
  const a = spawn(RHO, args(out, ['--lease-seconds', '2', '--json']), { cwd: ROOT, env: { ...process.env, RHO_CACHE_DIR: CACHE, ...PERTURB }, stdio: ['ignore', 'pipe', 'pipe'] });
  let aOut = '';
  a.stdout.on('data', (c: Buffer) => { aOut += c; });
  const aDone = new Promise<number | null>((resolve) => a.on('exit', (code) => resolve(code)));
  // Pause A as soon as it holds a claim.
  const claimsDir = join(out, LAYOUT.claimsDir);
  const deadline = Date.now() + 60_000;
  while (!files(claimsDir).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.true(files(claimsDir).length > 0, 'runner A never claimed a unit');
  a.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 2500)); // A's lease runs out
  const b = await rho([...args(out, ['--lease-seconds', '2']), '--json'], PERTURB);
  t.is(b.code, 0, b.stderr);
  a.kill('SIGCONT');
  t.is(await aDone, 0);
  const ra = JSON.parse(aOut).run as { units_written: number; units_lost: number };
  const rb = JSON.parse(b.stdout).run as { units_written: number };
  t.log(`A (paused) wrote ${ra.units_written}, dropped ${ra.units_lost}; B wrote ${rb.units_written}; ${expectedUnits} units`);
  t.log(JSON.stringify(ra), JSON.stringify(rb));
  t.is(ra.units_written + rb.units_written, expectedUnits);
  await exactlyOnce(t, out, 'paused');
});
