// Start a service once per test file. Whether the file's tests run at all is decided at load time by
// test/requirements.ts (missing programs: the tests fail with the install hint, or are ava skips with
// RHO_ALLOW_SKIP=1); here a service whose programs are present but which does not start is an error.
import { missingAny, type RequirementName } from '../requirements.js';

export interface Started<T> { service: T | null; why: string | null }

/** Start the service unless a requirement is missing (then the gated tests do not use it). */
export async function startService<T>(needs: RequirementName[], start: () => Promise<T>): Promise<Started<T>> {
  const why = missingAny(needs);
  if (why) return { service: null, why };
  return { service: await start(), why: null };
}

/** The started service, for a test body (only reached when the requirements are met). */
export function need<T>(s: Started<T> | undefined): T {
  if (!s?.service) throw new Error(`service not started: ${s?.why ?? 'test.before did not run'}`);
  return s.service;
}
