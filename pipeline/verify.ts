// `rho verify`: re-checks an output dir against its own completion records, the output contract and (when
// reachable) the input shards, so a consumer can trust that every input document is accounted for exactly
// once and every file holds what its record says. Read-only: it never repairs anything.
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { Data, Field, Schema, Table } from 'apache-arrow';
import {
  COL, META, SCHEMA_VERSION, entropyColumn, isUnscoredPosition, lossMeanColumn, logprobColumn, scoreSchema, selectFields, IGNORE_INDEX,
} from '../schemas/contract.js';
import { decodeTable, sha256, type OutputFormat } from '../stages/write.js';
import { readShard, InputReadError, type ShardOpener } from '../stages/read.js';
import { isS3Uri, openerFor } from './output.js';
import type { S3Options } from './s3.js';
import { LAYOUT, dataPath, partName, recordKey, rejectsPath, shardKey, unitName, type CompletionRecord } from './units.js';
import { LocalStore, type OutputStore } from './store.js';
import { ConfigError } from './errors.js';
import { describeFingerprint, fingerprint, sameInput, type InputFingerprint } from './input-checks.js';
import { Progress } from './progress.js';
import type { Manifest } from './manifest.js';

export type Severity = 'error' | 'warning';

/** One problem found. `file` is relative to the output dir (or an input path); row/field when they apply. */
export interface Finding {
  severity: Severity;
  /** Short stable name of the check that failed (see docs/verify.md). */
  check: string;
  file: string;
  row?: number;
  field?: string;
  message: string;
}

export interface VerifyOptions {
  /** Re-read the input shards: true = required, false = never, 'auto' = when every input file is reachable. */
  inputs: boolean | 'auto';
  /** Directory that relative input sources are resolved against (default: the current directory, as `rho score` saw them). */
  inputsBase?: string;
  /** Findings kept per (check, file); the rest are counted in `suppressed`. */
  maxPerFileCheck?: number;
  progress?: boolean;
  /** Settings for s3:// inputs (the output store is passed to verifyOutput). */
  s3?: S3Options;
}

export interface VerifyReport {
  output: string;
  ok: boolean;
  config_sha256: string;
  checked: { units: number; rows: number; tokens: number; rejects: number; shards: number };
  inputs: { checked: string[]; unreachable: string[] };
  errors: Finding[];
  warnings: Finding[];
  /** Findings beyond maxPerFileCheck, not listed. */
  suppressed: { errors: number; warnings: number };
}

/** The part of `_rho/config.json` (RunIdentity in score-job.ts) verify relies on. */
interface RunIdentityView {
  schema_version: number;
  models: { name: string; sha256: string }[];
  context: number;
  stride: number;
  entropy: boolean;
  text_field: string;
  id_field: string | null;
  unit_docs: number;
  format: OutputFormat;
}

/** Float tolerance: values are float32; a log-prob can only exceed 0 by rounding. */
const LOGPROB_MAX = 1e-4;
const LOSS_MEAN_RTOL = 1e-4;
const DATA_FILE = /^(.+)\/(part-\d{5})\.(parquet|arrow)$/;

class Findings {
  readonly errors: Finding[] = [];
  readonly warnings: Finding[] = [];
  readonly suppressed = { errors: 0, warnings: 0 };
  private readonly perKey = new Map<string, number>();
  constructor(private readonly maxPerKey: number) {}

  add(f: Finding): void {
    const key = `${f.severity}\0${f.check}\0${f.file}`;
    const n = (this.perKey.get(key) ?? 0) + 1;
    this.perKey.set(key, n);
    if (n > this.maxPerKey) {
      this.suppressed[f.severity === 'error' ? 'errors' : 'warnings']++;
      return;
    }
    (f.severity === 'error' ? this.errors : this.warnings).push(f);
  }
  error(check: string, file: string, message: string, at: { row?: number; field?: string } = {}): void {
    this.add({ severity: 'error', check, file, ...at, message });
  }
  warn(check: string, file: string, message: string, at: { row?: number; field?: string } = {}): void {
    this.add({ severity: 'warning', check, file, ...at, message });
  }
}

/** What the per-unit checks learn about a shard, for the cross-unit and input checks. */
interface ShardSeen {
  source: string;
  records: CompletionRecord[];
  /** row → id of every scored output row. */
  scoredIds: Map<number, string>;
  rejectRows: Set<number>;
  /** Parts whose data file could not be read: already reported, so their rows are not reported again per input row. */
  unreadableParts: Set<number>;
  /** Parts whose completion record is unreadable (already an error): the shard's input count cannot be checked. */
  brokenParts: Set<number>;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

export async function verifyOutput(dir: string, opts: VerifyOptions, store: OutputStore = new LocalStore(dir)): Promise<VerifyReport> {
  if (store instanceof LocalStore && !(existsSync(dir) && statSync(dir).isDirectory())) {
    throw new ConfigError(`${dir}: no such output dir`);
  }
  const configBytes = await store.read(LAYOUT.config);
  if (!configBytes) throw new ConfigError(`${dir}: not a rho output dir (${LAYOUT.config} is missing)`);
  let config: RunIdentityView;
  try {
    config = JSON.parse(text(configBytes)) as RunIdentityView;
  } catch (e) {
    throw new ConfigError(`${dir}/${LAYOUT.config}: not valid JSON (${(e as Error).message})`);
  }
  // score-job.ts hashes the identity JSON without the trailing newline it writes.
  const configSha = sha256(new TextEncoder().encode(text(configBytes).replace(/\n$/, '')));
  const f = new Findings(opts.maxPerFileCheck ?? 20);
  const report: VerifyReport = {
    output: dir, ok: false, config_sha256: configSha,
    checked: { units: 0, rows: 0, tokens: 0, rejects: 0, shards: 0 },
    inputs: { checked: [], unreachable: [] },
    errors: f.errors, warnings: f.warnings, suppressed: f.suppressed,
  };
  for (const [field, ok] of [
    ['schema_version', config.schema_version === SCHEMA_VERSION],
    ['models', Array.isArray(config.models) && config.models.length > 0 && config.models.every((m) => typeof m?.name === 'string')],
    ['context', Number.isInteger(config.context) && config.context > 0],
    ['stride', Number.isInteger(config.stride) && config.stride > 0 && config.stride <= config.context],
    ['unit_docs', Number.isInteger(config.unit_docs) && config.unit_docs > 0],
    ['format', config.format === 'parquet' || config.format === 'arrow'],
    ['text_field', typeof config.text_field === 'string'],
  ] as const) {
    if (!ok) throw new ConfigError(`${dir}/${LAYOUT.config}: field "${field}" is missing or invalid (${JSON.stringify((config as unknown as Record<string, unknown>)[field])}); this dir was not written by a compatible rho score`);
  }

  const all = await store.list('');
  for (const rel of all) if (rel.endsWith('.tmp')) f.warn('tmp', rel, 'stray temporary file (left by an interrupted write); safe to delete when no run is active');

  // ---- completion records ----
  const records: CompletionRecord[] = [];
  const recordFiles = all.filter((r) => r.startsWith(`${LAYOUT.doneDir}/`) && r.endsWith('.json'));
  const referenced = new Set<string>();
  /** Units whose record exists but is unreadable: present for the missing-unit check, their data unverifiable. */
  const brokenUnits = new Set<string>();
  for (const rel of recordFiles) {
    const unit = rel.slice(LAYOUT.doneDir.length + 1, -'.json'.length);
    const rec = parseRecord(rel, (await store.read(rel))!, f);
    if (!rec) {
      brokenUnits.add(unit);
      referenced.add(`${unit}.${config.format}`);
      referenced.add(`${LAYOUT.rejectsDir}/${unit}.jsonl`);
      continue;
    }
    if (rec.unit !== unit) f.error('record', rel, `"unit" is ${JSON.stringify(rec.unit)} but the record is stored as ${unit}`, { field: 'unit' });
    if (rec.config_sha256 !== configSha) {
      f.error('config', rel, `unit was scored with another configuration (config_sha256 ${rec.config_sha256.slice(0, 12)}…, ${LAYOUT.config} is ${configSha.slice(0, 12)}…); rerun rho score to redo it`, { field: 'config_sha256' });
    }
    referenced.add(rec.file);
    if (rec.rejects_file) referenced.add(rec.rejects_file);
    records.push(rec);
  }

  // ---- orphans: data or rejects files no record claims; files rho did not write ----
  const manifest = await readManifest(store, f);
  // Folders rho writes units into: those of the records, and of every shard the manifest lists.
  const unitFolders = new Set<string>();
  for (const r of records) unitFolders.add(r.file.slice(0, r.file.lastIndexOf('/')));
  for (const u of brokenUnits) unitFolders.add(u.slice(0, u.lastIndexOf('/')));
  for (const sh of manifest?.shards ?? []) if (typeof sh?.key === 'string') { unitFolders.add(sh.key); unitFolders.add(`shard=${sh.key}`); }
  for (const rel of all) {
    if (rel.endsWith('.tmp') || referenced.has(rel)) continue;
    if (!rel.startsWith('_rho/') && /(^|\/)(_rho\/config\.json|manifest\.json)$/.test(rel) && rel !== LAYOUT.manifest) {
      f.error('nested-output', rel, `another output dir is nested inside this one (${rel.slice(0, rel.lastIndexOf('/'))}): readers of ${dir}/**/*.parquet count its files too; move it out`);
      continue;
    }
    const m = DATA_FILE.exec(rel);
    if (!rel.startsWith('_rho/') && m && unitFolders.has(m[1])) {
      f.warn('orphan', rel, 'data file without a completion record (left by a crash before the unit finished); rho score rewrites it, it is not part of the output');
    } else if (!rel.startsWith('_rho/') && /\.(parquet|arrow)$/.test(rel)) {
      f.error('foreign', rel, `a data file rho did not write (no completion record, not a unit of any shard of this run): readers of ${dir}/**/*.parquet would count its rows; move it out of the output dir`);
    } else if (rel.startsWith(`${LAYOUT.rejectsDir}/`)) {
      f.warn('orphan', rel, 'rejects file without a completion record (left by a crash); not part of the output');
    }
  }

  // ---- per shard: units contiguous and well-formed ----
  const shards = new Map<string, ShardSeen>();
  const shardOf = (source: string) => {
    let s = shards.get(source);
    if (!s) shards.set(source, (s = { source, records: [], scoredIds: new Map(), rejectRows: new Set(), unreadableParts: new Set(), brokenParts: new Set() }));
    return s;
  };
  const inputList = manifestInputs(manifest, f);
  for (const i of inputList) shardOf(i.source);
  for (const r of records) shardOf(r.source).records.push(r);
  for (const s of shards.values()) {
    s.records.sort((a, b) => a.part - b.part);
    const key = keyOfShard(s, manifest);
    const parts = new Set(s.records.map((r) => r.part));
    for (const u of brokenUnits) {
      const m = /^(.+)\/part-(\d{5})$/.exec(u);
      if (m && m[1] === key) {
        parts.add(Number(m[2]));
        s.brokenParts.add(Number(m[2]));
      }
    }
    if (parts.size === 0) continue; // an empty input, or not scored at all: decided after the inputs are read
    const last = Math.max(...parts);
    for (let p = 0; p <= last; p++) {
      if (!parts.has(p)) {
        f.error('missing-unit', `${key}/${partName(p)}`, `unit ${p} of ${s.source} (rows ${p * config.unit_docs}..${(p + 1) * config.unit_docs - 1}) has no completion record although unit ${last} does; rerun rho score on this output dir`);
      }
    }
    for (const r of s.records) {
      const rel = `${LAYOUT.doneDir}/${r.unit}.json`;
      const expectedUnit = unitName({ ...r, key: r.input?.location ? shardKey(r.input.location) : undefined });
      if (r.unit !== expectedUnit) f.error('record', rel, `unit ${r.unit} does not match source ${s.source} part ${r.part} (expected ${expectedUnit})`, { field: 'unit' });
      if (r.first_row !== r.part * config.unit_docs) f.error('record', rel, `first_row ${r.first_row} but part ${r.part} x unit_docs ${config.unit_docs} = ${r.part * config.unit_docs}`, { field: 'first_row' });
      const expectedFile = dataPath({ ...r, key: recordKey(r) }, config.format);
      if (r.file !== expectedFile) f.error('record', rel, `file is ${r.file}, expected ${expectedFile}`, { field: 'file' });
      if (r.docs_in !== r.scored + r.rejected) f.error('accounting', rel, `docs_in ${r.docs_in} != scored ${r.scored} + rejected ${r.rejected}`, { field: 'docs_in' });
      if (r.part < last && r.docs_in !== config.unit_docs) f.error('accounting', rel, `docs_in ${r.docs_in} but every unit before the shard's last holds unit_docs = ${config.unit_docs} records`, { field: 'docs_in' });
      if (r.docs_in > config.unit_docs) f.error('accounting', rel, `docs_in ${r.docs_in} exceeds unit_docs ${config.unit_docs}`, { field: 'docs_in' });
    }
  }

  // ---- each unit's data and rejects files ----
  const totalBytes = records.reduce((a, r) => a + r.bytes, 0);
  let bytesDone = 0;
  const progress = new Progress(totalBytes, () => ({ docs: report.checked.rows, rejected: report.checked.rejects, tokens: report.checked.tokens, inputBytesDone: bytesDone }), opts.progress ?? false);
  const idsSeen = new Map<string, { source: string; row: number }>();
  const duplicates: string[] = [];
  let duplicateIds = 0;
  try {
    for (const s of shards.values()) {
      for (const r of s.records) {
        await checkUnit(store, r, config, f, s, report);
        await checkRejects(store, r, f, s, report);
        bytesDone += r.bytes;
        report.checked.units++;
        progress.draw();
      }
      for (const [row, id] of s.scoredIds) {
        const first = idsSeen.get(id);
        if (first) {
          duplicateIds++;
          if (duplicates.length < 5) duplicates.push(`${JSON.stringify(id)} at ${s.source} row ${row} and ${first.source} row ${first.row}`);
        } else idsSeen.set(id, { source: s.source, row });
      }
    }
    report.checked.shards = shards.size;
    // Every input row is scored, so ids repeated in the input repeat in the output: a warning, not an error.
    // (Rows are unique per (source, row) above; with inputs, each row's id is also checked against its input row.)
    if (duplicateIds > 0) {
      f.warn('duplicate-id', '', `${duplicateIds} output row(s) repeat the id of an earlier row, so ids are not unique in this output (the input repeats them; key rows by source + row). E.g. ${duplicates.join('; ')}`, { field: COL.id });
    }

    checkManifest(manifest, records.filter((r) => r.config_sha256 === configSha), configSha, new Set([...brokenUnits].map((u) => u.split('/')[0])), f);

    // ---- inputs: every input record accounted for ----
    if (opts.inputs !== false) {
      const resolve = (source: string) => (opts.inputsBase && !isAbsolute(source) && !source.includes('://') ? join(opts.inputsBase, source) : source);
      // s3:// inputs are read through the S3 opener (a missing key is then a read error, reported per shard).
      const reachable = (p: string) => isS3Uri(p) || (existsSync(p) && statSync(p).isFile());
      const sources = [...shards.keys()];
      const unreachable = sources.filter((src) => !reachable(resolve(src)));
      report.inputs.unreachable = unreachable;
      if (opts.inputs === true) {
        for (const src of unreachable) f.error('input', src, `input not reachable at ${resolve(src)}; pass --inputs-base DIR (the directory rho score ran in) or --no-inputs`);
      }
      if (opts.inputs === true || unreachable.length === 0) {
        const bytesBySource = new Map(inputList.map((i) => [i.source, i.bytes]));
        for (const s of shards.values()) {
          if (unreachable.includes(s.source)) continue;
          await checkInput(resolve(s.source), s, config, bytesBySource.get(s.source), f, await openerFor(s.source, opts.s3), opts.s3);
          report.inputs.checked.push(s.source);
        }
      }
    }
    for (const s of shards.values()) {
      if (s.records.length === 0 && !report.inputs.checked.includes(s.source)) {
        f.warn('missing-unit', keyOfShard(s, manifest), `input ${s.source} has no completed unit: an empty input, or not scored yet (re-read the inputs to tell)`);
      }
    }
  } finally {
    progress.stop();
  }
  report.ok = f.errors.length === 0 && f.suppressed.errors === 0;
  return report;
}

/** The folder of a shard's units: from its records, else the manifest, else (older outputs) its source. */
function keyOfShard(s: ShardSeen, manifest: Manifest | null): string {
  if (s.records.length) return recordKey(s.records[0]);
  return manifest?.shards?.find((x) => x.source === s.source)?.key ?? shardKey(s.source);
}

function parseRecord(rel: string, bytes: Uint8Array, f: Findings): CompletionRecord | null {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(text(bytes)) as Record<string, unknown>;
  } catch (e) {
    f.error('record', rel, `completion record is not valid JSON (truncated or corrupt: ${(e as Error).message}); delete it and rerun rho score to redo the unit`);
    return null;
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
    f.error('record', rel, 'completion record is not a JSON object');
    return null;
  }
  let ok = true;
  for (const k of ['docs_in', 'scored', 'rejected', 'tokens', 'scored_tokens', 'bytes', 'part', 'first_row'] as const) {
    if (!Number.isInteger(rec[k]) || (rec[k] as number) < 0) {
      f.error('record', rel, `field "${k}" is ${JSON.stringify(rec[k])}, expected a non-negative integer`, { field: k });
      ok = false;
    }
  }
  for (const k of ['unit', 'source', 'file', 'sha256', 'config_sha256'] as const) {
    if (typeof rec[k] !== 'string') {
      f.error('record', rel, `field "${k}" is ${JSON.stringify(rec[k])}, expected a string`, { field: k });
      ok = false;
    }
  }
  if (rec.rejects_file !== null && typeof rec.rejects_file !== 'string') {
    f.error('record', rel, 'field "rejects_file" must be a string or null', { field: 'rejects_file' });
    ok = false;
  }
  return ok ? (rec as unknown as CompletionRecord) : null;
}

async function readManifest(store: OutputStore, f: Findings): Promise<Manifest | null> {
  const bytes = await store.read(LAYOUT.manifest);
  if (!bytes) {
    f.error('manifest', LAYOUT.manifest, 'manifest.json is missing (the run did not finish); rerun rho score to complete the run and write it');
    return null;
  }
  try {
    return JSON.parse(text(bytes)) as Manifest;
  } catch (e) {
    f.error('manifest', LAYOUT.manifest, `not valid JSON (${(e as Error).message})`);
    return null;
  }
}

function manifestInputs(m: Manifest | null, f: Findings): { source: string; bytes: number }[] {
  const raw = m?.provenance?.[META.inputs];
  if (m && typeof raw !== 'string') {
    f.error('manifest', LAYOUT.manifest, `provenance has no "${META.inputs}"`, { field: META.inputs });
    return [];
  }
  if (!raw) return [];
  try {
    return JSON.parse(raw) as { source: string; bytes: number }[];
  } catch {
    f.error('manifest', LAYOUT.manifest, `provenance "${META.inputs}" is not valid JSON`, { field: META.inputs });
    return [];
  }
}

/**
 * The manifest is rebuilt from the records at the end of a run; a difference means it is stale or edited.
 * Shards with an unreadable record cannot be summed: that record is already an error, so they are left out.
 */
function checkManifest(m: Manifest | null, records: CompletionRecord[], configSha: string, brokenKeys: Set<string>, f: Findings): void {
  if (!m) return;
  if (m.config_sha256 !== configSha) f.error('manifest', LAYOUT.manifest, `config_sha256 ${m.config_sha256} differs from ${LAYOUT.config} (${configSha})`, { field: 'config_sha256' });
  const keys = ['units_done', 'docs_in', 'scored', 'rejected', 'tokens', 'scored_tokens'] as const;
  const sum = (rs: CompletionRecord[]) => ({
    units_done: rs.length,
    docs_in: rs.reduce((a, r) => a + r.docs_in, 0),
    scored: rs.reduce((a, r) => a + r.scored, 0),
    rejected: rs.reduce((a, r) => a + r.rejected, 0),
    tokens: rs.reduce((a, r) => a + r.tokens, 0),
    scored_tokens: rs.reduce((a, r) => a + r.scored_tokens, 0),
  });
  const diff = (got: Partial<Record<(typeof keys)[number], number>> | undefined, want: ReturnType<typeof sum>) =>
    keys.filter((k) => got?.[k] !== want[k]).map((k) => `${k} ${got?.[k]} (records: ${want[k]})`);
  if (brokenKeys.size === 0) {
    const d = diff(m.totals, sum(records));
    if (d.length) f.error('manifest', LAYOUT.manifest, `totals differ from the completion records: ${d.join(', ')}; stale manifest: rerun rho score to rebuild it`, { field: 'totals' });
  }
  for (const sh of m.shards ?? []) {
    if (brokenKeys.has(sh.key ?? shardKey(sh.source))) continue;
    const d = diff(sh, sum(records.filter((r) => r.source === sh.source)));
    if (d.length) f.error('manifest', LAYOUT.manifest, `shard ${sh.source} differs from its completion records: ${d.join(', ')}`, { field: 'shards' });
  }
}

function sameType(a: Field, b: Field): string | null {
  if (String(a.type) !== String(b.type)) return `type ${String(a.type)}, the contract says ${String(b.type)}`;
  if (a.nullable !== b.nullable) return `nullable=${a.nullable}, the contract says nullable=${b.nullable}`;
  const ac = a.type.children?.[0];
  const bc = b.type.children?.[0];
  if (bc && ac && ac.nullable !== bc.nullable) return `list items nullable=${ac.nullable}, the contract says nullable=${bc.nullable}`;
  return null;
}

function checkMetadata(rel: string, schema: Schema, rec: CompletionRecord, config: RunIdentityView, f: Findings): void {
  const md = schema.metadata;
  for (const key of Object.values(META)) if (!md.has(key)) f.error('metadata', rel, `provenance key ${key} is missing from the file metadata`, { field: key });
  const sv = md.get(META.schemaVersion);
  if (sv !== undefined && sv !== String(SCHEMA_VERSION)) f.error('metadata', rel, `schema version ${sv}, this rho reads version ${SCHEMA_VERSION}`, { field: META.schemaVersion });
  for (const [key, want] of [[META.context, config.context], [META.stride, config.stride]] as const) {
    const got = md.get(key);
    if (got !== undefined && got !== String(want)) f.error('metadata', rel, `${key} is ${got} but ${LAYOUT.config} says ${want}`, { field: key });
  }
  const models = md.get(META.models);
  if (models !== undefined) {
    try {
      const ms = JSON.parse(models) as { name: string; sha256: string }[];
      const got = ms.map((m) => `${m.name}:${m.sha256}`).join(',');
      const want = config.models.map((m) => `${m.name}:${m.sha256}`).join(',');
      if (got !== want) f.error('metadata', rel, `models ${got} differ from ${LAYOUT.config} (${want})`, { field: META.models });
    } catch {
      f.error('metadata', rel, `${META.models} is not valid JSON`, { field: META.models });
    }
  }
  const unit = md.get(META.unit);
  if (unit !== undefined) {
    try {
      const u = JSON.parse(unit) as { source: string; part: number; first_row: number; rows: number };
      if (u.source !== rec.source || u.part !== rec.part || u.first_row !== rec.first_row || u.rows !== rec.docs_in) {
        f.error('metadata', rel, `${META.unit} ${unit} does not match the completion record (source ${rec.source}, part ${rec.part}, first_row ${rec.first_row}, docs_in ${rec.docs_in})`, { field: META.unit });
      }
    } catch {
      f.error('metadata', rel, `${META.unit} is not valid JSON`, { field: META.unit });
    }
  }
}

/** Contract columns and types; returns false when the rows cannot be checked. */
function checkSchema(rel: string, schema: Schema, config: RunIdentityView, f: Findings): boolean {
  const expected = scoreSchema(config.models.map((m) => m.name), { entropy: config.entropy });
  const optional = new Map(selectFields().map((x) => [x.name, x]));
  const have = new Map(schema.fields.map((x) => [x.name, x]));
  let ok = true;
  for (const want of expected.fields) {
    const got = have.get(want.name);
    if (!got) {
      f.error('schema', rel, `column ${want.name} (${String(want.type)}) is missing`, { field: want.name });
      ok = false;
      continue;
    }
    const diff = sameType(got, want);
    if (diff) {
      f.error('schema', rel, `column ${want.name} has ${diff}`, { field: want.name });
      ok = false;
    }
  }
  for (const got of schema.fields) {
    if (expected.fields.some((x) => x.name === got.name)) continue;
    const opt = optional.get(got.name);
    if (!opt) f.error('schema', rel, `unexpected column ${got.name} (${String(got.type)}): not in the contract for models ${config.models.map((m) => m.name).join(', ')}${config.entropy ? ' with' : ' without'} entropy`, { field: got.name });
    else {
      const diff = sameType(got, opt);
      if (diff) {
        f.error('schema', rel, `column ${got.name} has ${diff}`, { field: got.name });
        ok = false;
      }
    }
  }
  return ok;
}

async function checkUnit(store: OutputStore, rec: CompletionRecord, config: RunIdentityView, f: Findings, shard: ShardSeen, report: VerifyReport): Promise<void> {
  const rel = rec.file;
  const bytes = await store.read(rel);
  if (!bytes) {
    f.error('file-missing', rel, `data file of unit ${rec.unit} is missing (its completion record exists); delete ${LAYOUT.doneDir}/${rec.unit}.json and rerun rho score`);
    shard.unreadableParts.add(rec.part);
    return;
  }
  if (bytes.length !== rec.bytes) f.error('bytes', rel, `file has ${bytes.length} bytes, its completion record says ${rec.bytes}`);
  const digest = sha256(bytes);
  if (digest !== rec.sha256) f.error('sha256', rel, `sha256 ${digest} does not match the completion record (${rec.sha256}): the file changed or is corrupt`);
  let table: Table;
  try {
    table = decodeTable(bytes, rel.endsWith('.arrow') ? 'arrow' : 'parquet');
  } catch (e) {
    f.error('decode', rel, `cannot be decoded as ${rel.endsWith('.arrow') ? 'Arrow IPC' : 'Parquet'}: ${(e as Error).message}`);
    shard.unreadableParts.add(rec.part);
    return;
  }
  checkMetadata(rel, table.schema, rec, config, f);
  if (table.numRows !== rec.scored) f.error('row-count', rel, `file has ${table.numRows} rows, its completion record says scored = ${rec.scored}`);
  if (!checkSchema(rel, table.schema, config, f)) {
    shard.unreadableParts.add(rec.part);
    return;
  }
  checkRows(rel, table, rec, config, f, shard, report);
}

function isValid(d: Data, i: number): boolean {
  return d.nullCount === 0 || d.getValid(i);
}

function checkRows(rel: string, table: Table, rec: CompletionRecord, config: RunIdentityView, f: Findings, shard: ShardSeen, report: VerifyReport): void {
  const C = config.context;
  const S = config.stride;
  const models = config.models.map((m) => m.name);
  const lastRow = rec.first_row + rec.docs_in - 1;
  let prevRow = -1;
  let tokens = 0;
  let scoredTokens = 0;
  let rowIndex = 0;
  for (const batch of table.batches) {
    const col = (name: string) => batch.getChild(name)?.data[0] as Data | undefined;
    const ids = batch.getChild(COL.id)!;
    const sources = batch.getChild(COL.source)!;
    const rows = col(COL.row)!;
    const tok = col(COL.tokenIds)!;
    const nTok = col(COL.nTokens)!;
    const lists: { name: string; data: Data; kind: 'logprob' | 'entropy' }[] = [];
    for (const m of models) {
      lists.push({ name: logprobColumn(m), data: col(logprobColumn(m))!, kind: 'logprob' });
      if (config.entropy) lists.push({ name: entropyColumn(m), data: col(entropyColumn(m))!, kind: 'entropy' });
    }
    const mask = col(COL.selectMask);
    const labels = col(COL.labels);
    for (let i = 0; i < batch.numRows; i++, rowIndex++) {
      const row = Number((rows.values as BigInt64Array)[i]);
      const at = { row, field: COL.row };
      const id = ids.get(i) as string | null;
      if (row <= prevRow) f.error('row-order', rel, `row ${row} follows row ${prevRow}: rows must be strictly increasing (input order, each input row once)`, at);
      prevRow = Math.max(prevRow, row);
      if (row < rec.first_row || row > lastRow) f.error('row-range', rel, `row ${row} is outside the unit's rows ${rec.first_row}..${lastRow}`, at);
      if (sources.get(i) !== rec.source) f.error('source', rel, `source ${JSON.stringify(sources.get(i))}, the unit's shard is ${JSON.stringify(rec.source)}`, { row, field: COL.source });
      if (!id) f.error('id', rel, 'id is empty', { row, field: COL.id });
      else shard.scoredIds.set(row, id);

      const tOff = tok.valueOffsets as Int32Array;
      const n = tOff[i + 1] - tOff[i];
      tokens += n;
      const nt = (nTok.values as Int32Array)[i];
      if (nt !== n) f.error('n_tokens', rel, `n_tokens is ${nt} but token_ids has ${n} tokens`, { row, field: COL.nTokens });
      const tokIds = tok.children[0].values as Int32Array;
      for (let j = tOff[i]; j < tOff[i + 1]; j++) {
        if (tokIds[j] < 0) { f.error('token_ids', rel, `token id ${tokIds[j]} at position ${j - tOff[i]} is negative`, { row, field: COL.tokenIds }); break; }
      }

      for (const m of models) {
        const lp = col(logprobColumn(m))!;
        const lOff = lp.valueOffsets as Int32Array;
        if (lOff[i + 1] - lOff[i] !== n) continue; // reported below with the other list columns
        const child = lp.children[0];
        const vals = child.values as Float32Array;
        let sum = 0;
        let count = 0;
        for (let j = lOff[i]; j < lOff[i + 1]; j++) {
          if (isValid(child, j)) { sum -= vals[j]; count++; }
        }
        if (m === models[0]) scoredTokens += count;
        const lmCol = col(lossMeanColumn(m))!;
        const lmValid = isValid(lmCol, i);
        const lm = (lmCol.values as Float32Array)[i];
        const field = lossMeanColumn(m);
        if (count === 0) {
          if (lmValid) f.error('loss_mean', rel, `${field} is ${lm} but the row has no scored token (must be null)`, { row, field });
        } else if (!lmValid) {
          f.error('loss_mean', rel, `${field} is null but ${count} tokens are scored`, { row, field });
        } else {
          const mean = sum / count;
          if (!(Math.abs(lm - mean) <= LOSS_MEAN_RTOL * Math.abs(mean) + 1e-6)) {
            f.error('loss_mean', rel, `${field} is ${lm}, the mean of -${logprobColumn(m)} over ${count} scored tokens is ${mean}`, { row, field });
          }
        }
      }

      for (const l of lists) {
        const off = l.data.valueOffsets as Int32Array;
        const len = off[i + 1] - off[i];
        if (len !== n) {
          f.error('list-length', rel, `${l.name} has ${len} values, token_ids has ${n}`, { row, field: l.name });
          continue;
        }
        const child = l.data.children[0];
        const vals = child.values as Float32Array;
        for (let p = 0; p < n; p++) {
          const j = off[i] + p;
          const valid = isValid(child, j);
          const unscored = isUnscoredPosition(p, C, S);
          if (valid && unscored) {
            f.error('window-nulls', rel, `position ${p} has a value (${vals[j]}) but the window rule (C=${C}, S=${S}) gives it no context: it must be null`, { row, field: l.name });
            break;
          }
          if (!valid && !unscored) {
            f.error('window-nulls', rel, `position ${p} is null but the window rule (C=${C}, S=${S}) scores it`, { row, field: l.name });
            break;
          }
          if (valid) {
            const v = vals[j];
            const bad = l.kind === 'logprob' ? !(Number.isFinite(v) && v <= LOGPROB_MAX) : !(Number.isFinite(v) && v >= -LOGPROB_MAX);
            if (bad) {
              f.error('value', rel, `position ${p}: ${v} is not a valid ${l.kind === 'logprob' ? 'log-probability (finite, <= 0)' : 'entropy (finite, >= 0)'}`, { row, field: l.name });
              break;
            }
          }
        }
      }

      if (mask && labels) {
        const mOff = mask.valueOffsets as Int32Array;
        const bOff = labels.valueOffsets as Int32Array;
        if (mOff[i + 1] - mOff[i] !== n) f.error('list-length', rel, `${COL.selectMask} has ${mOff[i + 1] - mOff[i]} values, token_ids has ${n}`, { row, field: COL.selectMask });
        else if (bOff[i + 1] - bOff[i] !== n) f.error('list-length', rel, `${COL.labels} has ${bOff[i + 1] - bOff[i]} values, token_ids has ${n}`, { row, field: COL.labels });
        else {
          const mChild = mask.children[0];
          const lab = labels.children[0].values as Int32Array;
          for (let p = 0; p < n; p++) {
            const selected = mChild.getValid(mOff[i] + p) && Boolean((mChild.values[(mChild.offset + mOff[i] + p) >> 3] >> ((mChild.offset + mOff[i] + p) & 7)) & 1);
            const want = selected ? tokIds[tOff[i] + p] : IGNORE_INDEX;
            if (lab[bOff[i] + p] !== want) {
              f.error('labels', rel, `position ${p}: label ${lab[bOff[i] + p]}, expected ${want} (${selected ? 'selected: the token id' : `not selected: ${IGNORE_INDEX}`})`, { row, field: COL.labels });
              break;
            }
          }
        }
      } else if (mask || labels) {
        f.error('schema', rel, `${mask ? COL.selectMask : COL.labels} without ${mask ? COL.labels : COL.selectMask}: select writes both`, { field: mask ? COL.labels : COL.selectMask });
      }
    }
  }
  report.checked.rows += rowIndex;
  report.checked.tokens += tokens;
  const recRel = `${LAYOUT.doneDir}/${rec.unit}.json`;
  if (tokens !== rec.tokens) f.error('accounting', recRel, `tokens ${rec.tokens}, the data file holds ${tokens}`, { field: 'tokens' });
  if (scoredTokens !== rec.scored_tokens) f.error('accounting', recRel, `scored_tokens ${rec.scored_tokens}, the data file has ${scoredTokens} non-null ${logprobColumn(models[0])} values`, { field: 'scored_tokens' });
}

async function checkRejects(store: OutputStore, rec: CompletionRecord, f: Findings, shard: ShardSeen, report: VerifyReport): Promise<void> {
  const recRel = `${LAYOUT.doneDir}/${rec.unit}.json`;
  const expectedPath = rejectsPath({ ...rec, key: recordKey(rec) });
  if (rec.rejected === 0) {
    if (rec.rejects_file !== null) f.error('rejects', recRel, `rejected is 0 but rejects_file is ${rec.rejects_file}`, { field: 'rejects_file' });
    return;
  }
  if (rec.rejects_file !== expectedPath) {
    f.error('rejects', recRel, `rejected is ${rec.rejected} but rejects_file is ${JSON.stringify(rec.rejects_file)} (expected ${expectedPath})`, { field: 'rejects_file' });
    if (!rec.rejects_file) return;
  }
  const rel = rec.rejects_file!;
  const bytes = await store.read(rel);
  if (!bytes) {
    f.error('rejects', rel, `rejects file is missing; the completion record ${recRel} lists ${rec.rejected} rejected records`);
    return;
  }
  const lines = text(bytes).split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== rec.rejected) f.error('rejects', rel, `${lines.length} lines, the completion record says rejected = ${rec.rejected}`);
  const lastRow = rec.first_row + rec.docs_in - 1;
  lines.forEach((line, k) => {
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      f.error('rejects', rel, `line ${k + 1} is not valid JSON`);
      return;
    }
    const row = r.row;
    if (!Number.isInteger(row)) {
      f.error('rejects', rel, `line ${k + 1}: "row" is ${JSON.stringify(row)}, expected an integer`, { field: 'row' });
      return;
    }
    const at = { row: row as number };
    if (r.source !== rec.source) f.error('rejects', rel, `line ${k + 1}: source ${JSON.stringify(r.source)}, the unit's shard is ${JSON.stringify(rec.source)}`, { ...at, field: 'source' });
    if (typeof r.field !== 'string' || typeof r.reason !== 'string' || !(r.id === null || typeof r.id === 'string')) {
      f.error('rejects', rel, `line ${k + 1}: expected {source, row, id: string|null, field: string, reason: string}`, at);
    }
    if ((row as number) < rec.first_row || (row as number) > lastRow) f.error('rejects', rel, `line ${k + 1}: row ${row} is outside the unit's rows ${rec.first_row}..${lastRow}`, at);
    if (shard.rejectRows.has(row as number)) f.error('rejects', rel, `line ${k + 1}: row ${row} is rejected twice`, at);
    if (shard.scoredIds.has(row as number)) f.error('rejects', rel, `line ${k + 1}: row ${row} is both rejected and scored`, at);
    shard.rejectRows.add(row as number);
  });
  report.checked.rejects += lines.length;
}

/** Re-read an input shard: every record must be one scored row (same id) or one reject, and nothing else. */
async function checkInput(path: string, shard: ShardSeen, config: RunIdentityView, bytesAtScoring: number | undefined, f: Findings, opener: ShardOpener, s3?: S3Options): Promise<void> {
  let now: InputFingerprint;
  try {
    now = await fingerprint(path, s3);
  } catch (e) {
    f.error('input', shard.source, `input cannot be read (${(e as Error).message.split('\n')[0]}): deleted or moved after scoring? Its ${shard.records.length} unit(s) cannot be checked against it`);
    return;
  }
  const scoredFrom = shard.records.filter((r) => r.input);
  const stale = scoredFrom.filter((r) => !sameInput(r.input!, now));
  if (stale.length) {
    f.error('input-changed', shard.source, `input changed after it was scored: now ${describeFingerprint(now)}, ${stale.length} unit(s) were scored from ${describeFingerprint(stale[0].input!)}; rerun rho score with --rescore-changed`);
  } else if (scoredFrom.length === 0 && bytesAtScoring !== undefined && now.bytes !== bytesAtScoring) {
    f.error('input-changed', shard.source, `input is ${now.bytes} bytes now, ${bytesAtScoring} when it was scored (manifest.json): it changed after scoring`);
  }
  const docsIn = shard.records.reduce((a, r) => a + r.docs_in, 0);
  // Rows of units with no record are reported once as a missing unit, not row by row.
  const doneParts = new Set(shard.records.filter((r) => !shard.unreadableParts.has(r.part)).map((r) => r.part));
  if (shard.brokenParts.size > 0) {
    f.warn('input', shard.source, `input not fully checked: ${shard.brokenParts.size} unit(s) of this shard have an unreadable completion record`);
  }
  const inDoneUnit = (row: number) => doneParts.has(Math.floor(row / config.unit_docs));
  let count = 0;
  try {
  for await (const item of readShard(path, { textField: config.text_field, idField: config.id_field ?? undefined }, opener)) {
    count++;
    if (item.kind === 'doc') {
      const { row, id } = item.doc;
      const out = shard.scoredIds.get(row);
      if (out === undefined) {
        if (inDoneUnit(row)) f.error('input', shard.source, `input row ${row} (id ${JSON.stringify(id)}) is a document, but the output has ${shard.rejectRows.has(row) ? 'a reject' : 'nothing'} for it`, { row, field: COL.id });
      } else if (out !== id) {
        f.error('input', shard.source, `input row ${row} has id ${JSON.stringify(id)}, the output row has ${JSON.stringify(out)}`, { row, field: COL.id });
      }
    } else {
      const { row } = item.reject;
      if (shard.scoredIds.has(row)) f.error('input', shard.source, `input row ${row} is rejected when read now (${item.reject.reason}), but the output has it scored`, { row, field: item.reject.field });
      else if (!shard.rejectRows.has(row) && inDoneUnit(row)) f.error('input', shard.source, `input row ${row} is rejected when read (${item.reject.reason}) but no rejects file lists it`, { row, field: item.reject.field });
    }
  }
  } catch (e) {
    if (!(e instanceof InputReadError)) throw e;
    f.error('input', shard.source, `input could not be read to the end (${e.cause.message}); checked its first ${count} records only`);
    return;
  }
  if (count !== docsIn && shard.brokenParts.size === 0) {
    // The rows no completed unit holds, as ranges (a missing unit may sit anywhere, not only at the end).
    const covered = new Set(shard.records.map((r) => r.part));
    const holes: string[] = [];
    for (let p = 0; p * config.unit_docs < count; p++) {
      if (!covered.has(p)) holes.push(`${p * config.unit_docs}..${Math.min(count, (p + 1) * config.unit_docs) - 1}`);
    }
    f.error('accounting', shard.source, `input has ${count} records, the output accounts for ${docsIn} (docs_in summed over ${shard.records.length} completed units)${holes.length ? `: rows ${holes.slice(0, 5).join(', ')}${holes.length > 5 ? ` and ${holes.length - 5} more ranges` : ''} are not in the output` : ''}`);
  }
}
