// A real single-node Slurm cluster for tests (slurm.sh does the set-up, ~1-2 s). One per test file; state in
// a temp dir removed by stop(). Clients (sbatch, squeue, scontrol) need `env` (SLURM_CONF).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ServiceUnavailable } from './ports.js';

const SCRIPT = fileURLToPath(new URL('../../../test/services/slurm.sh', import.meta.url));

export interface Slurm {
  dir: string;
  env: Record<string, string>;
  /** Resolves when none of the job's tasks is pending or running any more. */
  waitJob(jobId: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, out, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(out)));
  });
}

export async function startSlurm(): Promise<Slurm> {
  for (const bin of ['slurmctld', 'slurmd', 'munged', 'mungekey', 'sbatch']) {
    if (!['/usr/bin', '/usr/sbin'].some((d) => existsSync(join(d, bin)))) {
      throw new ServiceUnavailable(`${bin} is not installed (apt-get install --no-install-recommends slurm-wlm munge)`);
    }
  }
  if (process.getuid?.() !== 0) throw new ServiceUnavailable('the test Slurm cluster runs its daemons as root');
  const dir = mkdtempSync(join(tmpdir(), 'rho-slurm-'));
  const env = { SLURM_CONF: join(dir, 'slurm.conf') };
  const stop = async () => {
    for (const f of existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.pid')) : []) {
      try { process.kill(Number(readFileSync(join(dir, f), 'utf8').trim()), 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await run(SCRIPT, [dir, String(await freePort()), String(await freePort())], {});
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    dir, env, stop,
    async waitJob(jobId, timeoutMs = 240_000) {
      const t0 = Date.now();
      for (;;) {
        const out = await run('squeue', ['-h', '-j', jobId, '-o', '%i %T'], env).catch(() => '');
        if (out.trim() === '') return;
        if (Date.now() - t0 > timeoutMs) throw new Error(`Slurm job ${jobId} still running after ${timeoutMs} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 300));
      }
    },
  };
}
