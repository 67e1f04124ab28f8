// Readers: JSONL (plain, .gz, .zst), Parquet and Arrow IPC, streamed record by record. A reader never
// throws for bad content: a bad record, a corrupt compressed stream, an undecodable Parquet row group or
// Arrow record batch, a lost footer are rejects that name the file, the row(s) and the decoder's message, so
// the run's accounting adds up. It throws InputReadError, and only that, when bytes cannot be read at all
// (network, S3 5xx after the retries, EIO): that is not a property of the data and must not be committed
// as a reject.
import { createReadStream, openAsBlob } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { Decompress as ZstdDecompress } from 'fzstd';
import { RecordBatchReader, tableFromIPC, DataType, type RecordBatch, type Vector } from 'apache-arrow';
import type { ParquetFromWorker, ParquetToWorker } from './parquet-worker.js';
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

/**
 * A failure to read the bytes of a shard (network, S3 5xx after the retries, EIO, the file vanished): not a
 * property of the content, so never a reject. The job fails the shard's open units (no reject, no completion
 * record) and exits non-zero naming the shard, so a rerun does them.
 */
export class InputReadError extends Error {
  constructor(readonly source: string, override readonly cause: Error) {
    super(`${source}: could not read the input (${cause.message}); nothing of it was rejected: rerun to score it`);
  }
}

/** Watch a byte stream for errors of its own (transport), as opposed to errors of what decodes it (content). */
function watched(stream: Readable): { stream: Readable; failure: () => Error | null } {
  let failure: Error | null = null;
  stream.on('error', (e: Error) => { failure ??= e; });
  return { stream, failure: () => failure };
}

async function* jsonlLines(source: string, compression: 'gzip' | 'zstd' | null, opener: ShardOpener): AsyncGenerator<{ line: Buffer; lineNo: number } | { error: Error; lineNo: number }> {
  const raw = watched(opener.stream(source));
  let input: Readable = raw.stream;
  if (compression) {
    // Errors of the file go to the decompressor (so the loop below ends) and are remembered as transport
    // errors; errors of the decompressor (corrupt data) stay content errors.
    if (compression === 'gzip') {
      const dec = createGunzip();
      raw.stream.on('error', (e: Error) => dec.destroy(e));
      dec.on('error', () => raw.stream.destroy());
      raw.stream.pipe(dec);
      input = dec;
    } else input = Readable.from(zstdChunks(raw.stream));
  }
  // The unfinished line as a list of pieces: a line spanning many chunks is joined once (linear time).
  let pieces: Buffer[] = [];
  let lineNo = 0;
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(10, start);
        if (nl < 0) break;
        lineNo++;
        const tail = chunk.subarray(start, nl);
        if (pieces.length) {
          pieces.push(tail);
          yield { line: Buffer.concat(pieces), lineNo };
          pieces = [];
        } else yield { line: tail, lineNo };
        start = nl + 1;
      }
      if (start < chunk.length) pieces.push(chunk.subarray(start));
    }
  } catch (e) {
    const transport = raw.failure();
    if (transport) throw new InputReadError(source, transport);
    const err = e as NodeJS.ErrnoException;
    const what = err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message) ? `truncated ${compression ?? ''} stream` : 'corrupt data';
    yield { error: new Error(`${what}: ${err.message}`), lineNo: lineNo + 1 };
    return;
  } finally {
    raw.stream.destroy();
  }
  const transport = raw.failure();
  if (transport) throw new InputReadError(source, transport);
  if (pieces.length) {
    lineNo++;
    yield { line: Buffer.concat(pieces), lineNo };
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

/** Main-thread end of one parquet-worker: serves its byte-range requests and queues its messages. */
class ParquetDecoder {
  private readonly worker: Worker;
  private readonly queue: (ParquetFromWorker | { type: 'died'; message: string })[] = [];
  private waiting: (() => void) | null = null;
  /** A byte range could not be read: a transport failure, whatever the decoder says next. */
  transport: Error | null = null;

  constructor(private readonly blob: Blob) {
    this.worker = new Worker(new URL('./parquet-worker.js', import.meta.url));
    this.worker.unref();
    this.worker.on('message', (m: ParquetFromWorker) => {
      if (m.type === 'range') this.serve(m.id, m.start, m.end);
      else this.push(m);
    });
    this.worker.on('error', (e: Error) => this.push({ type: 'died', message: `${e.name}: ${e.message}` }));
    this.worker.on('exit', (code) => this.push({ type: 'died', message: `the decoder stopped (exit code ${code})` }));
  }

  private push(m: ParquetFromWorker | { type: 'died'; message: string }): void {
    this.queue.push(m);
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  private serve(id: number, start: number, end: number): void {
    this.blob.slice(start, end).arrayBuffer().then(
      (ab) => this.worker.postMessage({ type: 'range', id, bytes: new Uint8Array(ab) } satisfies ParquetToWorker, [ab]),
      (e: Error) => {
        this.transport ??= e;
        this.worker.postMessage({ type: 'range', id, error: e.message } satisfies ParquetToWorker);
      },
    );
  }

  send(m: ParquetToWorker): void {
    this.worker.postMessage(m);
  }

  async next(): Promise<ParquetFromWorker | { type: 'died'; message: string }> {
    while (this.queue.length === 0) await new Promise<void>((r) => { this.waiting = r; });
    return this.queue.shift()!;
  }

  close(): void {
    void this.worker.terminate();
  }
}

async function* readParquet(source: string, opts: ReadOptions, opener: ShardOpener): AsyncGenerator<ReadItem> {
  let blob: Blob;
  try {
    blob = await opener.blob(source);
  } catch (e) {
    throw new InputReadError(source, e as Error);
  }
  let dec: ParquetDecoder | null = null;
  const openDecoder = async () => {
    dec = new ParquetDecoder(blob);
    dec.send({ type: 'open', size: blob.size });
    const m = await dec.next();
    if (dec.transport) throw new InputReadError(source, dec.transport);
    return m;
  };
  try {
    const meta = await openDecoder();
    if (meta.type !== 'meta') {
      // The footer is gone or corrupt: how many rows the file had is unknown, so one reject stands for it.
      yield reject(source, 0, null, 'file', `not a readable Parquet file (${'message' in meta ? meta.message : meta.type}); no row of it could be read`);
      return;
    }
    const wanted = [opts.textField, ...(opts.idField !== undefined ? [opts.idField] : [])];
    const present = new Set(tableFromIPC(meta.schemaIpc).schema.fields.map((f) => f.name));
    // Project only the columns we need; a missing column is reported per row (accounting), not thrown.
    const columns = wanted.filter((c) => present.has(c));
    let first = 0;
    for (let g = 0; g < meta.rowGroups.length; g++) {
      const n = meta.rowGroups[g];
      let allSkipped = !!opts.skipRowsBefore;
      for (let r = first; allSkipped && r < first + n; r++) allSkipped = opts.skipRowsBefore!(r);
      if (allSkipped || columns.length === 0) {
        if (!allSkipped) yield* fromColumns(source, first, n, () => null, opts);
        first += n;
        continue;
      }
      let rows = 0;
      let problem: string | null = null;
      if (!dec) {
        const again = await openDecoder();
        if (again.type !== 'meta') problem = `the file could not be reopened after a decoder failure (${'message' in again ? again.message : again.type})`;
      }
      if (!problem) {
        dec!.send({ type: 'read', rowGroup: g, columns, batchSize: 1024 });
        for (;;) {
          const m = await dec!.next();
          if (m.type === 'batch') {
            const batch = tableFromIPC(m.ipc);
            dec!.send({ type: 'next' });
            yield* fromColumns(source, first + rows, batch.numRows, (name) => batch.getChild(name), opts);
            rows += batch.numRows;
            continue;
          }
          if (m.type === 'done') break;
          if (dec!.transport) throw new InputReadError(source, dec!.transport);
          problem = 'message' in m ? m.message : m.type;
          if (m.type === 'died') {
            // A wasm trap: the worker is gone; a fresh one serves the next row group.
            problem += ' (the Parquet decoder aborted: corrupt data)';
            dec!.close();
            dec = null;
          }
          break;
        }
      }
      if (problem !== null || rows !== n) {
        // The rows of this row group that could not be read, each accounted for (the footer says how many).
        const why = problem ?? `the row group declares ${n} rows but ${rows} could be read`;
        for (let r = first + rows; r < first + n; r++) {
          if (opts.skipRowsBefore?.(r)) continue;
          yield reject(source, r, null, 'file', `row group ${g} (rows ${first}..${first + n - 1}) could not be decoded from row ${first + rows}: ${why}`);
        }
      }
      first += n;
    }
  } finally {
    (dec as ParquetDecoder | null)?.close();
  }
}

/** A FileHandle look-alike over a Blob, so arrow-js reads an Arrow file batch by batch (its footer first). */
class BlobHandle {
  readonly fd = -1;
  failure: Error | null = null;
  constructor(private readonly blob: Blob) {}
  async stat(): Promise<{ size: number }> {
    return { size: this.blob.size };
  }
  async read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number; buffer: Uint8Array }> {
    let ab: ArrayBuffer;
    try {
      ab = await this.blob.slice(position, position + length).arrayBuffer();
    } catch (e) {
      this.failure ??= e as Error;
      throw e;
    }
    buffer.set(new Uint8Array(ab), offset);
    return { bytesRead: ab.byteLength, buffer };
  }
  async close(): Promise<void> {}
}

async function* readArrow(source: string, opts: ReadOptions, opener: ShardOpener): AsyncGenerator<ReadItem> {
  let blob: Blob;
  try {
    blob = await opener.blob(source);
  } catch (e) {
    throw new InputReadError(source, e as Error);
  }
  const handle = new BlobHandle(blob);
  let reader: RecordBatchReader;
  try {
    reader = await RecordBatchReader.from(handle as never);
    await reader.open();
  } catch (e) {
    if (handle.failure) throw new InputReadError(source, handle.failure);
    yield reject(source, 0, null, 'file', `not a readable Arrow IPC file (${(e as Error).message}; truncated, or its footer is gone); no row of it could be read`);
    return;
  }
  let row = 0;
  const lost = (what: string, e: unknown) => {
    if (handle.failure) throw new InputReadError(source, handle.failure);
    return reject(source, row, null, 'file', `${what} could not be decoded (${e instanceof Error ? e.message : String(e)}); rows from ${row} on could not be read`);
  };
  if (reader.isFile()) {
    const n = reader.numRecordBatches;
    for (let i = 0; i < n; i++) {
      let batch: RecordBatch | null;
      try {
        batch = await reader.readRecordBatch(i);
        if (!batch) throw new Error('no such batch');
      } catch (e) {
        yield lost(`record batch ${i} of ${n}`, e);
        return;
      }
      yield* fromColumns(source, row, batch.numRows, (name) => batch.getChild(name), opts);
      row += batch.numRows;
    }
    return;
  }
  const it = (reader as AsyncIterable<RecordBatch>)[Symbol.asyncIterator]();
  for (let i = 0; ; i++) {
    let r: IteratorResult<RecordBatch>;
    try {
      r = await it.next();
    } catch (e) {
      yield lost(`record batch ${i} of the stream`, e);
      return;
    }
    if (r.done) return;
    const batch = r.value;
    yield* fromColumns(source, row, batch.numRows, (name) => batch.getChild(name), opts);
    row += batch.numRows;
  }
}
