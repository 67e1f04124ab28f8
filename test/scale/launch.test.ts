// rho launch: the sbatch script and the Kubernetes manifest, checked by bash and kubectl themselves, and the
// Indexed Job's env-var contract exercised by running each pod's command locally with JOB_COMPLETION_INDEX.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { slurmScript } from '../../pipeline/launch/slurm.js';
import { requires } from '../requirements.js';
import { CACHE, RHO, TOKENIZER, modelPath, shardPath, tmp, runRho } from '../helpers.js';

const rho = runRho;

const SCORE = ['--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', `${shardPath('')}/*.jsonl`, '--output', '/tmp/o u t', '--id-field', 'id'];

test('slurm --dry-run: the array, resources, requeue and pass-through lines; bash parses it', async (t) => {
  const r = await rho(['launch', 'slurm', '--tasks', '4', '--concurrency', '2', '--partition', 'gpu', '--gpus-per-task', '1', '--cpus-per-task', '8', '--mem', '32G', '--time', '04:00:00',
    '--sbatch=--account=lm', '--setup', 'module load cuda/12', '--rho-command', 'srun --container-image=rho.sqsh rho', '--dry-run', '--', ...SCORE]);
  t.is(r.code, 0, r.stderr);
  const s = r.stdout;
  for (const line of ['#SBATCH --array=0-3%2', '#SBATCH --partition=gpu', '#SBATCH --gpus-per-task=1', '#SBATCH --cpus-per-task=8', '#SBATCH --mem=32G', '#SBATCH --time=04:00:00',
    '#SBATCH --requeue', '#SBATCH --signal=B:USR1@120', '#SBATCH --account=lm', 'module load cuda/12', 'export RHO_WORLD_SIZE=4', 'trap requeue USR1']) {
    t.true(s.split('\n').includes(line), `missing line: ${line}`);
  }
  t.regex(s, /^srun --container-image=rho\.sqsh rho score --world-size 4 /m);
  const f = join(tmp(), 'job.sbatch');
  writeFileSync(f, s);
  const syntax = spawnSync('bash', ['-n', f], { encoding: 'utf8' });
  t.is(syntax.status, 0, syntax.stderr);
});

test('slurm script quoting: bash hands rho score exactly the arguments given after --', (t) => {
  const args = ['--model', 'ref=/m o/model.onnx', '--tokenizer', "/t/it's.json", '--input', 's3://b/x/*.jsonl', '--input', '$HOME/a;b', '--output', 'o', '--text-field', 'a"b'];
  const script = slurmScript({ tasks: 2, jobName: 'x', output: '/tmp/%A_%a.log', sbatch: [], setup: [], rhoCommand: "printf '%s\\n'", scoreArgs: args, requeueBeforeLimitSeconds: 0 });
  const line = script.split('\n').find((l) => l.startsWith("printf '%s\\n' score"))!.replace(/ &$/, '');
  const out = execFileSync('bash', ['-c', line], { encoding: 'utf8' }).split('\n').slice(0, -1);
  t.deepEqual(out, ['score', '--world-size', '2', ...args]);
});

test('launch refuses --rank/--world-size after -- and an incomplete score configuration (exit 2)', async (t) => {
  const a = await rho(['launch', 'slurm', '--tasks', '2', '--dry-run', '--', ...SCORE, '--world-size', '3']);
  t.is(a.code, 2);
  t.regex(a.stderr, /--world-size is set by the launcher/);
  const b = await rho(['launch', 'k8s', '--tasks', '2', '--image', 'x', '--dry-run', '--', '--model', 'm.onnx', '--input', 'x.jsonl', '--output', 'o']);
  t.is(b.code, 2);
  t.regex(b.stderr, /no --tokenizer/);
  const c = await rho(['launch', 'slurm', '--tasks', '0', '--dry-run', '--', ...SCORE]);
  t.is(c.code, 2);
});

// kubectl >= 1.28 (test/requirements.json): older clients silently drop completionMode / backoffLimitPerIndex.
requires('kubectl')('k8s manifest: kubectl decodes it as a typed batch/v1 Job and keeps every field rho set', async (t) => {
  const r = await rho(['launch', 'k8s', '--tasks', '3', '--parallelism', '2', '--image', 'ghcr.io/acme/rho:1', '--gpus-per-task', '1', '--cpus-per-task', '4', '--mem', '16Gi',
    '--env-secret', 'aws-creds', '--backoff-limit-per-index', '2', '--dry-run', '--', ...SCORE]);
  t.is(r.code, 0, r.stderr);
  const f = join(tmp(), 'job.yaml');
  writeFileSync(f, r.stdout);
  // No API server here: `kubectl set ... --local` decodes the file into the typed Job (wrong types fail,
  // unknown fields are dropped) without contacting a cluster.
  const k = spawnSync('kubectl', ['set', 'env', '--local', '-f', f, '-o', 'json', 'RHO_CHECK=1'], { encoding: 'utf8' });
  t.is(k.status, 0, k.stderr);
  const job = JSON.parse(k.stdout);
  t.is(job.kind, 'Job');
  t.is(job.spec.completionMode, 'Indexed');
  t.is(job.spec.completions, 3);
  t.is(job.spec.parallelism, 2);
  t.is(job.spec.backoffLimitPerIndex, 2, 'backoffLimitPerIndex survived typed decoding (it is a real JobSpec field)');
  const pod = job.spec.template.spec;
  t.is(pod.restartPolicy, 'Never');
  const c = pod.containers[0];
  t.is(c.image, 'ghcr.io/acme/rho:1');
  t.deepEqual(c.command, ['rho', 'score', '--world-size', '3', ...SCORE]);
  t.deepEqual(c.env.find((e: { name: string }) => e.name === 'RHO_WORLD_SIZE'), { name: 'RHO_WORLD_SIZE', value: '3' });
  t.deepEqual(c.envFrom, [{ secretRef: { name: 'aws-creds' } }]);
  t.deepEqual(c.resources.limits, { 'nvidia.com/gpu': '1', cpu: '4', memory: '16Gi' });
  // A broken manifest is caught by the same check.
  writeFileSync(f, r.stdout.replace('completions: 3', 'completions: "three"'));
  t.not(spawnSync('kubectl', ['set', 'env', '--local', '-f', f, '-o', 'json', 'X=1'], { encoding: 'utf8' }).status, 0);
});

test('k8s env contract: each pod\'s command with JOB_COMPLETION_INDEX=i scores its share; together every unit exactly once', async (t) => {
  const out = tmp('rho-k8s-');
  const inputs = [shardPath('clean.jsonl'), shardPath('mixed.parquet')];
  const args = ['--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', ...inputs, '--output', out, '--id-field', 'id', '--context', '64', '--stride', '32', '--unit-docs', '3', '--no-progress', '--json', '--cache-dir', CACHE];
  const r = await rho(['launch', 'k8s', '--tasks', '3', '--image', 'x', '--rho-command', RHO, '--dry-run', '--', ...args]);
  t.is(r.code, 0, r.stderr);
  const y = r.stdout;
  // The pod's command and env exactly as written in the manifest (YAML strings are JSON strings here).
  const cmdBlock = y.slice(y.indexOf('command:'), y.indexOf('env:'));
  const command = [...cmdBlock.matchAll(/^\s+- (".*")$/gm)].map((m) => JSON.parse(m[1]) as string);
  t.is(command[0], RHO);
  const world = JSON.parse(/name: "RHO_WORLD_SIZE"\n\s+value: (".*")/.exec(y)![1]) as string;
  let written = 0;
  for (let i = 0; i < 3; i++) {
    const pod = await rho(command.slice(1), { JOB_COMPLETION_INDEX: String(i), RHO_WORLD_SIZE: world });
    t.is(pod.code, 0, pod.stderr);
    written += JSON.parse(pod.stdout.trim().split('\n').at(-1)!).run.units_written;
  }
  const st = JSON.parse((await rho(['status', out, '--json'])).stdout);
  t.true(st.complete, JSON.stringify(st.units));
  t.is(written, st.units.total, 'units written by the 3 pods add up to the units of the input: none twice, none left');
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const [[n, distinct]] = (await (await con.run(`SELECT count(*), count(DISTINCT source || '#' || row) FROM read_parquet('${out}/**/*.parquet')`)).getRows()) as [bigint, bigint][];
  t.is(Number(n), Number(distinct));
  const jsonlDocs = readFileSync(inputs[0], 'utf8').split('\n').filter((l) => l.trim()).length;
  const pqDocs = Number((await (await con.run(`SELECT count(*) FROM read_parquet('${inputs[1]}')`)).getRows())[0][0]);
  t.true(Number(n) > 0 && Number(n) <= jsonlDocs + pqDocs);
  t.is(st.docs_in, jsonlDocs + pqDocs);
});
