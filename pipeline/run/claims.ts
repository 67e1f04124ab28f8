// Claims with leases: which runner works on which unit, so that concurrent runners (extra workers, or the
// same command launched twice) split the work instead of doing it twice.
//
// Protocol (needs only "create if absent", which local disks and S3's If-None-Match: * both give):
// a claim is `_rho/claims/<unit>.g<N>.json`, N = 0, 1, ... The current claim of a unit is its highest N.
// A runner claims a unit by creating g0; if a claim exists and its lease has expired (the runner died) or
// was released after a failure, the next runner takes over by creating g(N+1) — only one creation of a given
// N can succeed. The owner renews its lease every lease/3 by rewriting its own file. After the unit's
// completion record is written, its claims are deleted.
//
// Safety does not rest on the lease nor on deterministic outputs: a unit is committed by creating its
// completion record exclusively (commit.ts), and a runner checks its lease just before (holds()), so a
// paused runner that wakes up after losing its lease drops its work; if two runners still race, one record
// wins and only the winner's file becomes visible.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { OutputStore } from '../../schemas/store.js';
import { LAYOUT } from '../../schemas/layout.js';

export interface ClaimBody {
  unit: string;
  gen: number;
  runner: string;
  host: string;
  pid: number;
  rank: number;
  /** ms since the epoch; wall clock of the runner's host (leases must exceed clock skew between hosts) */
  expires_at: number;
  state: 'working' | 'failed';
  error?: string;
}

export const DEFAULT_LEASE_SECONDS = 600;

const claimFile = (unit: string, gen: number) => `${LAYOUT.claimsDir}/${unit}.g${gen}.json`;

export async function readClaims(store: OutputStore, unit: string): Promise<ClaimBody[]> {
  const dir = unit.slice(0, unit.lastIndexOf('/'));
  const base = unit.slice(unit.lastIndexOf('/') + 1);
  const out: ClaimBody[] = [];
  for (const rel of await store.list(`${LAYOUT.claimsDir}/${dir}`)) {
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    if (!name.startsWith(`${base}.g`) || !name.endsWith('.json')) continue;
    const bytes = await store.read(rel);
    if (!bytes) continue;
    try {
      out.push(JSON.parse(new TextDecoder().decode(bytes)) as ClaimBody);
    } catch {
      // A claim file is written whole (atomic create); an unreadable one is treated as expired.
      out.push({ unit, gen: Number(name.slice(base.length + 2, -5)), runner: '?', host: '?', pid: 0, rank: -1, expires_at: 0, state: 'failed', error: 'unreadable claim' });
    }
  }
  return out.sort((a, b) => a.gen - b.gen);
}

/**
 * A claim is live while its lease runs and it was not released. A claim made on this host by a process
 * that no longer exists is dead at once: a rerun after a crash need not wait for the lease.
 */
export function isLive(c: ClaimBody, now = Date.now()): boolean {
  if (c.state !== 'working' || c.expires_at <= now) return false;
  if (c.host === hostname() && c.pid !== process.pid && !processExists(c.pid)) return false;
  return true;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Claims {
  readonly runner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly held = new Map<string, ClaimBody>();
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<unknown> = Promise.resolve();

  constructor(private readonly store: OutputStore, private readonly rank: number, private readonly leaseMs = DEFAULT_LEASE_SECONDS * 1000) {}

  /** Try to own `unit`. False when another runner holds a live claim, or won the race for it. */
  async acquire(unit: string): Promise<boolean> {
    const claims = await readClaims(this.store, unit);
    const top = claims.at(-1);
    if (top && isLive(top)) return false;
    const gen = top ? top.gen + 1 : 0;
    const body: ClaimBody = { unit, gen, runner: this.runner, host: hostname(), pid: process.pid, rank: this.rank, expires_at: Date.now() + this.leaseMs, state: 'working' };
    if (!(await this.store.createExclusive(claimFile(unit, gen), encode(body)))) return false;
    this.held.set(unit, body);
    this.startRenewal();
    return true;
  }

  /** The fence before committing: this runner holds `unit` and its lease has not run out. */
  holds(unit: string, now = Date.now()): boolean {
    const c = this.held.get(unit);
    return c !== undefined && c.expires_at > now;
  }

  /** Another runner committed `unit`: stop renewing it and delete this runner's own claim file (the winner clears the rest). */
  async drop(unit: string): Promise<void> {
    const body = this.held.get(unit);
    this.held.delete(unit);
    await this.renewing;
    if (body) await this.store.remove(claimFile(unit, body.gen)).catch(() => undefined);
  }

  /** The unit is done (its completion record exists): drop every claim file of it. */
  async finish(unit: string): Promise<void> {
    this.held.delete(unit);
    await this.renewing; // a renewal in flight must not recreate a claim file deleted below
    for (const c of await readClaims(this.store, unit)) await this.store.remove(claimFile(unit, c.gen));
  }

  /** Give up every held claim, marking it failed with the error so `rho status` can show it; others may take over at once. */
  async releaseAll(error: string | null): Promise<void> {
    this.stopRenewal();
    await this.renewing;
    for (const [unit, body] of this.held) {
      const released: ClaimBody = { ...body, expires_at: 0, state: 'failed', error: error ?? 'runner stopped before finishing this unit' };
      await this.store.writeAtomic(claimFile(unit, body.gen), encode(released)).catch(() => undefined);
    }
    this.held.clear();
  }

  private startRenewal(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      const now = Date.now();
      // A lease that ran out (the process was paused or starved) is never revived: another runner may own the
      // unit now, and holds() keeps answering false for it.
      const writes = [...this.held].filter(([, body]) => body.expires_at > now).map(([unit, body]) => {
        body.expires_at = now + this.leaseMs;
        return this.store.writeAtomic(claimFile(unit, body.gen), encode(body)).catch(() => undefined);
      });
      this.renewing = Promise.all([this.renewing, ...writes]);
    }, Math.max(1000, this.leaseMs / 3));
    this.timer.unref();
  }

  stopRenewal(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

function encode(body: ClaimBody): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(body) + '\n');
}
