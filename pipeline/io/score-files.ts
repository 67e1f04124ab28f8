// Reading rho score outputs back (`select`, `export`): list the data files of an output dir, check they can be
// read as one dataset (same schema version, tokenizer, models and columns), and stream their record batches
// with bounded memory (one Parquet batch / one Arrow IPC record batch at a time).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openAsBlob, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { RecordBatchReader, tableFromIPC, DataType, type RecordBatch, type Schema, type Data, type Bool } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { COL, META, PER_FILE_KEYS, SCHEMA_VERSION, SELECT_META, logprobColumn, provenanceViews, type ProvenanceViews } from '../../schemas/contract.js';
import { LAYOUT, formatOf } from '../../schemas/layout.js';
import type { Manifest } from '../../schemas/manifest.js';
import { ConfigError } from '../../schemas/errors.js';
import type { OutputFormat } from '../../stages/write.js';
import { boolListBytes } from '../../stages/lists.js';

export interface ScoreFile {
  /** Path relative to the dir root, e.g. `clean-1a2b3c4d/part-00000.parquet`: the name the file keeps in derived outputs. */
  rel: string;
  path: string;
  format: OutputFormat;
  bytes: number;
  /** The Parquet key-value metadata (Arrow IPC: the schema metadata). */
  metadata: Map<string, string>;
  schema: Schema;
}

export interface ScoreSet {
  root: string;
  /** In training order: sorted by relative path (shard key, then part number); rows in file order. */
  files: ScoreFile[];
  schemaVersion: number;
  /** Model names from `rho.models`, in column order. */
  models: string[];
  tokenizer: { path: string; resolvedPath?: string; sha256: string } | null;
  context: number | null;
  stride: number | null;
  /** Per-token float columns (`<model>_logprob`, `<model>_entropy`), in schema order. */
  scoreColumns: string[];
  /** The input already has `select_mask` and `labels`. */
  hasSelect: boolean;
  /** manifest.json of the dir, when there is one. */
  manifest: Manifest | null;
}

const DATA_FILE = /\.(parquet|arrow)$/;

/** Data files under `root` (recursive), skipping rho's `_rho/` folder, hidden entries and temp files. */
export function listScoreFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('.') || name.endsWith('.tmp')) continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) {
        if (!(dir === root && name === '_rho')) walk(p);
      } else if (DATA_FILE.test(name)) out.push(relative(root, p));
    }
  };
  walk(root);
  // Plain code-unit order: stable across machines and locales, and part-NNNNN sorts numerically.
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

async function readFileHeader(path: string, format: OutputFormat): Promise<{ metadata: Map<string, string>; schema: Schema }> {
  if (format === 'parquet') {
    const file = await pq.ParquetFile.fromFile(await openAsBlob(path));
    try {
      const kv = file.metadata().fileMetadata().keyValueMetadata() as Map<string, string>;
      const schema = tableFromIPC(file.schema().intoIPCStream() as Uint8Array).schema;
      return { metadata: new Map([...kv].map(([k, v]) => [String(k), String(v)])), schema };
    } finally {
      file.free();
    }
  }
  const fh = await open(path, 'r');
  try {
    const reader = await RecordBatchReader.from(fh);
    await reader.open();
    return { metadata: new Map(reader.schema.metadata), schema: reader.schema };
  } finally {
    await fh.close();
  }
}

const fieldSignature = (s: Schema) => s.fields.map((f) => `${f.name}: ${String(f.type)}`).join(', ');

/**
 * List and check the score files of an output dir. Every problem is a ConfigError naming the file and what
 * differs, raised before any output is written.
 */
export async function openScoreSet(root: string): Promise<ScoreSet> {
  let isDir = false;
  try { isDir = statSync(root).isDirectory(); } catch { /* reported below */ }
  if (!isDir) throw new ConfigError(`${root}: not a directory; give the --output dir of a \`rho score\` run`);
  const rels = listScoreFiles(root);
  if (rels.length === 0) throw new ConfigError(`${root}: no score files (<shard>/part-NNNNN.parquet or .arrow) found; give the --output dir of a \`rho score\` run`);

  const files: ScoreFile[] = [];
  for (const rel of rels) {
    const path = join(root, rel);
    const format: OutputFormat = formatOf(rel);
    let header: { metadata: Map<string, string>; schema: Schema };
    try {
      header = await readFileHeader(path, format);
    } catch (e) {
      throw new ConfigError(`${path}: cannot be read as ${format === 'parquet' ? 'Parquet' : 'Arrow IPC'} (${(e as Error).message})`);
    }
    files.push({ rel, path, format, bytes: statSync(path).size, ...header });
  }

  const first = files[0];
  const meta = (f: ScoreFile, key: string): string => {
    const v = f.metadata.get(key);
    if (v === undefined) throw new ConfigError(`${f.path}: not a rho score file (metadata key ${key} is missing)`);
    return v;
  };
  const parseJson = (f: ScoreFile, key: string): unknown => {
    try { return JSON.parse(meta(f, key)); } catch (e) { throw new ConfigError(`${f.path}: metadata ${key} is not valid JSON (${(e as Error).message})`); }
  };
  const modelsOf = (f: ScoreFile) => {
    const v = parseJson(f, META.models);
    if (!Array.isArray(v) || v.some((m) => typeof m?.name !== 'string')) throw new ConfigError(`${f.path}: metadata ${META.models} is not a list of {name, sha256}`);
    return v as { name: string; sha256?: string }[];
  };
  const tokenizerOf = (f: ScoreFile) => {
    if (!f.metadata.has(META.tokenizer)) return null;
    const v = parseJson(f, META.tokenizer) as { path?: unknown; resolved_path?: unknown; sha256?: unknown };
    return { path: String(v?.path ?? ''), resolvedPath: typeof v?.resolved_path === 'string' ? v.resolved_path : undefined, sha256: String(v?.sha256 ?? '') };
  };

  for (const f of files) {
    const v = Number(meta(f, META.schemaVersion));
    if (v !== SCHEMA_VERSION) throw new ConfigError(`${f.path}: schema version ${meta(f, META.schemaVersion)}, but this rho reads version ${SCHEMA_VERSION}`);
    if (f.metadata.get(SELECT_META.layout) === 'compact') {
      throw new ConfigError(`${f.path}: a compact selection file (rho select --compact) holds only the mask; give the score dir as the input and ${root} as --selection`);
    }
    for (const c of [COL.id, COL.source, COL.row, COL.tokenIds]) {
      if (!f.schema.fields.some((x) => x.name === c)) throw new ConfigError(`${f.path}: column "${c}" is missing`);
    }
    for (const m of modelsOf(f)) {
      if (!f.schema.fields.some((x) => x.name === logprobColumn(m.name))) throw new ConfigError(`${f.path}: metadata names model "${m.name}" but column "${logprobColumn(m.name)}" is missing`);
    }
  }
  // One dataset: everything that changes the meaning of a token id or a score must agree with the first file.
  const modelKey = (f: ScoreFile) => JSON.stringify(modelsOf(f).map((m) => [m.name, m.sha256 ?? null]).sort());
  for (const f of files.slice(1)) {
    const differs = (what: string, a: string, b: string) =>
      new ConfigError(`${f.path} and ${first.path} come from different ${what} (${b} vs ${a}); select/export one score run at a time`);
    if (meta(f, META.schemaVersion) !== meta(first, META.schemaVersion)) throw differs('schema versions', meta(first, META.schemaVersion), meta(f, META.schemaVersion));
    const ta = tokenizerOf(first)?.sha256 ?? 'none';
    const tb = tokenizerOf(f)?.sha256 ?? 'none';
    if (ta !== tb) throw differs('tokenizers', `tokenizer sha256 ${ta.slice(0, 12)}`, `tokenizer sha256 ${tb.slice(0, 12)}`);
    if (modelKey(f) !== modelKey(first)) throw differs('model sets', modelKey(first), modelKey(f));
    if (fieldSignature(f.schema) !== fieldSignature(first.schema)) throw differs('column sets', fieldSignature(first.schema), fieldSignature(f.schema));
  }

  const scoreColumns = first.schema.fields
    .filter((f) => DataType.isList(f.type) && DataType.isFloat(f.type.children[0].type))
    .map((f) => f.name);
  const names = new Set(first.schema.fields.map((f) => f.name));
  const num = (key: string) => (first.metadata.has(key) ? Number(first.metadata.get(key)) : null);
  let manifest: Manifest | null = null;
  try { manifest = JSON.parse(readFileSync(join(root, LAYOUT.manifest), 'utf8')) as Manifest; } catch { /* a dir without manifest is still readable */ }
  return {
    root,
    files,
    schemaVersion: Number(meta(first, META.schemaVersion)),
    models: modelsOf(first).map((m) => m.name),
    tokenizer: tokenizerOf(first),
    context: num(META.context),
    stride: num(META.stride),
    scoreColumns,
    hasSelect: names.has(COL.selectMask) && names.has(COL.labels),
    manifest,
  };
}

/**
 * Provenance of the whole set, in every form (provenanceViews): the first file's `rho.*` keys without the per-file
 * ones (`rho.unit`, `rho.select.score_file`), `rho.inputs` as the union over the files, plus `extra` keys.
 */
export function setProvenance(set: ScoreSet, extra: Record<string, string> = {}): ProvenanceViews {
  const out: Record<string, string> = {};
  for (const [k, v] of set.files[0].metadata) if (k.startsWith('rho.') && k !== META.all && !PER_FILE_KEYS.includes(k)) out[k] = v;
  const inputs = new Map<string, unknown>();
  for (const f of set.files) {
    const v = f.metadata.get(META.inputs);
    if (!v) continue;
    try {
      for (const s of JSON.parse(v) as { source: string }[]) inputs.set(s.source, s);
    } catch { /* kept as is from the first file */ }
  }
  if (inputs.size) out[META.inputs] = JSON.stringify([...inputs.values()]);
  return provenanceViews({ ...out, ...extra });
}

// ---- compact selections (`rho select --compact`): source, row, select_mask per score row ----

export interface SelectionSet {
  root: string;
  /** Selection file of each score file, by the score file's `rel`. */
  byScoreFile: Map<string, ScoreFile>;
  /** The selection's `rho.select.*` keys (from its first file, without the per-file score_file key). */
  selectMeta: Record<string, string>;
}

/** A compact selection file's rows: (source, row) and the 0/1 mask of each token. */
export interface SelectionRows {
  sources: string[];
  rows: number[];
  /** rows + 1 offsets into `mask`. */
  offsets: Int32Array;
  mask: Uint8Array;
}

const sansExt = (rel: string) => rel.replace(DATA_FILE, '');

/**
 * Open a compact selection dir made from `set`: every score file must have its selection file (same relative path),
 * made from exactly that file (sha256 and row count recorded by `rho select --compact`).
 */
export async function openSelection(root: string, set: ScoreSet): Promise<SelectionSet> {
  let isDir = false;
  try { isDir = statSync(root).isDirectory(); } catch { /* reported below */ }
  if (!isDir) throw new ConfigError(`--selection ${root}: not a directory; give the --output dir of \`rho select --compact\``);
  const byRel = new Map<string, string>();
  for (const rel of listScoreFiles(root)) byRel.set(sansExt(rel), rel);
  const byScoreFile = new Map<string, ScoreFile>();
  let selectMeta: Record<string, string> | null = null;
  for (const f of set.files) {
    const rel = byRel.get(sansExt(f.rel));
    if (!rel) throw new ConfigError(`--selection ${root}: no selection file for score file ${f.rel} (was the selection made from ${set.root}?)`);
    const path = join(root, rel);
    const format: OutputFormat = formatOf(rel);
    const header = await readFileHeader(path, format).catch((e: Error) => { throw new ConfigError(`${path}: cannot be read (${e.message})`); });
    const md = header.metadata;
    if (md.get(SELECT_META.layout) !== 'compact') throw new ConfigError(`${path}: not a compact selection file (metadata ${SELECT_META.layout} is ${md.get(SELECT_META.layout) ?? 'missing'}); a full-copy selection dir is itself the input: rho export ${root}`);
    let ref: { file?: string; sha256?: string; rows?: number };
    try { ref = JSON.parse(md.get(SELECT_META.scoreFile) ?? 'null') as typeof ref; } catch { ref = {}; }
    const sha = createHash('sha256').update(readFileSync(f.path)).digest('hex');
    if (!ref || ref.sha256 !== sha) {
      throw new ConfigError(`${path}: made from a different score file than ${f.path} (metadata ${SELECT_META.scoreFile} sha256 ${String(ref?.sha256).slice(0, 12)}, the file's is ${sha.slice(0, 12)}); rerun rho select --compact on ${set.root}`);
    }
    byScoreFile.set(f.rel, { rel, path, format, bytes: statSync(path).size, ...header });
    if (!selectMeta) {
      selectMeta = {};
      for (const [k, v] of md) if (k.startsWith('rho.select.') && !PER_FILE_KEYS.includes(k)) selectMeta[k] = v;
    }
  }
  if (byScoreFile.size !== byRel.size) {
    const extra = [...byRel.values()].filter((rel) => ![...byScoreFile.values()].some((s) => s.rel === rel));
    throw new ConfigError(`--selection ${root}: ${extra.length} file(s) without a score file in ${set.root}, e.g. ${extra[0]}`);
  }
  return { root, byScoreFile, selectMeta: selectMeta ?? {} };
}

/** Read a whole compact selection file (1 byte per token in memory: small next to its score file). */
export async function readSelectionRows(file: ScoreFile): Promise<SelectionRows> {
  const sources: string[] = [];
  const rows: number[] = [];
  const lengths: number[] = [];
  const parts: Uint8Array[] = [];
  for await (const batch of fileBatches(file)) {
    const src = batch.getChild(COL.source)!;
    const row = batch.getChild(COL.row)!;
    const m = boolListBytes(batch, COL.selectMask);
    for (let r = 0; r < batch.numRows; r++) {
      sources.push(String(src.get(r)));
      rows.push(Number(row.get(r)));
      lengths.push(m.offsets[r + 1] - m.offsets[r]);
    }
    parts.push(m.bytes.subarray(m.offsets[0], m.offsets[batch.numRows]));
  }
  const offsets = new Int32Array(lengths.length + 1);
  for (let i = 0; i < lengths.length; i++) offsets[i + 1] = offsets[i] + lengths[i];
  const mask = new Uint8Array(offsets[lengths.length]);
  let at = 0;
  for (const p of parts) { mask.set(p, at); at += p.length; }
  return { sources, rows, offsets, mask };
}

/** Record batches of one file, in row order; `columns` projects Parquet reads (Arrow IPC batches come whole). */
export async function* fileBatches(file: ScoreFile, columns?: string[]): AsyncGenerator<RecordBatch> {
  if (file.format === 'parquet') {
    const pf = await pq.ParquetFile.fromFile(await openAsBlob(file.path));
    try {
      const stream = await pf.stream({ columns, batchSize: 1024 });
      for await (const wasmBatch of stream as unknown as AsyncIterable<pq.RecordBatch>) {
        // intoIPCStream() consumes (frees) the wasm batch.
        const table = tableFromIPC(wasmBatch.intoIPCStream() as Uint8Array);
        for (const b of table.batches) yield b;
      }
    } finally {
      pf.free();
    }
    return;
  }
  const fh = await open(file.path, 'r');
  try {
    const reader = await RecordBatchReader.from(fh);
    // No projection for IPC: the batch is already decoded, and arrow-js 21's RecordBatch.select drops children.
    for await (const b of reader as AsyncIterable<RecordBatch>) yield b;
  } finally {
    await fh.close();
  }
}

/** Every record batch of the set in training order, with the file it belongs to. */
export async function* setBatches(set: ScoreSet, columns?: string[]): AsyncGenerator<{ file: ScoreFile; fileIndex: number; batch: RecordBatch }> {
  for (let i = 0; i < set.files.length; i++) {
    for await (const batch of fileBatches(set.files[i], columns)) yield { file: set.files[i], fileIndex: i, batch };
  }
}

export { listView, boolListBytes, type ListView } from '../../stages/lists.js';

// ---- derived output dirs (select, export): built in a staging dir, then renamed into place ----

/** Refuse an output that exists and is not an empty dir, unless overwriting. */
export function checkOutputDir(output: string, overwrite: boolean): void {
  if (!existsSync(output)) return;
  if (!statSync(output).isDirectory()) throw new ConfigError(`--output ${output} exists and is not a directory`);
  if (readdirSync(output).length > 0 && !overwrite) throw new ConfigError(`--output ${output} exists and is not empty; choose another dir or pass --overwrite to replace it`);
}

/** A fresh hidden dir next to `output`: the final rename then stays on one file system (atomic). */
export function stagingDir(output: string): string {
  const parent = dirname(resolve(output));
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.${basename(output)}.rho-${process.pid}-${Date.now().toString(36)}.tmp`);
  mkdirSync(tmp);
  return tmp;
}

/** Put a finished staging dir in place of `output` (which checkOutputDir allowed to be replaced). */
export function publishDir(tmp: string, output: string): void {
  if (existsSync(output)) {
    const old = `${tmp}.old`;
    renameSync(output, old);
    renameSync(tmp, output);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, output);
  }
  const dfd = openSync(dirname(resolve(output)), 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}
