// Rank/world size from flags and scheduler environments; the stable unit → rank assignment.
import test from 'ava';
import { resolveRank, ownerOf, checkWorldSize, WORLD_PATH } from '../../pipeline/run/rank.js';
import { ConfigError, EXIT } from '../../schemas/errors.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { tmp } from '../helpers.js';

test('no flags and no scheduler: rank 0 of 1', (t) => {
  t.deepEqual(resolveRank({}, {}), { rank: 0, worldSize: 1, from: 'single' });
});

test('flags win over the environment', (t) => {
  t.deepEqual(resolveRank({ rank: 2, worldSize: 5 }, { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '3' }), { rank: 2, worldSize: 5, from: 'flags' });
});

test('Slurm array without an explicit world size: the array is the world (min and step honoured)', (t) => {
  t.deepEqual(resolveRank({}, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '0' }), { rank: 3, worldSize: 4, from: 'slurm' });
  // --array=4-6
  t.deepEqual(resolveRank({}, { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '4' }), { rank: 1, worldSize: 3, from: 'slurm' });
  // --array=2-6:2 → ids 2, 4, 6
  t.deepEqual(resolveRank({}, { SLURM_ARRAY_TASK_ID: '6', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '2', SLURM_ARRAY_TASK_STEP: '2' }), { rank: 2, worldSize: 3, from: 'slurm' });
});

test('Slurm array with RHO_WORLD_SIZE (what rho launch writes): the task id is the rank, so resubmitting one id keeps its share', (t) => {
  // `sbatch --array=3 job.sbatch` after task 3 failed: Slurm says count 1, min 3.
  t.deepEqual(resolveRank({}, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '1', SLURM_ARRAY_TASK_MIN: '3', RHO_WORLD_SIZE: '4' }), { rank: 3, worldSize: 4, from: 'slurm' });
  t.deepEqual(resolveRank({ worldSize: 4 }, { SLURM_ARRAY_TASK_ID: '2' }), { rank: 2, worldSize: 4, from: 'slurm' });
});

test('Kubernetes Indexed Job: JOB_COMPLETION_INDEX plus a world size from the spec', (t) => {
  t.deepEqual(resolveRank({}, { JOB_COMPLETION_INDEX: '2', RHO_WORLD_SIZE: '3' }), { rank: 2, worldSize: 3, from: 'kubernetes' });
  t.deepEqual(resolveRank({ worldSize: 8 }, { JOB_COMPLETION_INDEX: '7' }), { rank: 7, worldSize: 8, from: 'kubernetes' });
  const e = t.throws(() => resolveRank({}, { JOB_COMPLETION_INDEX: '2' }));
  t.true(e instanceof ConfigError);
  t.regex(e!.message, /RHO_WORLD_SIZE/);
});

test('AWS Batch array job: AWS_BATCH_JOB_ARRAY_INDEX with the size from env or flags', (t) => {
  t.deepEqual(resolveRank({}, { AWS_BATCH_JOB_ARRAY_INDEX: '9', AWS_BATCH_JOB_ARRAY_SIZE: '10' }), { rank: 9, worldSize: 10, from: 'aws-batch' });
  t.deepEqual(resolveRank({}, { AWS_BATCH_JOB_ARRAY_INDEX: '1', RHO_WORLD_SIZE: '2' }), { rank: 1, worldSize: 2, from: 'aws-batch' });
  t.throws(() => resolveRank({}, { AWS_BATCH_JOB_ARRAY_INDEX: '1' }), { message: /array size is unknown/ });
});

test('bad ranks are configuration errors (exit 2) that name the source', (t) => {
  const cases: [Parameters<typeof resolveRank>[0], Record<string, string>, RegExp][] = [
    [{ rank: 4, worldSize: 4 }, {}, /rank 4 is outside 0\.\.3.*flags/],
    [{}, { JOB_COMPLETION_INDEX: '5', RHO_WORLD_SIZE: '5' }, /rank 5 is outside 0\.\.4.*kubernetes/],
    [{ rank: -1, worldSize: 2 }, {}, /outside/],
    [{ rank: 1 }, {}, /--rank needs --world-size/],
    [{ worldSize: 3 }, {}, /without --rank/],
    [{}, { SLURM_ARRAY_TASK_ID: 'x', SLURM_ARRAY_TASK_COUNT: '2' }, /SLURM_ARRAY_TASK_ID must be an integer/],
    [{ rank: 0, worldSize: 0 }, {}, /world size must be >= 1/],
    [{}, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '2', SLURM_ARRAY_TASK_STEP: '2' }, /not on the array's grid/],
  ];
  for (const [flags, env, re] of cases) {
    const e = t.throws(() => resolveRank(flags, env), undefined, JSON.stringify([flags, env]));
    t.regex(e!.message, re);
    t.is((e as ConfigError).exitCode, EXIT.config);
  }
});

const names = Array.from({ length: 4000 }, (_, i) => `shard${i % 37}-0123abcd/part-${String(i).padStart(5, '0')}`);

test('ownerOf: every rank in range, balanced within 10%', (t) => {
  for (const n of [1, 2, 4, 7]) {
    const counts = new Array<number>(n).fill(0);
    for (const u of names) counts[ownerOf(u, n)]++;
    for (const c of counts) t.true(Math.abs(c - names.length / n) < 0.1 * (names.length / n), `world ${n}: ${counts}`);
  }
  t.throws(() => ownerOf('x', 0));
});

test('ownerOf depends only on the unit name: adding inputs never moves a unit', (t) => {
  const before = new Map(names.slice(0, 1000).map((u) => [u, ownerOf(u, 4)]));
  const after = names.map((u) => [u, ownerOf(u, 4)] as const).reverse();
  for (const [u, r] of after) if (before.has(u)) t.is(before.get(u), r);
});

test('ownerOf: growing the world from 4 to 5 moves only ~1/5 of the units, all to the new rank', (t) => {
  let moved = 0;
  for (const u of names) {
    const a = ownerOf(u, 4);
    const b = ownerOf(u, 5);
    if (a !== b) {
      moved++;
      t.is(b, 4, `${u} moved from ${a} to ${b}`);
    }
  }
  t.true(Math.abs(moved / names.length - 0.2) < 0.03, `moved ${moved}`);
});

test('checkWorldSize records the first world size and refuses another one', async (t) => {
  const store = new LocalStore(tmp());
  await checkWorldSize(store, { rank: 0, worldSize: 4, from: 'flags' });
  await checkWorldSize(store, { rank: 3, worldSize: 4, from: 'slurm' });
  const e = await t.throwsAsync(checkWorldSize(store, { rank: 1, worldSize: 8, from: 'kubernetes' }));
  t.true(e instanceof ConfigError);
  t.regex(e!.message, /being scored by 4 ranks.*world size 8.*--world-size 4/);
  t.regex(e!.message, new RegExp(WORLD_PATH.replace(/[./]/g, '\\$&')));
});
