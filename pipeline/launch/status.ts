// `rho status OUTPUT`: where a (possibly sharded) run stands, from what is in the output alone:
// completion records (done), claims (claimed / failed / expired), and the input list (missing units).
import { createHash } from 'node:crypto';
import { readShard } from '../../stages/read.js';
import { ConfigError } from '../../schemas/errors.js';
import { readAllRecords, readRunInfo, READ_CONCURRENCY } from '../run/records.js';
import { mapLimit } from '../io/parallel.js';
import { isLive, type ClaimBody } from '../run/claims.js';
import { resolveInputs } from '../io/inputs.js';
import { assignShardKeys } from '../io/input-checks.js';
import { openerFor } from '../io/open.js';
import { ownerOf, WORLD_PATH } from '../run/rank.js';
import type { OutputStore } from '../../schemas/store.js';
import { LAYOUT, partName, recordKey, shardKey } from '../../schemas/layout.js';
import type { S3Options } from '../io/s3.js';

export type UnitState = 'done' | 'claimed' | 'failed' | 'missing';

export interface UnitStatus {
  unit: string;
  source: string;
  part: number;
  state: UnitState;
  /** The rank that owns the unit under the recorded world size. */
  owner: number;
  claim?: { runner: string; host: string; rank: number; expires_at: number; error?: string };
}

export interface RunStatus {
  output: string;
  world_size: number | null;
  unit_docs: number;
  inputs_from: 'flag' | 'manifest' | 'summaries' | 'none';
  shards: number;
  units: { total: number; done: number; claimed: number; failed: number; missing: number };
  docs_in: number;
  tokens: number;
  scored_tokens: number;
  /** Ranks that own units not done yet (failed, missing, or claimed by a live runner). */
  ranks_with_work: number[];
  complete: boolean;
  /** Every unit that is not done. */
  pending: UnitStatus[];
}

export interface StatusOptions {
  /** Input globs; default: the input list in manifest.json. */
  inputs?: string[];
  /** Overrides the recorded world size (or gives one for a run that has none recorded). */
  worldSize?: number;
  s3?: S3Options;
  now?: number;
}

/** Rows of a shard, counted with the reader itself so blank lines etc. count exactly as in `rho score`. */
async function countRows(source: string, s3: S3Options): Promise<number> {
  let rows = 0;
  const opener = await openerFor(source, s3);
  for await (const _ of readShard(source, { textField: '\u0000', skipRowsBefore: (r) => { rows = r + 1; return true; } }, opener)) {
    // Only unreadable-file rejects get here; they end the file.
  }
  return rows;
}

export async function runStatus(store: OutputStore, opts: StatusOptions = {}): Promise<RunStatus> {
  const configBytes = await store.read(LAYOUT.config);
  if (!configBytes) throw new ConfigError(`${store.root} is not a rho output (no ${LAYOUT.config}): nothing was started there, or the path is wrong`);
  const configText = new TextDecoder().decode(configBytes);
  const identity = JSON.parse(configText) as { unit_docs: number };
  const configSha = createHash('sha256').update(configText.replace(/\n$/, '')).digest('hex');

  let worldSize: number | null = opts.worldSize ?? null;
  const world = await store.read(WORLD_PATH);
  if (worldSize === null && world) worldSize = (JSON.parse(new TextDecoder().decode(world)) as { world_size: number }).world_size;

  // Summaries and records in parallel (records.ts), never one sequential GET per record.
  const stored = await readAllRecords(store);
  const records = stored.records.filter((r) => r.config_sha256 === configSha);
  const doneUnits = new Map(records.map((r) => [r.unit, r]));

  // Latest generation of each unit's claim (claims.ts: `<unit>.g<N>.json`): only that one is read.
  const latest = new Map<string, { gen: number; rel: string }>();
  for (const rel of await store.list(LAYOUT.claimsDir)) {
    const m = /^_rho\/claims\/(.+)\.g(\d+)\.json$/.exec(rel);
    if (!m) continue;
    const prev = latest.get(m[1]);
    if (!prev || prev.gen < Number(m[2])) latest.set(m[1], { gen: Number(m[2]), rel });
  }
  const claims = new Map<string, ClaimBody>();
  await mapLimit([...latest].filter(([unit]) => !doneUnits.has(unit)), READ_CONCURRENCY, async ([unit, { gen, rel }]) => {
    const bytes = await store.read(rel);
    if (!bytes) return;
    try {
      claims.set(unit, JSON.parse(new TextDecoder().decode(bytes)) as ClaimBody);
    } catch {
      claims.set(unit, { unit, gen, runner: '?', host: '?', pid: 0, rank: -1, expires_at: 0, state: 'failed', error: 'unreadable claim' });
    }
  });

  let inputs = opts.inputs;
  // Folders of the stored inputs (manifest shards, run info), by source.
  const storedKeys = new Map<string, string>();
  let inputsFrom: RunStatus['inputs_from'] = inputs?.length ? 'flag' : 'none';
  if (!inputs?.length) {
    const manifest = await store.read(LAYOUT.manifest);
    if (manifest) {
      const m = JSON.parse(new TextDecoder().decode(manifest)) as { provenance?: Record<string, string>; shards?: { source: string; key: string }[] };
      for (const sh of m.shards ?? []) storedKeys.set(sh.source, sh.key);
      const listed = m.provenance?.['rho.inputs'];
      if (listed) {
        inputs = (JSON.parse(listed) as { source: string }[]).map((s) => s.source);
        inputsFrom = 'manifest';
      }
    }
  }
  if (!inputs?.length && stored.runFile) {
    // No manifest yet (no rank was last): the input list the newest finished rank ran with.
    const run = await readRunInfo(store, stored.runFile);
    if (run) {
      inputs = run.inputs.map((s) => s.source);
      for (const s of run.inputs) if (s.key) storedKeys.set(s.source, s.key);
      inputsFrom = 'summaries';
    }
  }

  // Records grouped by shard folder once (not one pass over all records per input).
  const byKey = new Map<string, typeof records>();
  for (const r of records) {
    const key = recordKey(r);
    let list = byKey.get(key);
    if (!list) byKey.set(key, (list = []));
    list.push(r);
  }

  const now = opts.now ?? Date.now();
  const all: UnitStatus[] = [];
  const seen = new Set<string>();
  const classify = (source: string, key: string, part: number) => {
    const unit = `${key}/${partName(part)}`;
    if (seen.has(unit)) return;
    seen.add(unit);
    const owner = worldSize ? ownerOf(unit, worldSize) : 0;
    if (doneUnits.has(unit)) { all.push({ unit, source, part, state: 'done', owner }); return; }
    const c = claims.get(unit);
    const state: UnitState = !c ? 'missing' : isLive(c, now) ? 'claimed' : 'failed';
    all.push({ unit, source, part, state, owner, ...(c ? { claim: { runner: c.runner, host: c.host, rank: c.rank, expires_at: c.expires_at, ...(c.error || c.state === 'working' ? { error: c.error ?? 'lease expired: the runner stopped without releasing it' } : {}) } } : {}) });
  };

  let shardCount = 0;
  if (inputs?.length) {
    let shards: { source: string; key: string }[];
    if (inputsFrom === 'flag') {
      let resolved;
      try {
        resolved = await resolveInputs(inputs, opts.s3);
      } catch (e) {
        throw new ConfigError((e as Error).message);
      }
      // The folders this output dir gives those files (a later spelling maps onto the first one's folder).
      await assignShardKeys(store, resolved, false);
      shards = resolved;
    } else {
      // Recorded by rho score as resolved sources with their folders: no glob to expand, no request per input.
      shards = [...new Set(inputs)].map((source) => ({ source, key: storedKeys.get(source) ?? shardKey(source) }));
    }
    shardCount = shards.length;
    for (const s of shards) {
      const mine = (byKey.get(s.key) ?? []).sort((a, b) => a.part - b.part);
      const last = mine.at(-1);
      // Complete without reading the shard: parts 0..k all done and part k is short (the shard's end).
      let parts: number;
      if (last && last.docs_in < identity.unit_docs && mine.length === last.part + 1) parts = last.part + 1;
      else parts = Math.ceil((await countRows(s.source, opts.s3 ?? {})) / identity.unit_docs);
      for (let p = 0; p < parts; p++) classify(s.source, s.key, p);
    }
  }
  // Units known from records and claims, also when the input list is unknown or smaller.
  for (const r of records) classify(r.source, recordKey(r), r.part);
  for (const [unit] of claims) {
    if (seen.has(unit)) continue;
    // The claim names the unit itself: its shard folder is used as is (hashing it again named a unit that
    // does not exist).
    const key = unit.slice(0, unit.lastIndexOf('/'));
    const rec = byKey.get(key)?.[0];
    classify(rec?.source ?? key, key, Number(unit.slice(unit.lastIndexOf('part-') + 5)));
  }
  if (!inputs?.length) shardCount = new Set(all.map((u) => u.source)).size;

  const count = (s: UnitState) => all.filter((u) => u.state === s).length;
  const pending = all.filter((u) => u.state !== 'done').sort((a, b) => (a.unit < b.unit ? -1 : 1));
  return {
    output: store.root,
    world_size: worldSize,
    unit_docs: identity.unit_docs,
    inputs_from: inputsFrom,
    shards: shardCount,
    units: { total: all.length, done: count('done'), claimed: count('claimed'), failed: count('failed'), missing: count('missing') },
    docs_in: records.reduce((a, r) => a + r.docs_in, 0),
    tokens: records.reduce((a, r) => a + r.tokens, 0),
    scored_tokens: records.reduce((a, r) => a + r.scored_tokens, 0),
    ranks_with_work: [...new Set(pending.map((u) => u.owner))].sort((a, b) => a - b),
    complete: pending.length === 0 && inputsFrom !== 'none',
    pending,
  };
}

export function formatStatus(s: RunStatus): string {
  const u = s.units;
  const lines = [
    `rho status: ${s.output}`,
    `  units: ${u.done}/${u.total} done, ${u.claimed} claimed (running), ${u.failed} failed or abandoned, ${u.missing} missing`,
    `  scored: ${s.docs_in} documents, ${s.tokens} tokens (${s.scored_tokens} with a score), over ${s.shards} shards`,
    `  world size: ${s.world_size ?? 'not recorded (single runner)'}; ranks with work left: ${s.ranks_with_work.length ? s.ranks_with_work.join(',') : 'none'}`,
  ];
  if (s.inputs_from === 'none') lines.push('  (no input list: manifest.json is missing and no --input was given, so missing units of unstarted shards are not counted)');
  for (const p of s.pending.slice(0, 20)) {
    const c = p.claim ? ` by ${p.claim.runner} (rank ${p.claim.rank})${p.claim.error ? `: ${p.claim.error}` : ''}` : '';
    lines.push(`  ${p.state.padEnd(7)} ${p.unit}  rank ${p.owner}${c}`);
  }
  if (s.pending.length > 20) lines.push(`  ... and ${s.pending.length - 20} more (--json lists all)`);
  lines.push(s.complete ? '  complete' : '  incomplete: rerun the same `rho score` (or resubmit the array) to finish the rest');
  return lines.join('\n') + '\n';
}
