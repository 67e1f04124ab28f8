// Readers: JSONL (plain, .gz, .zst), Parquet and Arrow IPC, streamed record by record. A reader never
// throws for bad records: it yields a reject that names the file, row and field, so the run's accounting
// adds up. It throws only when the file cannot be opened at all.
import { createReadStream, openAsBlob } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { pipeline, Readable } from 'node:stream';
import { Decompress as ZstdDecompress } from 'fzstd';
import { RecordBatchReader, tableFromIPC, DataType, type RecordBatch, type Vector } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import type { DocumentSource, ReadItem } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';

export interface ReadOptions {
  textField: string;
  /** When unset, ids are `<source>#<row>`. */
  idField?: string;
  /** Rows before this index are counted but not yielded (resume skips finished work units). */
  skipRowsBefore?: (row: number) => boolean;
}

export type ShardFormat = 'jsonl' | 'parquet' | 'arrow';

const FORMAT_BY_EXT: Record<string, ShardFormat> = {
  jsonl: 'jsonl', ndjson: 'jsonl', json: 'jsonl',
  parquet: 'parquet', pq: 'parquet',
  arrow: 'arrow', ipc: 'arrow', feather: 'arrow', arrows: 'arrow',
};

/** Format and compression from the file name: `x.jsonl.gz` → jsonl + gzip. */
export function shardFormat(source: string): { format: ShardFormat; compression: 'gzip' | 'zstd' | null } {
  const parts = source.toLowerCase().split('/').pop()!.split('.');
  let compression: 'gzip' | 'zstd' | null = null;
  if (parts.at(-1) === 'gz') { compression = 'gzip'; parts.pop(); }
  else if (parts.at(-1) === 'zst' || parts.at(-1) === 'zstd') { compression = 'zstd'; parts.pop(); }
  const format = FORMAT_BY_EXT[parts.at(-1) ?? ''];
  if (!format || (compression && format !== 'jsonl')) {
    throw new Error(`${source}: unknown shard format; expected .jsonl/.ndjson (optionally .gz or .zst), .parquet, or .arrow/.ipc/.feather`);
  }
  return { format, compression };
}

/** Byte source for a shard; local files by default. Object stores plug in here. */
export interface ShardOpener {
  stream(source: string): Readable;
  blob(source: string): Promise<Blob>;
}

export const localFiles: ShardOpener = {
  stream: (source) => createReadStream(source, { highWaterMark: 1 << 20 }),
  blob: (source) => openAsBlob(source),
};

export function readShard(source: string, opts: ReadOptions, opener: ShardOpener = localFiles): AsyncGenerator<ReadItem> {
  const { format, compression } = shardFormat(source);
  if (format === 'jsonl') return readJsonl(source, compression, opts, opener);
  if (format === 'parquet') return readParquet(source, opts, opener);
  return readArrow(source, opts, opener);
}

/**
 * The read stage, for pipelines composed without the executor (the executor reads its inputs itself, unit by
 * unit): shard paths (or document sources) in, their records out, in order.
 */
export function readStage(opts: ReadOptions, opener: ShardOpener = localFiles): Stage<string | DocumentSource, ReadItem> {
  return stage('read', async function* (inputs) {
    for await (const input of inputs) yield* typeof input === 'string' ? readShard(input, opts, opener) : readDocuments(input);
  });
}

/**
 * A document source's records: row = the index of the document it yielded. A document without a string `text`,
 * or with an `id` that is neither a non-empty string nor a number, is a reject naming the source, row and field.
 */
export async function* readDocuments(src: DocumentSource): AsyncGenerator<ReadItem> {
  let row = 0;
  for await (const d of src.documents()) {
    const r = row++;
    if (d === null || typeof d !== 'object') {
      yield reject(src.name, r, null, 'line', `document source "${src.name}" yielded ${typeOf(d)}, expected an object { id?, text }`);
      continue;
    }
    const rec = d as unknown as Record<string, unknown>;
    if (rec.id === undefined) yield fromRecord(src.name, r, rec, { textField: 'text' }, '');
    else yield fromRecord(src.name, r, rec, { textField: 'text', idField: 'id' }, '');
  }
}

/** Decoded bytes one push into the zstd decoder should produce. fzstd decodes synchronously everything a push
 * completes, so handing it whole 1 MiB reads of highly compressible text (500:1) put 500 MiB in memory at once;
 * the input is therefore cut into slices sized by the ratio seen so far (1-64 KiB). */
const ZSTD_OUT_PER_PUSH = 1 << 20;

/** zstd decoding with memory bounded by one slice's output: pulled, so nothing is decoded before it is wanted. */
async function* zstdChunks(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let out: Buffer[] = [];
  let fed = 0;
  let decoded = 0;
  const decoder = new ZstdDecompress((c) => { decoded += c.byteLength; out.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength)); });
  for await (const chunk of input) {
    for (let i = 0; i < chunk.length;) {
      const ratio = fed > 0 ? Math.max(1, decoded / fed) : 64;
      const slice = Math.min(64 << 10, Math.max(1 << 10, Math.floor(ZSTD_OUT_PER_PUSH / ratio)));
      decoder.push(chunk.subarray(i, i + slice));
      fed += Math.min(slice, chunk.length - i);
      i += slice;
      if (out.length) { const o = out; out = []; yield* o; }
    }
  }
  try {
    decoder.push(new Uint8Array(0), true);
  } catch (e) {
    throw new Error(`truncated or corrupt zstd stream (${(e as Error).message})`);
  }
  yield* out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

async function* jsonlLines(source: string, compression: 'gzip' | 'zstd' | null, opener: ShardOpener): AsyncGenerator<{ line: Buffer; lineNo: number } | { error: Error; lineNo: number }> {
  let input: AsyncIterable<Buffer> = opener.stream(source);
  // pipeline() (unlike pipe()) forwards a read error of the file to the decompressor, so the loop below ends.
  if (compression === 'gzip') input = pipeline(input as Readable, createGunzip(), () => {});
  else if (compression === 'zstd') input = zstdChunks(input);
  let carry: Buffer | null = null;
  let lineNo = 0;
  try {
    for await (const chunk of input) {
      const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(10, start);
        if (nl < 0) break;
        lineNo++;
        yield { line: buf.subarray(start, nl), lineNo };
        start = nl + 1;
      }
      carry = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const what = err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message) ? `truncated ${compression ?? ''} stream` : 'read error';
    yield { error: new Error(`${what}: ${err.message}`), lineNo: lineNo + 1 };
    return;
  }
  if (carry && carry.length > 0) {
    lineNo++;
    yield { line: carry, lineNo };
  }
}

async function* readJsonl(source: string, compression: 'gzip' | 'zstd' | null, opts: ReadOptions, opener: ShardOpener): AsyncGenerator<ReadItem> {
  let row = 0;
  for await (const item of jsonlLines(source, compression, opener)) {
    if ('error' in item) {
      // The rest of the file is unreadable: one reject stands for it, at the row where reading stopped.
      yield reject(source, row, null, 'file', `line ${item.lineNo}: ${item.error.message}; the rest of the file (if any) could not be read`);
      return;
    }
    const { line, lineNo } = item;
    // Blank lines (incl. a trailing "\r") are not documents and get no row index.
    if (isBlank(line)) continue;
    const r = row++;
    if (opts.skipRowsBefore?.(r)) continue;
    let text: string;
    try {
      text = utf8.decode(line);
    } catch {
      yield reject(source, r, null, 'line', `line ${lineNo}: invalid UTF-8`);
      continue;
    }
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (e) {
      yield reject(source, r, null, 'line', `line ${lineNo}: malformed JSON (${(e as Error).message})`);
      continue;
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      yield reject(source, r, null, 'line', `line ${lineNo}: expected a JSON object, got ${Array.isArray(record) ? 'an array' : typeOf(record)}`);
      continue;
    }
    yield fromRecord(source, r, record as Record<string, unknown>, opts, `line ${lineNo}: `);
  }
}

function isBlank(line: Buffer): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c !== 32 && c !== 9 && c !== 13) return false;
  }
  return true;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function reject(source: string, row: number, id: string | null, field: string, reason: string): ReadItem {
  return { kind: 'reject', reject: { source, row, id, field, reason } };
}

function fromRecord(source: string, row: number, rec: Record<string, unknown>, opts: ReadOptions, where: string): ReadItem {
  let id: string = `${source}#${row}`;
  if (opts.idField !== undefined) {
    const raw = rec[opts.idField];
    if (typeof raw === 'string' && raw.length > 0) id = raw;
    else if (typeof raw === 'number' || typeof raw === 'bigint') id = String(raw);
    else {
      const why = raw === undefined ? 'is missing' : `is ${typeOf(raw)}${raw === '' ? ' (empty string)' : ''}, expected a string or number`;
      return reject(source, row, null, opts.idField, `${where}id field "${opts.idField}" ${why}`);
    }
  }
  const text = rec[opts.textField];
  if (typeof text !== 'string') {
    const why = text === undefined ? 'is missing' : `is ${typeOf(text)}, expected a string`;
    return reject(source, row, opts.idField !== undefined ? id : null, opts.textField, `${where}text field "${opts.textField}" ${why}`);
  }
  return { kind: 'doc', doc: { source, row, id, text } };
}

/** Columnar shards (Parquet, Arrow): check the columns once per batch, then read row by row. */
function* fromColumns(source: string, firstRow: number, numRows: number, get: (name: string) => Vector | null, opts: ReadOptions): Generator<ReadItem> {
  const textCol = get(opts.textField);
  const idCol = opts.idField !== undefined ? get(opts.idField) : null;
  const textProblem = columnProblem(textCol, opts.textField, ['utf8']);
  const idProblem = opts.idField !== undefined ? columnProblem(idCol, opts.idField, ['utf8', 'int']) : null;
  for (let i = 0; i < numRows; i++) {
    const row = firstRow + i;
    if (opts.skipRowsBefore?.(row)) continue;
    if (idProblem) { yield reject(source, row, null, opts.idField!, idProblem); continue; }
    const rec: Record<string, unknown> = {};
    if (idCol) rec[opts.idField!] = idCol.get(i);
    if (textProblem) {
      yield reject(source, row, idCol ? String(idCol.get(i)) : null, opts.textField, textProblem);
      continue;
    }
    rec[opts.textField] = textCol!.get(i) ?? undefined;
    if (rec[opts.textField] === undefined) {
      yield reject(source, row, idCol ? String(idCol.get(i)) : null, opts.textField, `text column "${opts.textField}" is null`);
      continue;
    }
    yield fromRecord(source, row, rec, opts, '');
  }
}

function columnProblem(col: Vector | null, name: string, kinds: ('utf8' | 'int')[]): string | null {
  if (!col) return `column "${name}" is missing from the file`;
  const t = DataType.isDictionary(col.type) ? col.type.dictionary : col.type;
  const ok = (kinds.includes('utf8') && (DataType.isUtf8(t) || DataType.isLargeUtf8(t))) || (kinds.includes('int') && DataType.isInt(t));
  return ok ? null : `column "${name}" has type ${String(t)}, expected ${kinds.join(' or ')}`;
}

async function* readParquet(source: string, opts: ReadOptions, opener: ShardOpener): AsyncGenerator<ReadItem> {
  const file = await pq.ParquetFile.fromFile(await opener.blob(source));
  try {
    const wanted = [opts.textField, ...(opts.idField !== undefined ? [opts.idField] : [])];
    const meta = file.metadata();
    const fileMeta = meta.fileMetadata();
    const numRows = Number(fileMeta.numRows());
    // Project only the columns we need; a missing column is reported per row (accounting), not thrown.
    const present = new Set<string>();
    const arrowSchema = tableFromIPC(file.schema().intoIPCStream() as Uint8Array).schema;
    for (const f of arrowSchema.fields) present.add(f.name);
    const columns = wanted.filter((c) => present.has(c));
    if (columns.length === 0) {
      yield* fromColumns(source, 0, numRows, () => null, opts);
      return;
    }
    let row = 0;
    const stream = await file.stream({ columns, batchSize: 1024 });
    for await (const rb of stream as unknown as AsyncIterable<pq.RecordBatch>) {
      const batch = tableFromIPC(rb.intoIPCStream() as Uint8Array);
      yield* fromColumns(source, row, batch.numRows, (name) => batch.getChild(name), opts);
      row += batch.numRows;
    }
    if (row !== numRows) yield reject(source, row, null, 'file', `Parquet file declares ${numRows} rows but ${row} could be read`);
  } finally {
    file.free();
  }
}

async function* readArrow(source: string, opts: ReadOptions, opener: ShardOpener): AsyncGenerator<ReadItem> {
  const reader = await RecordBatchReader.from(opener.stream(source) as unknown as AsyncIterable<Uint8Array>);
  let row = 0;
  for await (const batch of reader as AsyncIterable<RecordBatch>) {
    yield* fromColumns(source, row, batch.numRows, (name) => batch.getChild(name), opts);
    row += batch.numRows;
  }
}

