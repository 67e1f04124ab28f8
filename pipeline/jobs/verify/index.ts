// `rho verify`: re-checks an output dir against its own completion records, the output contract and (when
// reachable) the input shards, so a consumer can trust that every input document is accounted for exactly
// once and every file holds what its record says. Read-only: it never repairs anything. One file per kind
// of check: records.ts (completion records, data and rejects files), schema.ts, rows.ts (the row rule),
// manifest.ts, inputs.ts; report.ts holds the findings.
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { COL, SCHEMA_VERSION } from '../../../schemas/contract.js';
import { sha256 } from '../../../stages/write.js';
import { LAYOUT, dataPath, partName, recordKey, shardKey, unitName, type CompletionRecord } from '../../../schemas/layout.js';
import type { OutputStore } from '../../../schemas/store.js';
import { ConfigError } from '../../../schemas/errors.js';
import type { Manifest } from '../../../schemas/manifest.js';
import { isS3Uri, openerFor } from '../../io/open.js';
import { LocalStore } from '../../io/local.js';
import { Progress } from '../../run/progress.js';
import { Findings, DATA_FILE, text, type RunIdentityView, type ShardSeen, type VerifyOptions, type VerifyReport } from './report.js';
import { parseRecord, checkUnit, checkRejects } from './records.js';
import { readManifest, manifestInputs, checkManifest } from './manifest.js';
import { checkInput, fileToCheck, sourceToCheck } from './inputs.js';
import { INPUTS_DIR, readShardEntry } from '../../io/input-checks.js';
import { listSummaries, READ_CONCURRENCY, type RankSummary } from '../../run/records.js';
import { mapLimit } from '../../io/parallel.js';
import { STAGED_DIR } from '../../run/commit.js';

export type { Severity, Finding, VerifyOptions, VerifyReport } from './report.js';

export async function verifyOutput(dir: string, opts: VerifyOptions, store: OutputStore = new LocalStore(dir)): Promise<VerifyReport> {
  const { config, configSha } = await readConfig(dir, store);
  const f = new Findings(opts.maxPerFileCheck ?? 20);
  const report: VerifyReport = {
    output: dir, ok: false, config_sha256: configSha,
    checked: { units: 0, rows: 0, tokens: 0, rejects: 0, shards: 0 },
    inputs: { checked: [], unreachable: [] },
    errors: f.errors, warnings: f.warnings, suppressed: f.suppressed,
  };
  const all = await store.list('');
  for (const rel of all) if (rel.endsWith('.tmp')) f.warn('tmp', rel, 'stray temporary file (left by an interrupted write); safe to delete when no run is active');
  const { records, brokenUnits, referenced } = await readRecords(store, all, config, configSha, f);
  const manifest = await readManifest(store, f);
  checkUnclaimedFiles(dir, all, referenced, records, brokenUnits, manifest, f);
  const inputList = manifestInputs(manifest, f);
  const shards = shardsOf(records, brokenUnits, inputList, manifest);
  const registry = await readShardRegistry(store);
  for (const s of shards.values()) checkUnitLayout(s, config, f, manifest, registry);
  await checkData(store, shards, records, config, f, report, opts.progress ?? false);
  checkManifest(manifest, records.filter((r) => r.config_sha256 === configSha), configSha, new Set([...brokenUnits].map((u) => u.split('/')[0])), f);
  if (opts.inputs !== false) await checkInputs(shards, inputList, config, opts, f, report, store, manifest);
  for (const s of shards.values()) {
    if (s.records.length === 0 && !report.inputs.checked.includes(s.source)) {
      f.warn('missing-unit', keyOfShard(s, manifest), `input ${s.source} has no completed unit: an empty input, or not scored yet (re-read the inputs to tell)`);
    }
  }
  report.ok = f.errors.length === 0 && f.suppressed.errors === 0;
  return report;
}

/** `_rho/config.json`: the run identity the checks rely on, and its sha256 (the records' config_sha256). */
async function readConfig(dir: string, store: OutputStore): Promise<{ config: RunIdentityView; configSha: string }> {
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
  // The score job hashes the identity JSON without the trailing newline it writes.
  const configSha = sha256(new TextEncoder().encode(text(configBytes).replace(/\n$/, '')));
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
  return { config, configSha };
}

/** Every completion record (the unreadable ones are errors, their units noted), and files no record claims. */
async function readRecords(store: OutputStore, all: string[], config: RunIdentityView, configSha: string, f: Findings): Promise<{ records: CompletionRecord[]; brokenUnits: Set<string>; referenced: Set<string> }> {
  const records: CompletionRecord[] = [];
  const recordFiles = all.filter((r) => r.startsWith(`${LAYOUT.doneDir}/`) && r.endsWith('.json'));
  const referenced = new Set<string>();
  /** Units whose record exists but is unreadable: present for the missing-unit check, their data unverifiable. */
  const brokenUnits = new Set<string>();
  // Read in parallel (bounded), checked in listing order.
  const recordBytes = await mapLimit(recordFiles, READ_CONCURRENCY, (rel) => store.read(rel));
  const recordByUnit = new Map<string, CompletionRecord>();
  for (const [i, rel] of recordFiles.entries()) {
    const unit = rel.slice(LAYOUT.doneDir.length + 1, -'.json'.length);
    const bytes = recordBytes[i];
    if (!bytes) continue; // deleted since the listing
    const rec = parseRecord(rel, bytes, f);
    if (rec) recordByUnit.set(unit, rec);
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

  // Rank summaries: a cache of records, so each entry should equal the record it copies. The records are the
  // authority (a stale manifest built from a stale summary is an error of its own, below): a warning.
  const summaryFiles = (await listSummaries(store)).map((x) => x.rel);
  const summaryBytes = await mapLimit(summaryFiles, READ_CONCURRENCY, (rel) => store.read(rel));
  for (const [i, rel] of summaryFiles.entries()) {
    let summary: RankSummary;
    try {
      summary = JSON.parse(text(summaryBytes[i] ?? new Uint8Array())) as RankSummary;
    } catch (e) {
      f.warn('summary', rel, `rank summary is not valid JSON (${(e as Error).message}); delete it (the rank's next run rewrites it)`);
      continue;
    }
    for (const r of summary.records ?? []) {
      const stored = recordByUnit.get(r.unit);
      if (stored && JSON.stringify(stored) !== JSON.stringify(r)) {
        f.warn('summary', rel, `the entry of unit ${r.unit} differs from ${LAYOUT.doneDir}/${r.unit}.json; delete the summary (the rank's next run rewrites it)`, { field: 'records' });
      }
    }
  }

  return { records, brokenUnits, referenced };
}

/**
 * Files no record claims. A data file at a unit path of a shard of this run is an orphan of a crash (a
 * warning: rho score rewrites it); any other Parquet/Arrow file, or another output dir nested inside, is an
 * error: the output dir is rho's own, and a reader globbing all its Parquet files would count those rows too.
 */
function checkUnclaimedFiles(dir: string, all: string[], referenced: Set<string>, records: CompletionRecord[], brokenUnits: Set<string>, manifest: Manifest | null, f: Findings): void {
  const unitFolders = new Set<string>();
  for (const r of records) unitFolders.add(r.file.slice(0, r.file.lastIndexOf('/')));
  for (const u of brokenUnits) unitFolders.add(u.slice(0, u.lastIndexOf('/')));
  for (const sh of manifest?.shards ?? []) if (typeof sh?.key === 'string') { unitFolders.add(sh.key); unitFolders.add(`shard=${sh.key}`); }
  for (const rel of all) {
    if (rel.endsWith('.tmp') || referenced.has(rel)) continue;
    if (rel.startsWith(`${STAGED_DIR}/`)) {
      f.warn('staged', rel, 'staged data file not published: a runner died before or just after committing its unit (rho score on this dir publishes or deletes it); not part of the output');
      continue;
    }
    if (!rel.startsWith('_rho/') && rel !== LAYOUT.manifest && /(^|\/)(_rho\/config\.json|manifest\.json)$/.test(rel)) {
      f.error('nested-output', rel, `another output dir is nested inside this one (${rel.slice(0, rel.lastIndexOf('/')).replace(/\/_rho$/, '')}): readers of ${dir}/**/*.parquet count its files too; move it out`);
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
}

/** The folder of a shard's units: from its records, else the manifest, else (older outputs) its source. */
function keyOfShard(s: ShardSeen, manifest: Manifest | null): string {
  if (s.records.length) return recordKey(s.records[0]);
  return manifest?.shards?.find((x) => x.source === s.source)?.key ?? shardKey(s.source);
}

/** The shards of the dir: those the manifest lists as inputs and those records name, with their records in part order. */
function shardsOf(records: CompletionRecord[], brokenUnits: Set<string>, inputList: { source: string }[], manifest: Manifest | null): Map<string, ShardSeen> {
  const shards = new Map<string, ShardSeen>();
  const shardOf = (source: string) => {
    let s = shards.get(source);
    if (!s) shards.set(source, (s = { source, records: [], scoredIds: new Map(), rejectRows: new Set(), unreadableParts: new Set(), brokenParts: new Set() }));
    return s;
  };
  for (const i of inputList) shardOf(i.source);
  for (const r of records) shardOf(r.source).records.push(r);
  for (const s of shards.values()) {
    s.records.sort((a, b) => a.part - b.part);
    const key = keyOfShard(s, manifest);
    for (const u of brokenUnits) {
      const m = /^(.+)\/part-(\d{5})$/.exec(u);
      if (m && m[1] === key) s.brokenParts.add(Number(m[2]));
    }
  }
  return shards;
}

/** A shard's units: contiguous from part 0, each record consistent with the layout and the accounting. */
/** `_rho/inputs/<key>.json` (assignShardKeys): shard folder → the source its units are written with. */
async function readShardRegistry(store: OutputStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of await store.list(INPUTS_DIR)) {
    if (!rel.endsWith('.json')) continue;
    try {
      out.set(rel.slice(INPUTS_DIR.length + 1, -'.json'.length), (JSON.parse(text((await store.read(rel))!)) as { source: string }).source);
    } catch { /* an unreadable entry: the record checks below fall back to the legacy rule */ }
  }
  return out;
}

function checkUnitLayout(s: ShardSeen, config: RunIdentityView, f: Findings, manifest: Manifest | null, registry: Map<string, string>): void {
  const key = keyOfShard(s, manifest);
  const parts = new Set([...s.records.map((r) => r.part), ...s.brokenParts]);
  if (parts.size === 0) return; // an empty input, or not scored at all: decided after the inputs are read
  const last = Math.max(...parts);
  for (let p = 0; p <= last; p++) {
    if (!parts.has(p)) {
      f.error('missing-unit', `${key}/${partName(p)}`, `unit ${p} of ${s.source} (rows ${p * config.unit_docs}..${(p + 1) * config.unit_docs - 1}) has no completion record although unit ${last} does; rerun rho score on this output dir`);
    }
  }
  for (const r of s.records) {
    const rel = `${LAYOUT.doneDir}/${r.unit}.json`;
    // A shard's folder is the one registered for its file (whatever spelling a later run used), or, in older
    // outputs, shardKey(source).
    const registered = registry.get(recordKey(r));
    const expectedUnit = unitName({ ...r, key: registered === r.source ? recordKey(r) : undefined });
    if (r.unit !== expectedUnit) f.error('record', rel, `unit ${r.unit} does not match source ${s.source} part ${r.part} (expected ${expectedUnit})`, { field: 'unit' });
    if (r.first_row !== r.part * config.unit_docs) f.error('record', rel, `first_row ${r.first_row} but part ${r.part} x unit_docs ${config.unit_docs} = ${r.part * config.unit_docs}`, { field: 'first_row' });
    const expectedFile = dataPath({ ...r, key: recordKey(r) }, config.format);
    if (r.file !== expectedFile && r.file !== dataPath({ ...r, key: recordKey(r) }, config.format, true)) f.error('record', rel, `file is ${r.file}, expected ${expectedFile}`, { field: 'file' });
    if (r.docs_in !== r.scored + r.rejected) f.error('accounting', rel, `docs_in ${r.docs_in} != scored ${r.scored} + rejected ${r.rejected}`, { field: 'docs_in' });
    if (r.part < last && r.docs_in !== config.unit_docs) f.error('accounting', rel, `docs_in ${r.docs_in} but every unit before the shard's last holds unit_docs = ${config.unit_docs} records`, { field: 'docs_in' });
    if (r.docs_in > config.unit_docs) f.error('accounting', rel, `docs_in ${r.docs_in} exceeds unit_docs ${config.unit_docs}`, { field: 'docs_in' });
  }
}

/** Each unit's data and rejects files against its record and the contract; ids repeated across the output. */
async function checkData(store: OutputStore, shards: Map<string, ShardSeen>, records: CompletionRecord[], config: RunIdentityView, f: Findings, report: VerifyReport, progress: boolean): Promise<void> {
  const totalBytes = records.reduce((a, r) => a + r.bytes, 0);
  let bytesDone = 0;
  const progressLine = new Progress(totalBytes, () => ({ docs: report.checked.rows, rejected: report.checked.rejects, tokens: report.checked.tokens, inputBytesDone: bytesDone }), progress);
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
        progressLine.draw();
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
  } finally {
    progressLine.stop();
  }
}

/** Inputs: every input record accounted for (read only when reachable, unless required). */
async function checkInputs(shards: Map<string, ShardSeen>, inputList: { source: string; bytes: number }[], config: RunIdentityView, opts: VerifyOptions, f: Findings, report: VerifyReport, store: OutputStore, manifest: Manifest | null): Promise<void> {
  const resolve = (source: string) => (opts.inputsBase && !isAbsolute(source) && !source.includes('://') ? join(opts.inputsBase, source) : source);
  // s3:// inputs are read through the S3 opener (a missing key is then a read error, reported per shard).
  const given = new Map((opts.sources ?? []).map((src) => [src.name, src]));
  const reachable = (p: string) => given.has(p) || isS3Uri(p) || (existsSync(p) && statSync(p).isFile());
  const sources = [...shards.keys()];
  const unreachable = sources.filter((src) => !given.has(src) && !reachable(resolve(src)));
  report.inputs.unreachable = unreachable;
  if (opts.inputs === true) {
    for (const src of unreachable) f.error('input', src, `input not reachable at ${resolve(src)}; pass --inputs-base DIR (the directory rho score ran in) or --no-inputs`);
  }
  if (opts.inputs === true || unreachable.length === 0) {
    const bytesBySource = new Map(inputList.map((i) => [i.source, i.bytes]));
    for (const s of shards.values()) {
      if (unreachable.includes(s.source)) continue;
      const src = given.get(s.source);
      const input = src ? sourceToCheck(src) : fileToCheck(resolve(s.source), config, await openerFor(s.source, opts.s3), opts.s3);
      const entry = src ? null : await readShardEntry(store, keyOfShard(s, manifest));
      await checkInput(input, s, config, bytesBySource.get(s.source), f, entry?.input);
      report.inputs.checked.push(s.source);
    }
  }
}
