// Fail points for crash tests (the fail-rs / FoundationDB habit): `RHO_CRASH_AT=<point>:<n>` makes the
// process SIGKILL itself the n-th time it passes <point>. Without the variable this is one string compare.
const spec = process.env.RHO_CRASH_AT;
const [target, countText] = spec ? spec.split(':') : [];
let remaining = countText ? Number(countText) : 1;

export type CrashPoint =
  | 'tokenized' | 'batch-dispatched' | 'batch-scored' | 'claim-acquired'
  | 'write-temp' | 'write-renamed' | 'unit-data-written' | 'unit-rejects-written' | 'unit-record-written' | 'unit-published' | 'summary-written' | 'manifest';

export function crashPoint(name: CrashPoint): void {
  if (target !== name) return;
  if (--remaining > 0) return;
  process.kill(process.pid, 'SIGKILL');
}
