// SIGINT/SIGTERM during a run: say what happened and how to resume, give up held claims (marked failed, so
// another runner takes the units over at once), and remove this process's temporary files. Finished units
// are durable (atomic data file + completion record), so a rerun of the same command resumes.
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

type Cleanup = (signal: string) => Promise<void>;
const cleanups = new Set<Cleanup>();

/** Something a run must undo or release when it is interrupted; returns the function that unregisters it. */
export function onInterrupt(f: Cleanup): () => void {
  cleanups.add(f);
  return () => cleanups.delete(f);
}

/** This process's `*.tmp` files under a local output dir (temp names carry the pid: `<file>.<pid>.<x>.tmp`). */
export function removeOwnTempFiles(root: string, pid = process.pid): string[] {
  const removed: string[] = [];
  const mine = new RegExp(`\\.${pid}\\.[A-Za-z0-9]+\\.tmp$`);
  const walk = (dir: string) => {
    let names: string[];
    try { names = readdirSync(dir); } catch { return; }
    for (const n of names) {
      const p = join(dir, n);
      let isDir = false;
      try { isDir = statSync(p).isDirectory(); } catch { continue; }
      if (isDir) walk(p);
      else if (mine.test(n)) { rmSync(p, { force: true }); removed.push(p); }
    }
  };
  walk(root);
  return removed;
}

/**
 * Install the handlers for one command. `describe` says what was done so far and how to resume. The process
 * exits 130 (SIGINT) or 143 (SIGTERM), as shells expect of a process ended by that signal.
 */
export function handleInterrupts(opts: { command: string; output: string; describe: () => string }): () => void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return; // a second signal while cleaning up: keep cleaning (SIGKILL still works)
    stopping = true;
    const code = signal === 'SIGINT' ? 130 : 143;
    process.stderr.write(`\nrho ${opts.command}: interrupted by ${signal}; stopping (releasing claims, removing temporary files)\n`);
    const timeout = setTimeout(() => process.exit(code), 10_000);
    timeout.unref();
    void (async () => {
      for (const f of cleanups) await f(signal).catch(() => undefined);
      const removed = /^[a-z][a-z0-9+.-]*:\/\//i.test(opts.output) ? [] : removeOwnTempFiles(opts.output);
      process.stderr.write(`rho ${opts.command}: ${opts.describe()}${removed.length ? `; removed ${removed.length} temporary file(s)` : ''}\n`);
      process.exit(code);
    })();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}
