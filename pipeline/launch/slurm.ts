// `rho launch slurm`: one sbatch array job whose tasks are the ranks of one `rho score` configuration.
// Task i runs `rho score ... --world-size N` with SLURM_ARRAY_TASK_ID = i as its rank (see rank.ts), so a
// resubmission of the whole array, or of some task ids, finishes exactly the units still missing.
import { execFile } from 'node:child_process';
import { ConfigError } from '../../schemas/errors.js';

export interface SlurmLaunch {
  /** Tasks in the array = the world size. */
  tasks: number;
  /** `%` limit: at most this many tasks run at once. */
  concurrency?: number;
  jobName: string;
  partition?: string;
  gpusPerTask?: number;
  cpusPerTask?: number;
  /** sbatch --mem, e.g. 32G. */
  mem?: string;
  /** sbatch --time, e.g. 04:00:00. */
  time?: string;
  /** Log file pattern (%A job id, %a task id); appended to across requeues. */
  output: string;
  /** Extra `#SBATCH` options, verbatim (e.g. --account=x, --qos=y, --constraint=a100). */
  sbatch: string[];
  /** Shell lines run before rho (module load ..., source venv, export ...). */
  setup: string[];
  /** How to invoke rho on the nodes, e.g. `rho`, `/opt/rho/bin/rho`, `srun --container-image=img rho`. */
  rhoCommand: string;
  /** `rho score` options (everything after `--`), without --rank/--world-size. */
  scoreArgs: string[];
  /** Seconds before the time limit at which a task requeues itself (0: never). */
  requeueBeforeLimitSeconds: number;
}

/** POSIX shell quoting: safe for any string, readable for the common ones. */
export function shellQuote(s: string): string {
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Check the pass-through `rho score` options that a launcher must control. */
export function checkScoreArgs(args: string[]): void {
  if (args.length === 0) throw new ConfigError('no `rho score` options after `--`: e.g. rho launch slurm --tasks 4 -- --model m.onnx --tokenizer t.json --input "s3://b/*.jsonl" --output s3://b/out');
  for (const a of args) {
    if (/^--(rank|world-size)(=|$)/.test(a)) throw new ConfigError(`${a.split('=')[0]} is set by the launcher (each task's rank comes from the scheduler; the world size is --tasks); remove it from the options after --`);
  }
  for (const need of ['--output', '--input', '--model', '--tokenizer']) {
    if (!args.some((a) => a === need || a.startsWith(`${need}=`))) throw new ConfigError(`the options after -- have no ${need}: every task must run the same complete \`rho score\` configuration`);
  }
}

export function slurmScript(o: SlurmLaunch): string {
  if (!Number.isInteger(o.tasks) || o.tasks < 1) throw new ConfigError(`--tasks must be a positive integer (got ${o.tasks})`);
  if (o.concurrency !== undefined && (!Number.isInteger(o.concurrency) || o.concurrency < 1)) throw new ConfigError(`--concurrency must be a positive integer (got ${o.concurrency})`);
  checkScoreArgs(o.scoreArgs);
  const lines = ['#!/bin/bash', `# Written by \`rho launch slurm\`: ${o.tasks} ranks of one \`rho score\` run. Resubmit this file to finish what is missing.`];
  const sb = (opt: string) => lines.push(`#SBATCH ${opt}`);
  sb(`--job-name=${o.jobName}`);
  sb(`--array=0-${o.tasks - 1}${o.concurrency ? `%${o.concurrency}` : ''}`);
  if (o.partition) sb(`--partition=${o.partition}`);
  sb('--ntasks=1');
  if (o.gpusPerTask) sb(`--gpus-per-task=${o.gpusPerTask}`);
  if (o.cpusPerTask) sb(`--cpus-per-task=${o.cpusPerTask}`);
  if (o.mem) sb(`--mem=${o.mem}`);
  if (o.time) sb(`--time=${o.time}`);
  sb(`--output=${o.output}`);
  // Requeued tasks (node failure, preemption, time limit) write to the same log.
  sb('--open-mode=append');
  sb('--requeue');
  if (o.requeueBeforeLimitSeconds > 0) sb(`--signal=B:USR1@${o.requeueBeforeLimitSeconds}`);
  for (const s of o.sbatch) sb(s);
  lines.push('', 'set -euo pipefail');
  for (const s of o.setup) lines.push(s);
  lines.push(
    '',
    `export RHO_WORLD_SIZE=${o.tasks}`,
    'echo "rho: task ${SLURM_ARRAY_TASK_ID} of ${RHO_WORLD_SIZE} on $(hostname), job ${SLURM_ARRAY_JOB_ID}, restart ${SLURM_RESTART_COUNT:-0}" >&2',
  );
  if (o.requeueBeforeLimitSeconds > 0) {
    lines.push(
      '# Near the time limit Slurm sends USR1: stop rho (it releases its claims; finished units stay done) and',
      '# requeue this task, which then resumes with the units still missing.',
      'requeue() {',
      '  echo "rho: time limit near: requeueing ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" >&2',
      '  kill -TERM "$child" 2>/dev/null || true',
      '  wait "$child" || true',
      '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
      '  exit 0',
      '}',
      'trap requeue USR1',
    );
  }
  const cmd = [o.rhoCommand, 'score', '--world-size', String(o.tasks), ...o.scoreArgs.map(shellQuote)].join(' ');
  lines.push(`${cmd} &`, 'child=$!', 'wait "$child"', '');
  return lines.join('\n');
}

/**
 * The follow-up step: `rho manifest OUTPUT` as a one-task job that starts when every task of the array has
 * ended (afterany: also after failures, so the manifest shows what is there). The last rank to finish writes
 * manifest.json itself; this covers ranks that were requeued, cancelled or finished out of order.
 */
export function manifestStepArgs(o: Pick<SlurmLaunch, 'jobName' | 'output' | 'partition' | 'sbatch' | 'setup' | 'rhoCommand' | 'scoreArgs'>, arrayJobId: string): string[] {
  const value = (flag: string): string | undefined => {
    const i = o.scoreArgs.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
    if (i < 0) return undefined;
    return o.scoreArgs[i].startsWith(`${flag}=`) ? o.scoreArgs[i].slice(flag.length + 1) : o.scoreArgs[i + 1];
  };
  const output = value('--output');
  if (!output) throw new ConfigError('the options after -- have no --output');
  const endpoint = value('--s3-endpoint');
  const cmd = [...o.setup, [o.rhoCommand, 'manifest', shellQuote(output), ...(endpoint ? ['--s3-endpoint', shellQuote(endpoint)] : [])].join(' ')].join(' && ');
  return [
    '--parsable', `--dependency=afterany:${arrayJobId}`, `--job-name=${o.jobName}-manifest`, '--ntasks=1',
    `--output=${o.output.replace('%A_%a', '%j_manifest').replace('%a', 'manifest')}`,
    ...(o.partition ? [`--partition=${o.partition}`] : []), ...o.sbatch, `--wrap=${cmd}`,
  ];
}

/** sbatch with arguments (the follow-up step); the job id. */
export function submitSlurmArgs(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sbatch', args, { env }, (err, out, stderr) => {
      if (err) reject(new ConfigError(`sbatch ${args.slice(0, 3).join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(out.trim().split(';')[0]);
    });
  });
}

/** sbatch the script; the job id. */
export function submitSlurm(scriptPath: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sbatch', ['--parsable', scriptPath], { env }, (err, out, stderr) => {
      if (err) {
        const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
        reject(new ConfigError(missing ? 'sbatch not found: run `rho launch slurm` on a Slurm login node, or use --dry-run to print the script' : `sbatch ${scriptPath} failed: ${stderr.trim() || err.message}`));
      } else resolve(out.trim().split(';')[0]);
    });
  });
}
