// End to end on a real single-node Slurm cluster: `rho launch slurm` submits a 4-task array of `rho score`
// ranks; every unit is done exactly once; a task that fails on purpose leaves only its own units missing,
// and a relaunch completes exactly those.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { startSlurm, type Slurm } from '../services/slurm.js';
import { CACHE, RHO, TOKENIZER, modelPath, shardPath, tmp } from '../helpers.js';
import { ownerOf } from '../../pipeline/run/rank.js';
import { unitName } from '../../schemas/layout.js';
import { startService, need, type Started } from './_services.js';
import { requires } from '../requirements.js';

const withSlurm = requires('slurm', 'root');

let slurm: Started<Slurm>;
test.before(async () => {
  const t0 = Date.now();
  slurm = await startService(['slurm', 'root'], startSlurm);
  if (slurm.service) process.stderr.write(`slurm started in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
});
test.after.always(async () => { await slurm?.service?.stop(); });

const INPUTS = [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz'), shardPath('mixed.parquet')];
const UNIT_DOCS = 4;
const TASKS = 4;

/** Rows per input, counted without rho: non-blank JSONL lines (gunzipped), DuckDB for Parquet. */
async function inputRows(): Promise<Map<string, number>> {
  const lines = (b: Buffer) => b.toString('utf8').split('\n').filter((l) => l.trim() !== '').length;
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  return new Map([
    [INPUTS[0], lines(readFileSync(INPUTS[0]))],
    [INPUTS[1], lines(gunzipSync(readFileSync(INPUTS[1])))],
    [INPUTS[2], Number((await (await con.run(`SELECT count(*) FROM read_parquet('${INPUTS[2]}')`)).getRows())[0][0])],
  ]);
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: { ...process.env, ...env } }, (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
  });
}

async function launch(s: Slurm, out: string, logDir: string, extra: string[]): Promise<string> {
  const r = await run(RHO, ['launch', 'slurm', '--tasks', String(TASKS), '--cpus-per-task', '1', '--mem', '500M', '--log-dir', logDir, '--job-name', 'rho-test', ...extra, '--',
    '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', ...INPUTS, '--output', out, '--id-field', 'id', '--context', '64', '--stride', '32',
    '--unit-docs', String(UNIT_DOCS), '--max-reject-ratio', '1', '--threads', '1', '--no-progress', '--json', '--cache-dir', CACHE], s.env);
  if (r.code !== 0) throw new Error(`rho launch slurm failed (${r.code}): ${r.stderr}`);
  const jobId = r.stdout.trim();
  await s.waitJob(jobId);
  return jobId;
}

/** The JSON summary each task printed, by task id (null where the task printed none). */
function summaries(logDir: string, jobId: string): (Record<string, any> | null)[] {
  return Array.from({ length: TASKS }, (_, i) => {
    let log: string;
    try { log = readFileSync(join(logDir, `${jobId}_${i}.log`), 'utf8'); } catch { return null; }
    const line = log.split('\n').reverse().find((l) => l.startsWith('{"output"'));
    return line ? JSON.parse(line) : null;
  });
}

const doneRecords = (out: string) => {
  const found: string[] = [];
  const walk = (d: string) => { for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else if (n.endsWith('.json')) found.push(p); } };
  walk(join(out, '_rho', 'done'));
  return found.sort();
};

async function distinctRows(out: string): Promise<{ rows: number; distinct: number }> {
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const [[n, d]] = (await (await con.run(`SELECT count(*), count(DISTINCT source || '#' || row) FROM read_parquet('${out}/**/*.parquet')`)).getRows()) as [bigint, bigint][];
  return { rows: Number(n), distinct: Number(d) };
}

withSlurm.serial('a 4-task array scores every unit exactly once', async (t) => {
  const s = need(slurm);
  const out = tmp('rho-slurm-out-');
  const logs = tmp('rho-slurm-logs-');
  const rows = await inputRows();
  const totalUnits = [...rows.values()].reduce((a, n) => a + Math.ceil(n / UNIT_DOCS), 0);
  const jobId = await launch(s, out, logs, []);
  const sums = summaries(logs, jobId);
  t.true(sums.every(Boolean), `every task printed a summary: ${readdirSync(logs).join(', ')}`);
  const written = sums.map((x) => x!.run.units_written as number);
  t.log('units written per task', written);
  t.is(written.reduce((a, b) => a + b, 0), totalUnits, 'the tasks together wrote each unit once');
  t.is(doneRecords(out).length, totalUnits);
  t.true(written.filter((w) => w > 0).length >= 2, 'the work was split among the tasks');
  const { rows: n, distinct } = await distinctRows(out);
  t.is(n, distinct, 'no document appears twice in the output');
  const st = JSON.parse((await run(RHO, ['status', out, '--json'], {})).stdout);
  t.true(st.complete);
  t.is(st.world_size, TASKS);
  t.is(st.docs_in, [...rows.values()].reduce((a, b) => a + b, 0));
});

withSlurm.serial('one task fails on purpose; a relaunch completes only what was missing', async (t) => {
  const s = need(slurm);
  const out = tmp('rho-slurm-out-');
  const logs = tmp('rho-slurm-logs-');
  const rows = await inputRows();
  // Fail the task that owns the first unit of the first shard, so the failure surely leaves work behind.
  const victim = ownerOf(unitName({ source: INPUTS[0], part: 0 }), TASKS);
  const job1 = await launch(s, out, logs, ['--setup', `if [ "$SLURM_ARRAY_TASK_ID" = ${victim} ]; then echo "failing task ${victim} on purpose" >&2; exit 3; fi`]);
  const first = summaries(logs, job1);
  t.is(first[victim], null, 'the victim task never ran rho');
  const st1 = JSON.parse((await run(RHO, ['status', out, '--input', ...INPUTS, '--json'], {})).stdout);
  t.false(st1.complete);
  t.deepEqual(st1.ranks_with_work, [victim]);
  const missing = st1.units.missing as number;
  t.true(missing > 0);
  const before = new Map(doneRecords(out).map((f) => [f, { mtime: statSync(f).mtimeMs, body: readFileSync(f, 'utf8') }]));

  const job2 = await launch(s, out, logs, []);
  const second = summaries(logs, job2);
  t.true(second.every(Boolean));
  for (let i = 0; i < TASKS; i++) {
    t.is(second[i]!.run.units_written, i === victim ? missing : 0, `task ${i} of the relaunch`);
  }
  for (const [f, b] of before) {
    t.is(statSync(f).mtimeMs, b.mtime, `${f} was not rewritten`);
    t.is(readFileSync(f, 'utf8'), b.body);
  }
  const totalUnits = [...rows.values()].reduce((a, n) => a + Math.ceil(n / UNIT_DOCS), 0);
  t.is(doneRecords(out).length, totalUnits);
  const { rows: n, distinct } = await distinctRows(out);
  t.is(n, distinct);
  const st2 = JSON.parse((await run(RHO, ['status', out, '--json'], {})).stdout);
  t.true(st2.complete);
});
