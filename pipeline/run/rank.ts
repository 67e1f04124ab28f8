// Rank and world size of one runner, and which rank owns which work unit.
// A runner learns its place from flags or from the scheduler that started it (Slurm array, Kubernetes
// Indexed Job, AWS Batch array job); units are assigned by a hash of their name, so the assignment depends on
// nothing but the unit and the world size (adding inputs later never moves a finished unit).
import { createHash } from 'node:crypto';
import { ConfigError } from '../../schemas/errors.js';
import type { OutputStore } from '../../schemas/store.js';

export interface RankFlags {
  rank?: number;
  worldSize?: number;
}

export type RankSource = 'flags' | 'slurm' | 'kubernetes' | 'aws-batch' | 'single';

export interface Rank {
  rank: number;
  worldSize: number;
  /** Where the values came from, for the progress line and error messages. */
  from: RankSource;
}

type Env = Record<string, string | undefined>;

function intFrom(value: string | number | undefined, what: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' ? value : /^\s*-?\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n)) throw new ConfigError(`${what} must be an integer (got ${JSON.stringify(value)})`);
  return n;
}

/**
 * Flags win; else the scheduler's environment; else rank 0 of 1.
 *
 * - Slurm array task: rank from SLURM_ARRAY_TASK_ID. With an explicit world size (--world-size or
 *   RHO_WORLD_SIZE, as `rho launch slurm` writes it) the task id IS the rank, so resubmitting only some ids
 *   (`sbatch --array=3,7`) keeps each task's share. Without one, the array itself is the world:
 *   rank = (id - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP, world = SLURM_ARRAY_TASK_COUNT.
 * - Kubernetes Indexed Job: JOB_COMPLETION_INDEX; the world size is not in the pod's environment, so it must
 *   come from --world-size or RHO_WORLD_SIZE (the manifest `rho launch k8s` writes sets it).
 * - AWS Batch array job: AWS_BATCH_JOB_ARRAY_INDEX; world size from --world-size, RHO_WORLD_SIZE or
 *   AWS_BATCH_JOB_ARRAY_SIZE (Batch itself does not set the size: put it in the job definition).
 */
export function resolveRank(flags: RankFlags, env: Env = process.env): Rank {
  const flagRank = intFrom(flags.rank, '--rank');
  const explicitWorld = intFrom(flags.worldSize, '--world-size') ?? intFrom(env.RHO_WORLD_SIZE, 'RHO_WORLD_SIZE');
  let r: Rank;
  if (flagRank !== undefined) {
    if (explicitWorld === undefined) throw new ConfigError('--rank needs --world-size (or RHO_WORLD_SIZE): the number of runners sharing the output');
    r = { rank: flagRank, worldSize: explicitWorld, from: 'flags' };
  } else if (env.SLURM_ARRAY_TASK_ID !== undefined && env.SLURM_ARRAY_TASK_ID !== '') {
    const id = intFrom(env.SLURM_ARRAY_TASK_ID, 'SLURM_ARRAY_TASK_ID')!;
    if (explicitWorld !== undefined) {
      r = { rank: id, worldSize: explicitWorld, from: 'slurm' };
    } else {
      const count = intFrom(env.SLURM_ARRAY_TASK_COUNT, 'SLURM_ARRAY_TASK_COUNT');
      if (count === undefined) throw new ConfigError('SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --world-size');
      const min = intFrom(env.SLURM_ARRAY_TASK_MIN, 'SLURM_ARRAY_TASK_MIN') ?? 0;
      const step = intFrom(env.SLURM_ARRAY_TASK_STEP, 'SLURM_ARRAY_TASK_STEP') ?? 1;
      if (step < 1 || (id - min) % step !== 0) {
        throw new ConfigError(`Slurm array task ${id} is not on the array's grid (min ${min}, step ${step}): submit --array=0-N, or pass --rank/--world-size`);
      }
      r = { rank: (id - min) / step, worldSize: count, from: 'slurm' };
    }
  } else if (env.JOB_COMPLETION_INDEX !== undefined && env.JOB_COMPLETION_INDEX !== '') {
    const idx = intFrom(env.JOB_COMPLETION_INDEX, 'JOB_COMPLETION_INDEX')!;
    if (explicitWorld === undefined) {
      throw new ConfigError('JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but the world size is unknown: set env RHO_WORLD_SIZE to the Job\'s completions, or pass --world-size');
    }
    r = { rank: idx, worldSize: explicitWorld, from: 'kubernetes' };
  } else if (env.AWS_BATCH_JOB_ARRAY_INDEX !== undefined && env.AWS_BATCH_JOB_ARRAY_INDEX !== '') {
    const idx = intFrom(env.AWS_BATCH_JOB_ARRAY_INDEX, 'AWS_BATCH_JOB_ARRAY_INDEX')!;
    const world = explicitWorld ?? intFrom(env.AWS_BATCH_JOB_ARRAY_SIZE, 'AWS_BATCH_JOB_ARRAY_SIZE');
    if (world === undefined) {
      throw new ConfigError('AWS_BATCH_JOB_ARRAY_INDEX is set but the array size is unknown: set RHO_WORLD_SIZE (or AWS_BATCH_JOB_ARRAY_SIZE) in the job definition, or pass --world-size');
    }
    r = { rank: idx, worldSize: world, from: 'aws-batch' };
  } else {
    r = { rank: 0, worldSize: explicitWorld ?? 1, from: explicitWorld !== undefined ? 'flags' : 'single' };
    if (r.worldSize > 1) throw new ConfigError(`--world-size ${r.worldSize} without --rank, and no scheduler index in the environment (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX): pass --rank`);
  }
  if (r.worldSize < 1) throw new ConfigError(`world size must be >= 1 (got ${r.worldSize}, from ${r.from})`);
  if (r.rank < 0 || r.rank >= r.worldSize) {
    throw new ConfigError(`rank ${r.rank} is outside 0..${r.worldSize - 1} (world size ${r.worldSize}, from ${r.from}): ranks count from 0 and must be below the world size`);
  }
  return r;
}

const JUMP_MUL = 2862933555777941757n;
const MASK64 = (1n << 64n) - 1n;

/**
 * The rank that owns a unit: jump consistent hash (Lamping & Veach 2014) of sha256(unitName). Depends only on
 * the name and the world size, so it is the same in every runner and after inputs are added; growing the
 * world from N to N+1 moves only ~1/(N+1) of the units.
 */
export function ownerOf(unitName: string, worldSize: number): number {
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new RangeError(`worldSize must be a positive integer (got ${worldSize})`);
  let key = createHash('sha256').update(unitName).digest().readBigUInt64BE(0);
  let b = -1;
  let j = 0;
  while (j < worldSize) {
    b = j;
    key = (key * JUMP_MUL + 1n) & MASK64;
    j = Math.floor((b + 1) * (2 ** 31 / Number((key >> 33n) + 1n)));
  }
  return b;
}

/** Where the world size of an output is recorded, the first time a sharded run (world size > 1) starts. */
export const WORLD_PATH = '_rho/world.json';

/**
 * Record the world size in the output, or refuse one that disagrees: runners of two world sizes would each
 * skip units the other believes it owns, so a unit could be scored twice or by nobody until the end.
 * Finished units stay valid under any world size; to change it on purpose, delete `_rho/world.json` once no
 * runner of the old size is still running.
 */
export async function checkWorldSize(store: OutputStore, r: Rank): Promise<void> {
  const mine = JSON.stringify({ world_size: r.worldSize }) + '\n';
  if (await store.createExclusive(WORLD_PATH, new TextEncoder().encode(mine))) return;
  const bytes = await store.read(WORLD_PATH);
  if (!bytes) return;
  let recorded: number;
  try {
    recorded = (JSON.parse(new TextDecoder().decode(bytes)) as { world_size: number }).world_size;
  } catch (e) {
    throw new ConfigError(`${store.root}/${WORLD_PATH}: not valid JSON (${(e as Error).message}); delete it if no runner is running`);
  }
  if (recorded !== r.worldSize) {
    throw new ConfigError(`${store.root} is being scored by ${recorded} ranks (${WORLD_PATH}) but this runner has world size ${r.worldSize} (from ${r.from}); use --world-size ${recorded}, or delete ${WORLD_PATH} once no runner of the old size is running (finished units are kept)`);
  }
}
