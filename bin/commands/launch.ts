// `rho launch slurm|k8s [options] -- <rho score options>`: run one scoring configuration as N ranks on a
// scheduler. Everything after `--` is passed to every task's `rho score` unchanged.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { slurmScript, submitSlurm, submitSlurmArgs, manifestStepArgs } from '../../pipeline/launch/slurm.js';
import { k8sManifest, toYaml } from '../../pipeline/launch/k8s.js';
import { exitCodeOf } from '../../schemas/errors.js';

/** The `rho score` options: everything after the first `--` on the command line. */
function scoreArgs(): string[] {
  const i = process.argv.indexOf('--');
  return i < 0 ? [] : process.argv.slice(i + 1);
}

const common = (y: Argv) =>
  y
    .option('tasks', { type: 'number', demandOption: true, describe: 'Ranks (array tasks / pods) = the world size. Units are split among them by a stable hash' })
    .option('job-name', { type: 'string', default: 'rho-score', describe: 'Job name' })
    .option('gpus-per-task', { type: 'number', describe: 'GPUs per task (pass --device cuda to rho score after --)' })
    .option('cpus-per-task', { type: 'number', describe: 'CPU cores per task' })
    .option('mem', { type: 'string', describe: 'Memory per task (Slurm: 32G; Kubernetes: 32Gi)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'Print the script/manifest on stdout; submit and write nothing' });

interface SlurmArgs {
  tasks: number; 'job-name': string; 'gpus-per-task'?: number; 'cpus-per-task'?: number; mem?: string; 'dry-run': boolean;
  concurrency?: number; partition?: string; time?: string; 'log-dir': string; sbatch: string[]; setup: string[];
  'rho-command': string; 'requeue-before-limit': number; script?: string;
}

const slurm: CommandModule<object, SlurmArgs> = {
  command: 'slurm',
  describe: 'Write an sbatch array job (one task per rank) running the given `rho score` configuration, and submit it',
  builder: (y) =>
    common(y)
      .usage('$0 launch slurm --tasks N [options] -- <rho score options>')
      .option('concurrency', { type: 'number', describe: 'At most this many tasks at once (--array=0-N%K)' })
      .option('partition', { type: 'string', describe: 'Slurm partition' })
      .option('time', { type: 'string', describe: 'Time limit per task (e.g. 04:00:00); a task requeues itself shortly before it' })
      .option('log-dir', { type: 'string', default: 'rho-logs', describe: 'Folder of the task logs (<job>_<task>.log); must exist on the nodes' })
      .option('sbatch', { type: 'string', array: true, default: [], describe: 'Extra #SBATCH option, verbatim (repeatable): --sbatch=--account=abc --sbatch=--qos=high' })
      .option('setup', { type: 'string', array: true, default: [], describe: 'Shell line run before rho (repeatable): "module load cuda/12", "source venv/bin/activate"' })
      .option('rho-command', { type: 'string', default: resolve(process.argv[1] ?? 'rho'), describe: 'How tasks start rho (e.g. rho, "srun --container-image=img rho", "apptainer exec rho.sif rho")' })
      .option('requeue-before-limit', { type: 'number', describe: 'Seconds before the time limit at which a task stops and requeues itself (default 120 with --time, else off)' })
      .option('script', { type: 'string', describe: 'Where to write the sbatch script (default: <log-dir>/<job-name>.sbatch)' }) as never,
  handler: async (a) => {
    try {
      const logDir = resolve(a['log-dir']);
      const text = slurmScript({
        tasks: a.tasks, concurrency: a.concurrency, jobName: a['job-name'], partition: a.partition,
        gpusPerTask: a['gpus-per-task'], cpusPerTask: a['cpus-per-task'], mem: a.mem, time: a.time,
        output: `${logDir}/%A_%a.log`, sbatch: a.sbatch.map(String), setup: a.setup.map(String), rhoCommand: a['rho-command'],
        scoreArgs: scoreArgs(), requeueBeforeLimitSeconds: a['requeue-before-limit'] ?? (a.time ? 120 : 0),
      });
      if (a['dry-run']) {
        process.stdout.write(text);
        return;
      }
      const { mkdirSync } = await import('node:fs');
      mkdirSync(logDir, { recursive: true });
      const path = resolve(a.script ?? `${logDir}/${a['job-name']}.sbatch`);
      writeFileSync(path, text, { mode: 0o755 });
      const jobId = await submitSlurm(path);
      process.stderr.write(`rho: submitted ${path} as Slurm job ${jobId} (${a.tasks} tasks); logs: ${logDir}/${jobId}_<task>.log; progress: rho status <output>\n`);
      // Follow-up: rho manifest once every task has ended (the last rank usually wrote it already).
      const manifestJob = await submitSlurmArgs(manifestStepArgs({
        jobName: a['job-name'], output: `${logDir}/%A_%a.log`, partition: a.partition, sbatch: a.sbatch.map(String), setup: a.setup.map(String), rhoCommand: a['rho-command'], scoreArgs: scoreArgs(),
      }, jobId));
      process.stderr.write(`rho: submitted the manifest step as Slurm job ${manifestJob} (after ${jobId})\n`);
      process.stdout.write(`${jobId}\n`);
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
  },
};

interface K8sArgs {
  tasks: number; 'job-name': string; 'gpus-per-task'?: number; 'cpus-per-task'?: number; mem?: string; 'dry-run': boolean;
  image: string; parallelism?: number; 'backoff-limit-per-index': number; 'gpu-resource': string; namespace?: string;
  'env-secret'?: string; 'service-account'?: string; 'rho-command': string; manifest?: string;
}

const k8s: CommandModule<object, K8sArgs> = {
  command: 'k8s',
  describe: 'Write a Kubernetes Indexed Job manifest (one pod per rank) running the given `rho score` configuration',
  builder: (y) =>
    common(y)
      .usage('$0 launch k8s --tasks N --image IMAGE [options] -- <rho score options>')
      .option('image', { type: 'string', demandOption: true, describe: 'Container image with rho installed' })
      .option('parallelism', { type: 'number', describe: 'Pods at once (default: --tasks)' })
      .option('backoff-limit-per-index', { type: 'number', default: 3, describe: 'Retries of one failing index before it counts as failed (Kubernetes >= 1.29)' })
      .option('gpu-resource', { type: 'string', default: 'nvidia.com/gpu', describe: 'Resource name of a GPU' })
      .option('namespace', { type: 'string', describe: 'Namespace of the Job' })
      .option('env-secret', { type: 'string', describe: 'Secret whose keys become env vars (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION...)' })
      .option('service-account', { type: 'string', describe: 'Service account of the pods (e.g. one bound to an IAM role for S3)' })
      .option('rho-command', { type: 'string', default: 'rho', describe: 'Command that starts rho in the image (space-separated)' })
      .option('manifest', { type: 'string', describe: 'Write the manifest here (default: <job-name>.yaml)' }) as never,
  handler: async (a) => {
    try {
      const text = toYaml(k8sManifest({
        name: a['job-name'], image: a.image, tasks: a.tasks, parallelism: a.parallelism, backoffLimitPerIndex: a['backoff-limit-per-index'],
        gpusPerTask: a['gpus-per-task'], gpuResource: a['gpu-resource'], cpusPerTask: a['cpus-per-task'], mem: a.mem,
        namespace: a.namespace, envSecret: a['env-secret'], serviceAccount: a['service-account'],
        rhoCommand: a['rho-command'].split(' ').filter(Boolean), scoreArgs: scoreArgs(),
      }));
      if (a['dry-run']) {
        process.stdout.write(text);
        return;
      }
      const path = resolve(a.manifest ?? `${a['job-name']}.yaml`);
      writeFileSync(path, text);
      process.stderr.write(`rho: wrote ${path}; start it with: kubectl apply -f ${path}   (to finish missing units later: kubectl delete job ${a['job-name']} && kubectl apply -f ${path})\n`);
      process.stdout.write(`${path}\n`);
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
  },
};

export const launchCommand: CommandModule<object, object> = {
  command: 'launch',
  describe: 'Run one `rho score` configuration as N ranks on Slurm (array job) or Kubernetes (Indexed Job)',
  builder: (y) => y.command(slurm as CommandModule).command(k8s as CommandModule).demandCommand(1, 'name a scheduler: slurm or k8s'),
  handler: () => {},
};
