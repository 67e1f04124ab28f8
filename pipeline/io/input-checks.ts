// What is checked about the inputs before and around a score run, kept apart from the job's loop:
// canonical locations (one shard however it is spelled), content fingerprints (a changed input is refused
// or rescored, never silently mixed), the output dir being rho's own, the text/id fields against the first
// records of every shard, numeric flags, and the error of a run that could not read some input.
import { createHash } from 'node:crypto';
import { createReadStream, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve, sep } from 'node:path';
import { readShard, InputReadError } from '../../stages/read.js';
import { ConfigError, EXIT } from '../../schemas/errors.js';
import { openerFor } from './open.js';
import { mapLimit } from './parallel.js';
import type { S3Options } from './s3.js';
import type { OutputStore } from '../../schemas/store.js';
import { LAYOUT, recordKey, shardKey, type CompletionRecord } from '../../schemas/layout.js';

/** Entries of `_rho/inputs/` read at once (small GETs), and inputs fingerprinted at once (file reads or HEADs). */
const ENTRY_READS = 32;
const FINGERPRINTS = 8;

/** Some shards could not be read (transport): the run did what it could and exits 1 naming them. */
export class IncompleteRunError extends Error {
  readonly exitCode = EXIT.runtime;
  constructor(readonly failures: InputReadError[]) {
    super(`${failures.length} input shard(s) could not be read, so the output is NOT complete (none of their documents was rejected or recorded):\n` +
      failures.map((e) => `  ${e.message}`).join('\n') + '\nrerun the same command to score them (finished units are kept)');
  }
}

const isS3 = (s: string) => /^s3:\/\//i.test(s);

/**
 * The one name of a shard however it was given: the resolved real path of a local file (so `a.jsonl`,
 * `./a.jsonl`, its absolute path and a symlink to it agree), or the s3:// URI with its scheme normalised.
 */
export function canonicalLocation(source: string): string {
  if (isS3(source)) return `s3://${source.slice(5)}`;
  try {
    return realpathSync(resolve(source));
  } catch {
    return resolve(source);
  }
}

/** What a unit was scored from: compared on every rerun and by `rho verify --inputs`. */
export interface InputFingerprint {
  bytes: number;
  /** sha256 of the file's bytes (local files). */
  sha256?: string;
  /** The object's ETag and version id (s3://): a rewrite of the object changes them. */
  etag?: string;
  version?: string;
}

export async function fingerprint(source: string, s3: S3Options = {}): Promise<InputFingerprint> {
  if (isS3(source)) {
    const { headObject } = await import('./s3.js');
    let h;
    try {
      h = await headObject(source, s3);
    } catch (e) {
      throw new InputReadError(source, e as Error);
    }
    return { bytes: h.bytes, etag: h.etag, ...(h.version ? { version: h.version } : {}) };
  }
  return new Promise((ok, fail) => {
    const hash = createHash('sha256');
    let bytes = 0;
    createReadStream(source)
      .on('data', (c: Buffer | string) => { bytes += c.length; hash.update(c); })
      .on('error', (e) => fail(new InputReadError(source, e)))
      .on('end', () => ok({ bytes, sha256: hash.digest('hex') }));
  });
}

export function sameInput(a: InputFingerprint, b: InputFingerprint): boolean {
  return a.bytes === b.bytes && (a.sha256 ?? null) === (b.sha256 ?? null) && (a.etag ?? null) === (b.etag ?? null) && (a.version ?? null) === (b.version ?? null);
}

export const describeFingerprint = (f: InputFingerprint): string =>
  `${f.bytes} bytes, ${f.sha256 ? `sha256 ${f.sha256.slice(0, 12)}…` : `ETag ${f.etag}${f.version ? ` version ${f.version}` : ''}`}`;

interface ShardRef { source: string; key: string; location: string }

/**
 * Before any work: a shard with done units whose file changed since it was scored (its fingerprint in
 * `_rho/inputs/<key>.json`) is refused (exit 2), or with `rescoreChanged` its units are deleted (record first,
 * then data and rejects files) and the new fingerprint recorded, so that they are scored again and the dir
 * never mixes scores of two versions. Returns the fingerprints it computed (by key), for reuse.
 */
export async function checkChangedInputs(
  store: OutputStore, shards: ShardRef[], records: () => Promise<CompletionRecord[]>,
  opts: { rescoreChanged: boolean; s3?: S3Options; beforeRemove?: (units: string[]) => Promise<void>; entries?: Map<string, ShardEntry> },
): Promise<Map<string, InputFingerprint>> {
  const computed = new Map<string, InputFingerprint>();
  const changed: string[] = [];
  // The records are read only when some input changed (a whole-dir read; a rank otherwise reads only its own).
  let byKey: Map<string, CompletionRecord[]> | null = null;
  // The entries, then the fingerprints of the shards that have one, in parallel (one GET and one hash or HEAD
  // per shard: at 10,000 shards, sequential, that was minutes of every rank's start); then in shard order.
  // The entries assignShardKeys just read (`opts.entries`) are not read again: one GET per input per rank start.
  const known = opts.entries;
  const entries = await mapLimit(shards, ENTRY_READS, async (s) => (known?.has(s.key) ? known.get(s.key)! : readShardEntry(store, s.key)));
  const prints = await mapLimit(shards, FINGERPRINTS, (s, i) => (entries[i]?.input ? fingerprint(s.source, opts.s3) : Promise.resolve(null)));
  for (const [i, s] of shards.entries()) {
    const entry = entries[i];
    const now = prints[i];
    if (!entry?.input || !now) continue;
    computed.set(s.key, now);
    if (sameInput(entry.input, now)) continue;
    if (!byKey) {
      byKey = new Map();
      for (const r of await records()) {
        const key = recordKey(r);
        byKey.set(key, [...(byKey.get(key) ?? []), r]);
      }
    }
    const mine = byKey.get(s.key) ?? [];
    if (mine.length === 0) continue;
    if (!opts.rescoreChanged) {
      changed.push(`${s.source}: now ${describeFingerprint(now)}, scored as ${describeFingerprint(entry.input)} (${mine.length} unit(s))`);
      continue;
    }
    // First whatever caches these records (the rank summaries), so no reader takes a deleted unit as done;
    // a crash in between leaves the old fingerprint in place, and the next run removes them again.
    await opts.beforeRemove?.(mine.map((r) => r.unit));
    for (const r of mine) {
      await store.remove(`${LAYOUT.doneDir}/${r.unit}.json`);
      await store.remove(r.file);
      if (r.rejects_file) await store.remove(r.rejects_file);
    }
    await store.writeAtomic(entryPath(s.key), encodeEntry({ ...entry, input: now }));
    known?.set(s.key, { ...entry, input: now });
    process.stderr.write(`rho: ${s.source} changed since it was scored; removed its ${mine.length} unit(s), they are scored again\n`);
  }
  if (changed.length) {
    throw new ConfigError(`${changed.length} input(s) changed after they were scored, so their scores no longer match the text:\n  ${changed.join('\n  ')}\n` +
      'rerun with --rescore-changed to delete and rescore exactly those units, or restore the inputs');
  }
  return computed;
}

/**
 * Just before a shard is read for scoring: its fingerprint is what the units written from now on are scored
 * from. (checkChangedInputs already refused or cleared units of another version.)
 */
export async function recordInputFingerprint(store: OutputStore, shard: ShardRef, now: InputFingerprint, entries?: Map<string, ShardEntry>): Promise<void> {
  // The entry as the start-up checks left it (no second GET), else read now.
  const entry = entries?.has(shard.key) ? entries.get(shard.key)! : await readShardEntry(store, shard.key);
  if (entry?.input && sameInput(entry.input, now)) return;
  const next: ShardEntry = { source: entry?.source ?? shard.source, location: entry?.location ?? shard.location, input: now };
  await store.writeAtomic(entryPath(shard.key), encodeEntry(next));
  entries?.set(shard.key, next);
}

/** The output dir holds only what rho writes: an input inside it (rho's own output, or anything else) is refused. */
export function refuseInputsInsideOutput(shards: ShardRef[], output: string): void {
  let root: string;
  if (isS3(output)) root = `s3://${output.slice(5)}`.replace(/\/+$/, '');
  else {
    try { root = realpathSync(resolve(output)); } catch { root = resolve(output); }
  }
  for (const s of shards) {
    const inside = isS3(root)
      ? s.location.startsWith(`${root}/`)
      : (() => { const rel = relative(root, s.location); return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel); })();
    if (inside) {
      throw new ConfigError(`--input ${s.source} lies inside the output dir ${output}: the output dir is rho's own (its data files, records and manifest would be read as input); move the input out or choose another --output`);
    }
  }
}

/** `rho select`/`export`: an output inside the dir being read would become part of it. */
export function refuseOutputInsideInput(input: string, output: string): void {
  const a = resolve(input) + sep;
  const b = resolve(output) + sep;
  if (b.startsWith(a)) throw new ConfigError(`--output ${output} lies inside the input ${input}: readers of ${input}/**/*.parquet would count its files twice; choose an output outside it`);
}

/**
 * Before anything is committed: the text (and id) field is looked up in the first records of every shard.
 * When no shard has it, the flag is mistyped: exit 2, naming the shards, before anything is written.
 */
export async function probeFields(shards: { source: string }[], opts: { textField: string; idField?: string; s3?: S3Options; records?: number }): Promise<void> {
  const want = opts.records ?? 8;
  const problems: string[] = [];
  let withRecords = 0;
  let next = 0;
  const worker = async () => {
    while (next < shards.length) {
      const s = shards[next++];
      let seen = 0;
      let missing = 0;
      let field = '';
      const gen = readShard(s.source, { textField: opts.textField, idField: opts.idField }, await openerFor(s.source, opts.s3));
      try {
        for await (const it of gen) {
          seen++;
          if (it.kind === 'reject' && (it.reject.field === opts.textField || it.reject.field === opts.idField) && /is missing/.test(it.reject.reason)) {
            missing++;
            field = it.reject.field;
          }
          if (seen >= want) break;
        }
      } catch (e) {
        // Unreadable bytes are the run's business (it fails that shard and names it), not a configuration error.
        if (!(e instanceof InputReadError)) throw e;
      } finally {
        await gen.return(undefined);
      }
      if (seen > 0) withRecords++;
      if (seen > 0 && missing === seen) {
        problems.push(`${s.source}: none of its first ${seen} record(s) has the ${field === opts.textField ? '--text-field' : '--id-field'} "${field}"`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, shards.length) }, worker));
  if (problems.length === 0) return;
  // No shard that has records has the field: a mistyped flag, not bad data (exit 2 before anything is
  // written). Some shards without it: those are bad inputs, rejected row by row like any bad record.
  if (problems.length === withRecords) throw new ConfigError(`${problems.join('\n')}\ncheck --text-field/--id-field (nothing was written)`);
  process.stderr.write(`rho: warning: ${problems.join('; ')}; their records will be rejected\n`);
}

/**
 * `_rho/inputs/<key>.json`: which file (canonical location) a shard folder belongs to, its first spelling,
 * and the fingerprint of the file its units were scored from. Kept apart from data files and completion
 * records, which must not depend on where the data lives.
 */
export const INPUTS_DIR = '_rho/inputs';
export interface ShardEntry { source: string; location: string; input?: InputFingerprint }
const entryPath = (key: string) => `${INPUTS_DIR}/${key}.json`;
const encodeEntry = (e: ShardEntry) => new TextEncoder().encode(JSON.stringify(e) + '\n');

export async function readShardEntry(store: OutputStore, key: string): Promise<ShardEntry | null> {
  const bytes = await store.read(entryPath(key));
  if (!bytes) return null;
  try { return JSON.parse(new TextDecoder().decode(bytes)) as ShardEntry; } catch { return null; }
}

/**
 * Give every shard its folder: the one its canonical location already has in this output dir (so `a.jsonl`,
 * `./a.jsonl`, an absolute path or a symlink land in one folder, with the `source` first written), else
 * shardKey(source as given) — unless another file holds that name, then shardKey(location). With `register`,
 * new shards are recorded (created exclusively; a runner that lost the race takes the winner's entry).
 * Locations are kept out of the data files and records, so outputs do not depend on where the data lives.
 */
export async function assignShardKeys(store: OutputStore, shards: { source: string; location: string; key: string }[], register: boolean): Promise<Map<string, ShardEntry>> {
  const byLocation = new Map<string, { key: string; source: string }>();
  // Every entry read or created, by key: the later checks of this start reuse them instead of a GET each.
  const entries = new Map<string, ShardEntry>();
  const keyOwner = new Map<string, string>();
  const readEntry = async (rel: string) => {
    const bytes = await store.read(rel);
    if (!bytes) return null;
    try { return JSON.parse(new TextDecoder().decode(bytes)) as ShardEntry; } catch { return null; }
  };
  const rels = (await store.list(INPUTS_DIR)).filter((rel) => rel.endsWith('.json'));
  const read = await mapLimit(rels, ENTRY_READS, readEntry);
  for (const [i, rel] of rels.entries()) {
    const e = read[i];
    if (!e) continue;
    const key = rel.slice(INPUTS_DIR.length + 1, -'.json'.length);
    entries.set(key, e);
    byLocation.set(e.location, { key, source: e.source });
    keyOwner.set(key, e.location);
  }
  for (const s of shards) {
    const known = byLocation.get(s.location);
    if (known) {
      s.key = known.key;
      s.source = known.source;
      continue;
    }
    for (const key of [shardKey(s.source), shardKey(s.location)]) {
      const owner = keyOwner.get(key);
      if (owner !== undefined && owner !== s.location) continue;
      if (register) {
        const entry: ShardEntry = { source: s.source, location: s.location };
        if (!(await store.createExclusive(`${INPUTS_DIR}/${key}.json`, encodeEntry(entry)))) {
          const other = await readEntry(`${INPUTS_DIR}/${key}.json`);
          if (other?.location !== s.location) { keyOwner.set(key, other?.location ?? '?'); continue; }
          s.source = other.source;
          entries.set(key, other);
        } else entries.set(key, entry);
      }
      s.key = key;
      keyOwner.set(key, s.location);
      byLocation.set(s.location, { key, source: s.source });
      break;
    }
  }
  return entries;
}

/** Every numeric flag, before any work: NaN, negatives, zero and fractions where they make no sense. */
export function checkNumericFlags(f: Record<string, number | undefined>, rules: Record<string, 'positive-int' | 'nonneg-int' | 'positive'>): void {
  for (const [flag, rule] of Object.entries(rules)) {
    const v = f[flag];
    if (v === undefined) continue;
    const ok = rule === 'positive' ? Number.isFinite(v) && v > 0
      : rule === 'positive-int' ? Number.isInteger(v) && v > 0
        : Number.isInteger(v) && v >= 0;
    if (!ok) throw new ConfigError(`--${flag} must be ${rule === 'positive' ? 'a positive number' : rule === 'positive-int' ? 'a positive integer' : 'an integer >= 0'} (got ${v})`);
  }
}
