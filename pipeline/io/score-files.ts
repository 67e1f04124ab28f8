// Reading rho score outputs back (`select`, `export`): list the data files of an output dir, check they can be
// read as one dataset (same schema version, tokenizer, models and columns), and stream their record batches
// with bounded memory (one Parquet batch / one Arrow IPC record batch at a time).
import { closeSync, existsSync, fsyncSync, mkdirSync, openAsBlob, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { RecordBatchReader, tableFromIPC, DataType, type RecordBatch, type Schema, type Data, type Bool } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { COL, META, SCHEMA_VERSION, logprobColumn } from '../../schemas/contract.js';
import { LAYOUT } from '../../schemas/layout.js';
import type { Manifest } from '../../schemas/manifest.js';
import { ConfigError } from '../../schemas/errors.js';
import type { OutputFormat } from '../../stages/write.js';

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
  tokenizer: { path: string; sha256: string } | null;
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
    const format: OutputFormat = rel.endsWith('.arrow') ? 'arrow' : 'parquet';
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
    const v = parseJson(f, META.tokenizer) as { path?: unknown; sha256?: unknown };
    return { path: String(v?.path ?? ''), sha256: String(v?.sha256 ?? '') };
  };

  for (const f of files) {
    const v = Number(meta(f, META.schemaVersion));
    if (v !== SCHEMA_VERSION) throw new ConfigError(`${f.path}: schema version ${meta(f, META.schemaVersion)}, but this rho reads version ${SCHEMA_VERSION}`);
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
 * Provenance of the whole set: the first file's metadata without the per-file keys (`rho.unit`), with
 * `rho.inputs` as the union over the files.
 */
export function setProvenance(set: ScoreSet): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of set.files[0].metadata) if (k !== META.unit && k !== 'ARROW:schema') out[k] = v;
  const inputs = new Map<string, unknown>();
  for (const f of set.files) {
    const v = f.metadata.get(META.inputs);
    if (!v) continue;
    try {
      for (const s of JSON.parse(v) as { source: string }[]) inputs.set(s.source, s);
    } catch { /* kept as is from the first file */ }
  }
  if (inputs.size) out[META.inputs] = JSON.stringify([...inputs.values()]);
  return out;
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
