// Start a service once per test file; skip loudly only where it truly cannot run, and never in CI.
import type { ExecutionContext } from 'ava';
import { ServiceUnavailable } from '../services/ports.js';

export async function startOrSkip<T>(start: () => Promise<T>): Promise<{ service: T | null; why: string | null }> {
  try {
    return { service: await start(), why: null };
  } catch (e) {
    if (e instanceof ServiceUnavailable && process.env.CI !== 'true') return { service: null, why: e.message };
    throw e;
  }
}

/** For a test body: the service, or a logged skip (outside CI only). */
export function need<T>(t: ExecutionContext, s: { service: T | null; why: string | null }): T | null {
  if (s.service) return s.service;
  t.log(`SKIPPED: ${s.why}`);
  t.pass();
  return null;
}
