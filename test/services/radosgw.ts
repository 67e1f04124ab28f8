// A real S3 server for tests: Ceph radosgw over a one-OSD memstore cluster on 127.0.0.1 (radosgw.sh does
// the set-up, ~15 s). One instance per test file; state lives in a temp dir removed by stop().
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ServiceUnavailable } from './ports.js';

const SCRIPT = fileURLToPath(new URL('../../../test/services/radosgw.sh', import.meta.url));

export interface Radosgw {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Environment for a child `rho` process: credentials and region, as the AWS tools read them. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startRadosgw(): Promise<Radosgw> {
  for (const bin of ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph-authtool']) {
    if (!['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => existsSync(join(d, bin)))) {
      throw new ServiceUnavailable(`${bin} is not installed (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common)`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'rho-rgw-'));
  const monPort = await freePort();
  const rgwPort = await freePort();
  const accessKeyId = 'RHOTESTACCESSKEY';
  const secretAccessKey = 'rho-test-secret-key-0123456789';
  const stop = async () => {
    const run = join(dir, 'run');
    if (existsSync(run)) {
      for (const f of readdirSync(run).filter((n) => n.endsWith('.pid'))) {
        const pid = Number(readFileSync(join(run, f), 'utf8').trim());
        try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      execFile(SCRIPT, [dir, String(monPort), String(rgwPort), accessKeyId, secretAccessKey], { timeout: 90_000 }, (err, _out, stderr) => {
        if (err) reject(new Error(`radosgw set-up failed: ${err.message}\n${stderr}`));
        else resolve();
      });
    });
  } catch (e) {
    await stop();
    throw e;
  }
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  return {
    endpoint, accessKeyId, secretAccessKey, stop,
    env: { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' },
  };
}
