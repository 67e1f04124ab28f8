// The skip policy, in one place. A test that needs something outside npm (test/requirements.json: PyTorch,
// zstd, Slurm, Ceph, Chromium, kubectl, root) is registered through `requires(...)`:
//   - everything present            -> the ordinary ava test;
//   - something missing (default)   -> the test FAILS with what is missing and how to install it;
//   - missing and RHO_ALLOW_SKIP=1  -> ava's own `test.skip` (shown in the closing "N tests skipped" count).
// No test decides on its own not to test and passes. `npm test` installs the Debian packages before this runs
// (scripts/test-deps.mjs, the same list), so on a machine where that worked nothing here is missing.
import test, { type ExecutionContext, type Implementation } from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ALLOW_SKIP = process.env.RHO_ALLOW_SKIP === '1';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Requirement {
  name: string;
  what: string;
  debian: string[];
  bins: string[];
  python?: string[];
  minVersion?: string;
  root?: boolean;
  hint?: string;
}
export type RequirementName = 'python' | 'zstd' | 'slurm' | 'ceph' | 'chromium' | 'kubectl' | 'root';

const LIST = (JSON.parse(readFileSync(join(ROOT, 'test', 'requirements.json'), 'utf8')) as { requirements: Requirement[] }).requirements;
const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'].filter(Boolean);

/** Absolute path of a program (PATH plus the sbin folders), or null. */
export function findBin(b: string): string | null {
  if (b.startsWith('/')) return existsSync(b) ? b : null;
  return SEARCH.map((d) => join(d, b)).find((p) => existsSync(p)) ?? null;
}

const cache = new Map<string, string | null>();

/** What of the requirement is missing here, with the install hint; null when it is met. */
export function missing(name: RequirementName): string | null {
  if (cache.has(name)) return cache.get(name)!;
  const req = LIST.find((r) => r.name === name);
  if (!req) throw new Error(`test/requirements.json has no requirement named ${name}`);
  const gaps: string[] = [];
  for (const b of req.bins) if (!findBin(b)) gaps.push(`${b} not found`);
  if (req.python?.length && gaps.length === 0) {
    const r = spawnSync('/usr/bin/python3', ['-c', 'import importlib.util, sys; m = [x for x in sys.argv[1:] if importlib.util.find_spec(x) is None]; print(" ".join(m)); sys.exit(1 if m else 0)', ...req.python], { encoding: 'utf8' });
    if (r.status !== 0) gaps.push(`/usr/bin/python3 cannot import ${r.stdout.trim() || r.stderr.trim()}`);
  }
  if (req.minVersion && gaps.length === 0) {
    const r = spawnSync(findBin(req.bins[0]!)!, ['version', '--client', '-o', 'json'], { encoding: 'utf8' });
    let v = '';
    try { const c = JSON.parse(r.stdout).clientVersion; v = `${parseInt(c.major, 10)}.${parseInt(c.minor, 10)}`; } catch { /* unreadable */ }
    const [a = 0, b = 0] = v ? v.split('.').map(Number) : [];
    const [x = 0, y = 0] = req.minVersion.split('.').map(Number);
    if (!v || a < x || (a === x && b < y)) gaps.push(`${req.bins[0]} ${v || '(version unreadable)'} is older than ${req.minVersion}`);
  }
  if (req.root && process.getuid?.() !== 0) gaps.push('not running as root');
  // For testing this policy itself without uninstalling anything: RHO_TEST_PRETEND_MISSING=python,chromium
  if ((process.env.RHO_TEST_PRETEND_MISSING ?? '').split(',').includes(name)) gaps.push('pretended missing (RHO_TEST_PRETEND_MISSING)');
  const how = req.hint ?? `npm test installs it when run as root, or: apt-get install --no-install-recommends ${req.debian.join(' ')}`;
  const out = gaps.length ? `${req.what}: ${gaps.join('; ')}. Install: ${how}` : null;
  cache.set(name, out);
  return out;
}

/** The first missing requirement of the list, or null. */
export function missingAny(names: RequirementName[]): string | null {
  for (const n of names) {
    const m = missing(n);
    if (m) return m;
  }
  return null;
}

type Register = (title: string, impl: Implementation<[]>) => void;
export interface Gated extends Register { serial: Register }

/** `test` (and `.serial`) for tests that need these requirements; see the header for what happens when one is missing. */
export function requires(...names: RequirementName[]): Gated {
  const why = missingAny(names);
  const skipTitle = (title: string) => `${title} [skipped: ${why}]`;
  const fail = (t: ExecutionContext) => t.fail(`cannot run: ${why} (RHO_ALLOW_SKIP=1 would skip this test instead)`);
  if (!why) return Object.assign((title: string, impl: Implementation<[]>) => test(title, impl), { serial: (title: string, impl: Implementation<[]>) => test.serial(title, impl) });
  if (ALLOW_SKIP) return Object.assign((title: string) => test.skip(skipTitle(title), () => {}), { serial: (title: string) => test.serial.skip(skipTitle(title), () => {}) });
  return Object.assign((title: string) => test(title, fail), { serial: (title: string) => test.serial(title, fail) });
}
