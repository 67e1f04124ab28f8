// Writer: scored documents → Arrow table in the contract's schema → Parquet (zstd, bounded row groups) or
// Arrow IPC (uncompressed: apache-arrow 21.2's compressed IPC is unreadable by other tools). Bytes only: where
// they go (atomically) is the store's business (pipeline/io).
import { createHash } from 'node:crypto';
import {
  Table, RecordBatch, Struct, Field, Float16, Float32, Float64, Int32, Int64, Utf8, List, makeData, tableToIPC, tableFromIPC, vectorFromArray, Schema, DataType, type Data,
} from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { COL, scoreSchema, isUnscoredPosition } from '../schemas/contract.js';
import { bfloat16Round, float16Bits, type ScoreDtype } from '../schemas/score-dtype.js';
import { setParquetKeyValueMetadata, sortParquetKeyValueMetadata } from './parquet-footer.js';
import type { EncodedFlow, EncodedUnit, OrderedFlow, Rejected, ScoredDocument, UnitRecords, UnitRef, WindowSpec } from '../schemas/types.js';
import { dataPath } from '../schemas/layout.js';
import { stage, type Stage } from './stage.js';

export type OutputFormat = 'parquet' | 'arrow';

export interface WrittenFile {
  path: string;
  bytes: number;
  sha256: string;
  rows: number;
}

/** Build the contract's Arrow table for a list of scored documents (in output order). */
export function scoredTable(docs: ScoredDocument[], models: readonly string[], entropy: boolean, spec: WindowSpec, metadata: Map<string, string>, scoreDtype: ScoreDtype = 'float32', projected: ReadonlySet<string> = new Set()): Table {
  const schema = scoreSchema(models, { entropy, scoreDtype, projected }, metadata);
  const rows = docs.length;
  const offsets = new Int32Array(rows + 1);
  for (let r = 0; r < rows; r++) offsets[r + 1] = offsets[r] + docs[r].tokenIds.length;
  const total = offsets[rows];

  const ids = new Int32Array(total);
  for (let r = 0; r < rows; r++) ids.set(docs[r].tokenIds, offsets[r]);

  // Null positions come from the window rule, not from the values: a NaN from a broken model stays visible.
  const validity = new Uint8Array((total + 7) >> 3);
  let nullCount = 0;
  for (let r = 0; r < rows; r++) {
    const n = docs[r].tokenIds.length;
    for (let i = 0; i < n; i++) {
      const at = offsets[r] + i;
      if (isUnscoredPosition(i, spec.contextTokens, spec.strideTokens)) nullCount++;
      else validity[at >> 3] |= 1 << (at & 7);
    }
  }

  const children: Data[] = [];
  children.push(vectorFromArray(docs.map((d) => d.id), new Utf8()).data[0]);
  children.push(vectorFromArray(docs.map((d) => d.source), new Utf8()).data[0]);
  children.push(makeData({ type: new Int64(), length: rows, data: BigInt64Array.from(docs, (d) => BigInt(d.row)) }));
  children.push(listData(new Int32(), false, offsets, makeData({ type: new Int32(), length: total, data: ids })));

  const lossMeans = new Map<string, { values: Float32Array; valid: Uint8Array; nulls: number }>();
  for (const m of models) {
    // A projected model's nulls are where nothing was projected (NaN), not the window rule of the trainer's tokens.
    const own = projected.has(m) ? projectedValidity(docs, m, offsets) : null;
    const valid = own ? own.validity : validity;
    const nulls = own ? own.nullCount : nullCount;
    const lp = new Float32Array(total);
    const ent = entropy ? new Float32Array(total) : null;
    const means = new Float32Array(rows);
    const meanValid = new Uint8Array((rows + 7) >> 3);
    let meanNulls = 0;
    for (let r = 0; r < rows; r++) {
      const s = docs[r].scores.get(m);
      if (!s) throw new Error(`internal: document ${docs[r].id} has no scores for model ${m}`);
      const base = offsets[r];
      const n = docs[r].tokenIds.length;
      let sum = 0;
      let count = 0;
      for (let i = 0; i < n; i++) {
        const at = base + i;
        if (valid[at >> 3] & (1 << (at & 7))) {
          const v = s.logprob[i];
          lp[at] = v;
          sum -= v;
          count++;
          if (ent) ent[at] = s.entropy![i];
        }
      }
      if (count > 0) {
        means[r] = sum / count;
        meanValid[r >> 3] |= 1 << (r & 7);
      } else meanNulls++;
    }
    // loss_mean above is computed from the full-precision scores; the lists are stored in the chosen dtype.
    children.push(scoreListData(lp, scoreDtype, offsets, valid, nulls));
    if (ent) children.push(scoreListData(ent, scoreDtype, offsets, valid, nulls));
    lossMeans.set(m, { values: means, valid: meanValid, nulls: meanNulls });
  }
  children.push(makeData({ type: new Int32(), length: rows, data: Int32Array.from(docs, (d) => d.tokenIds.length) }));
  for (const m of models) {
    const lm = lossMeans.get(m)!;
    children.push(makeData({ type: new Float32(), length: rows, nullCount: lm.nulls, nullBitmap: lm.nulls ? lm.valid : null, data: lm.values }));
  }
  for (const m of models) {
    if (!projected.has(m)) continue;
    const sums = new Float64Array(rows);
    const ok = new Uint8Array((rows + 7) >> 3);
    let sumNulls = 0;
    for (let r = 0; r < rows; r++) {
      const v = docs[r].scores.get(m)!.nativeSum;
      if (v === undefined || Number.isNaN(v)) sumNulls++;
      else {
        sums[r] = v;
        ok[r >> 3] |= 1 << (r & 7);
      }
    }
    children.push(makeData({ type: new Float64(), length: rows, nullCount: sumNulls, nullBitmap: sumNulls ? ok : null, data: sums }));
  }
  return tableFromChildren(schema, rows, children);
}

/** Validity of a projected model's values: valid where a value was projected (not NaN). */
function projectedValidity(docs: ScoredDocument[], model: string, offsets: Int32Array): { validity: Uint8Array; nullCount: number } {
  const total = offsets[offsets.length - 1];
  const validity = new Uint8Array((total + 7) >> 3);
  let nullCount = 0;
  docs.forEach((d, r) => {
    const lp = d.scores.get(model)!.logprob;
    for (let i = 0; i < d.tokenIds.length; i++) {
      const at = offsets[r] + i;
      if (Number.isNaN(lp[i])) nullCount++;
      else validity[at >> 3] |= 1 << (at & 7);
    }
  });
  return { validity, nullCount };
}

/** A list<float> score column in the given dtype from float32 values (null where `validity` has a 0 bit). */
export function scoreListData(values: Float32Array, dtype: ScoreDtype, offsets: Int32Array, validity: Uint8Array | null, nullCount: number): Data {
  const length = values.length;
  const nullBitmap = nullCount ? validity : null;
  if (dtype === 'float16') {
    const bits = new Uint16Array(length);
    for (let i = 0; i < length; i++) bits[i] = float16Bits(values[i]);
    return listData(new Float16(), true, offsets, makeData({ type: new Float16(), length, nullCount, nullBitmap, data: bits }));
  }
  let data = values;
  if (dtype === 'bfloat16') {
    data = new Float32Array(length);
    for (let i = 0; i < length; i++) data[i] = bfloat16Round(values[i]);
  }
  return listData(new Float32(), true, offsets, makeData({ type: new Float32(), length, nullCount, nullBitmap, data }));
}

export function listData<T extends DataType>(itemType: T, itemNullable: boolean, valueOffsets: Int32Array, child: Data<T>): Data {
  return makeData({ type: new List<T>(new Field('item', itemType, itemNullable)), length: valueOffsets.length - 1, nullCount: 0, valueOffsets, child });
}

export function tableFromChildren(schema: Schema, rows: number, children: Data[]): Table {
  const struct = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children });
  return new Table(schema, [new RecordBatch(schema, struct)]);
}

/** Rows per Parquet row group at most: bounds reader memory and parquet-wasm's (never shrinking) wasm heap. */
export const ROW_GROUP_ROWS = 2048;
/**
 * Uncompressed bytes per row group at most (a single longer row still makes its own group): rows alone let a
 * corpus of long documents make huge groups (2048 rows of 100k tokens = 2 GB of float32 scores).
 */
export const ROW_GROUP_BYTES = 64 << 20;

/**
 * Parquet writer settings, chosen by measurement (docs/bench.md, "Bytes per token"):
 * - no dictionary: on float lists it only hurts (a fixture file: 244 KB with, 164 KB without), and on the other
 *   columns it saves nothing measurable under zstd;
 * - PLAIN + zstd for every column, BYTE_STREAM_SPLIT for the top-level float columns (`<model>_loss_mean`).
 *   The list leaves (`ref_logprob.list.item`) cannot be given BYTE_STREAM_SPLIT: parquet-wasm 0.8.0 turns the
 *   column name into a one-part column path, so a nested leaf (path [ref_logprob, list, item]) never matches,
 *   and the global setting would also hit the int32/int64 columns, which DuckDB 1.5 refuses to read
 *   ("BYTE_STREAM_SPLIT encoding is only supported for FLOAT or DOUBLE data");
 * - zstd at parquet-wasm's fixed level (0.8.0 has no level setting; whole-file recompression at level 9 would
 *   save 2-10%, at 19 5-16%, measured on fixture files);
 * - row groups cut by rows and by uncompressed bytes (cutRowGroups).
 */
function writerProperties(fields: readonly Field[], kv: Map<string, string>): pq.WriterProperties {
  let b = new pq.WriterPropertiesBuilder()
    .setCompression(pq.Compression.ZSTD)
    .setDictionaryEnabled(false)
    .setMaxRowGroupSize(ROW_GROUP_ROWS)
    // Every record batch we hand over is one row group (cutRowGroups sized them): flush after each.
    .setMaxRowGroupBytes(1)
    .setKeyValueMetadata(kv);
  for (const f of fields) {
    if (DataType.isFloat(f.type) && (f.type.precision === 1 || f.type.precision === 2)) b = b.setColumnEncoding(f.name, pq.Encoding.BYTE_STREAM_SPLIT);
  }
  return b.build();
}

/** Uncompressed bytes of one value of a type (booleans as 1/8), for row group sizing. */
function valueBytes(t: DataType): number {
  if (DataType.isBool(t)) return 1 / 8;
  if (DataType.isInt(t)) return t.bitWidth / 8;
  if (DataType.isFloat(t)) return t.precision === 0 ? 2 : t.precision === 1 ? 4 : 8;
  return 8;
}

/**
 * Uncompressed bytes of one cell, for row group sizing: a list of `n` values (+ a quarter byte of levels each),
 * a string of `n` UTF-8 bytes (+ its 4-byte offset), or one fixed-width value. The one rule cutRowGroups (a
 * whole table) and the streaming writer (document by document) both cut by, so their files are the same.
 */
function cellBytes(t: DataType, n: number): number {
  if (DataType.isList(t)) return n * (valueBytes(t.children[0].type) + 0.25);
  if (DataType.isUtf8(t)) return n + 4;
  return valueBytes(t);
}

/** Split a table's batches into row groups of at most ROW_GROUP_ROWS rows and about `maxBytes` uncompressed bytes. */
export function cutRowGroups(table: Table, maxBytes = ROW_GROUP_BYTES, maxRows = ROW_GROUP_ROWS): RecordBatch[] {
  const out: RecordBatch[] = [];
  for (const batch of table.batches) {
    const rows = batch.numRows;
    const perRow = new Float64Array(rows);
    batch.schema.fields.forEach((f, i) => {
      const o = batch.data.children[i].valueOffsets as Int32Array | undefined;
      for (let r = 0; r < rows; r++) perRow[r] += cellBytes(f.type, o ? o[r + 1] - o[r] : 1);
    });
    let start = 0;
    let bytes = 0;
    for (let r = 0; r < rows; r++) {
      if (r > start && (r - start >= maxRows || bytes + perRow[r] > maxBytes)) {
        out.push(batch.slice(start, r));
        start = r;
        bytes = 0;
      }
      bytes += perRow[r];
    }
    if (rows === 0 || start < rows) out.push(start === 0 ? batch : batch.slice(start, rows));
  }
  return out;
}

/**
 * Encode a table: Parquet with zstd and the metadata as key-value pairs, or an uncompressed Arrow IPC file.
 * Deterministic: the same table gives the same bytes in any process (the metadata goes only into the
 * sorted key-value list, not into the hash-ordered ARROW:schema copy).
 */
export function encodeTable(table: Table, format: OutputFormat, opts: { rowGroupBytes?: number } = {}): Uint8Array {
  if (format === 'arrow') return tableToIPC(table, 'file');
  const kv = new Map<string, string>(table.schema.metadata);
  const props = writerProperties(table.schema.fields, kv);
  const schema = new Schema(table.schema.fields);
  const bare = new Table(schema, cutRowGroups(table, opts.rowGroupBytes).map((b) => new RecordBatch(schema, b.data)));
  const wasmTable = pq.Table.fromIPCStream(tableToIPC(bare, 'stream'));
  return sortParquetKeyValueMetadata(pq.writeParquet(wasmTable, props));
}

/** Decode a Parquet or Arrow IPC file (rho's or anyone's) into an Arrow table. */
export function decodeTable(bytes: Uint8Array, format: OutputFormat): Table {
  return format === 'arrow' ? tableFromIPC(bytes) : tableFromIPC(pq.readParquet(bytes).intoIPCStream());
}

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface WriteStageOptions {
  models: readonly string[];
  entropy: boolean;
  spec: WindowSpec;
  format: OutputFormat;
  /** How per-token scores are stored (default float32). */
  scoreDtype?: ScoreDtype;
  /** Hive-style `shard=<key>/` folders. */
  hive?: boolean;
  /** Key-value metadata of a unit's file (provenance plus rho.unit), given the unit and its record count. */
  metadata(unit: UnitRef, records: number): Map<string, string>;
  /** Models with their own tokenizer (--model-tokenizer): nulls from the values, and `<name>_native_sum`. */
  projected?: ReadonlySet<string>;
}

/**
 * The write stage: a whole unit → the bytes of its data file (Parquet or Arrow, the contract's schema) and its
 * counts. Bytes only: the executor writes them (atomically) with the unit's rejects and completion record.
 */
export function writeStage(opts: WriteStageOptions): Stage<UnitRecords<ScoredDocument>, EncodedUnit> {
  return stage('write', async function* (input) {
    for await (const u of input) yield encodeUnit(u, opts);
  });
}

/** Tokens of a document that got a score from `model` (the rest are NaN: written as null). */
function scoredTokensOf(doc: ScoredDocument, model: string): number {
  const lp = doc.scores.get(model)!.logprob;
  let n = 0;
  for (let i = 0; i < lp.length; i++) if (!Number.isNaN(lp[i])) n++;
  return n;
}

export function encodeUnit(u: UnitRecords<ScoredDocument>, opts: WriteStageOptions): EncodedUnit {
  const scored: ScoredDocument[] = [];
  const rejects: Rejected[] = [];
  let scoredTokens = 0;
  let tokens = 0;
  for (const r of u.records) {
    if (r.kind === 'reject') { rejects.push(r.reject); continue; }
    scored.push(r.doc);
    tokens += r.doc.tokenIds.length;
    scoredTokens += scoredTokensOf(r.doc, opts.models[0]);
  }
  const table = scoredTable(scored, opts.models, opts.entropy, opts.spec, opts.metadata(u.unit, u.records.length), opts.scoreDtype, opts.projected);
  const bytes = encodeTable(table, opts.format);
  return {
    unit: u.unit, file: dataPath(u.unit, opts.format, opts.hive), bytes, records: u.records.length, scored: scored.length,
    rejects, tokens, scoredTokens,
  };
}

// ---- streaming: a unit's file written as its row groups fill ----

/** Uncompressed bytes of one document's row, by cutRowGroups' rule (same fields, same order, same sums). */
function rowBytes(fields: readonly Field[], doc: ScoredDocument): number {
  let b = 0;
  for (const f of fields) {
    const n = DataType.isList(f.type) ? doc.tokenIds.length : DataType.isUtf8(f.type) ? Buffer.byteLength(f.name === COL.source ? doc.source : doc.id, 'utf8') : 1;
    b += cellBytes(f.type, n);
  }
  return b;
}

/**
 * One Parquet file fed row group by row group (parquet-wasm's transformParquetStream: one record batch in,
 * one row group flushed; measured: its bytes come out per row group, not at the end). The footer comes out
 * only on close: finish() makes its key-value metadata final (the unit's row count) and sorted.
 */
class ParquetSink {
  private ctrl!: ReadableStreamDefaultController<pq.RecordBatch>;
  private readonly ready: Uint8Array[] = [];
  private failed: unknown = null;
  private readonly pumped: Promise<void>;
  /** The encoder asked for the next batch (it has written the previous row group). */
  private asked = false;
  private onAsk: (() => void) | null = null;

  constructor(fields: readonly Field[], kv: Map<string, string>) {
    const ask = () => { this.asked = true; const f = this.onAsk; this.onAsk = null; f?.(); };
    const src = new ReadableStream<pq.RecordBatch>({ start: (c) => { this.ctrl = c; }, pull: ask }, { highWaterMark: 0 });
    this.pumped = (async () => {
      const out = (await pq.transformParquetStream(src, writerProperties(fields, kv))) as ReadableStream<Uint8Array>;
      // Until close() every piece is a row group (the footer is written on close), so none is held back.
      for await (const chunk of out as unknown as AsyncIterable<Uint8Array>) this.ready.push(chunk);
    })();
    this.pumped.catch((e) => { this.failed = e; ask(); });
  }

  /** Hand over one row group (a table of one batch, the contract's schema without metadata), once the encoder is ready for it. */
  async push(group: Table): Promise<void> {
    if (this.failed) throw this.failed as Error;
    const wt = pq.Table.fromIPCStream(tableToIPC(group, 'stream'));
    const rb = wt.recordBatch(0);
    wt.free();
    if (!rb) throw new Error('internal: a row group without its record batch');
    this.asked = false;
    this.ctrl.enqueue(rb);
    // Wait until the encoder asks for the next batch: it has written this row group (one group in flight at most).
    if (!this.asked) await new Promise<void>((resolve) => { this.onAsk = resolve; });
    await new Promise<void>((resolve) => setImmediate(resolve)); // let the pump take the group's bytes
    if (this.failed) throw this.failed as Error;
  }

  /** The bytes encoded so far (row groups: nothing before close is footer). */
  take(): Uint8Array[] {
    if (this.failed) throw this.failed as Error;
    return this.ready.splice(0);
  }

  /** Close the file: the remaining bytes, the footer's metadata set to `kv` (sorted). */
  async finish(kv: Map<string, string>): Promise<Uint8Array[]> {
    this.ctrl.close();
    await this.pumped;
    // Everything written since the last take() (the last row group and the footer, which is written only on
    // close, so it lies wholly in these pieces): one tail whose footer metadata is made final.
    const rest = this.ready.splice(0);
    if (rest.length === 0) throw new Error('internal: the Parquet stream wrote no footer');
    const tail = new Uint8Array(rest.reduce((a, b) => a + b.length, 0));
    let at = 0;
    for (const p of rest) { tail.set(p, at); at += p.length; }
    return [setParquetKeyValueMetadata(tail, kv)];
  }

  async abort(): Promise<void> {
    try { this.ctrl.close(); } catch { /* closed */ }
    await this.pumped.catch(() => undefined);
    this.ready.length = 0;
  }
}

interface OpenUnit {
  unit: UnitRef;
  file: string;
  /** The current row group's documents (Arrow: the whole unit's, written at the end). */
  docs: ScoredDocument[];
  groupBytes: number;
  sink: ParquetSink | null;
  scored: number;
  rejects: Rejected[];
  tokens: number;
  scoredTokens: number;
}

/**
 * The streaming write stage: documents of each unit in row order (the executor's ordered()) → the bytes of
 * its data file as its row groups fill (`data`), then its counts (`unit`). Row groups are cut as cutRowGroups
 * cuts a whole unit (at most ROW_GROUP_ROWS rows and about `rowGroupBytes` uncompressed bytes), so the file
 * is byte-identical to encodeUnit's; what a unit holds in memory is one row group, whatever its size. A unit
 * of one row group is encoded whole (as before). Arrow IPC files (`--format arrow`) are still built whole:
 * their schema message, which carries the metadata with the unit's row count, comes first in the file.
 */
export function streamWriteStage(opts: WriteStageOptions & { rowGroupBytes?: number }): Stage<OrderedFlow<ScoredDocument>, EncodedFlow> {
  const maxBytes = opts.rowGroupBytes ?? ROW_GROUP_BYTES;
  const fields = scoreSchema(opts.models, { entropy: opts.entropy, scoreDtype: opts.scoreDtype, projected: opts.projected }).fields;
  const bare = new Schema(fields);
  const table = (docs: ScoredDocument[], meta: Map<string, string>) => scoredTable(docs, opts.models, opts.entropy, opts.spec, meta, opts.scoreDtype, opts.projected ?? new Set());
  return stage('write', async function* (input) {
    const units = new Map<string, OpenUnit>();
    const flush = async (u: OpenUnit): Promise<Uint8Array[]> => {
      // The provisional metadata (row count 0) is replaced in the footer at the end.
      u.sink ??= new ParquetSink(fields, opts.metadata(u.unit, 0));
      const t = table(u.docs, new Map());
      await u.sink.push(new Table(bare, [new RecordBatch(bare, t.batches[0].data)]));
      u.docs = [];
      u.groupBytes = 0;
      return u.sink.take();
    };
    try {
      for await (const it of input) {
        const name = it.unit.name;
        let u = units.get(name);
        if (!u) units.set(name, (u = { unit: it.unit, file: dataPath(it.unit, opts.format, opts.hive), docs: [], groupBytes: 0, sink: null, scored: 0, rejects: [], tokens: 0, scoredTokens: 0 }));
        if (it.kind === 'abandon') {
          units.delete(name);
          await u.sink?.abort();
          yield it;
        } else if (it.kind === 'reject') u.rejects.push(it.reject);
        else if (it.kind === 'doc') {
          const d = it.doc;
          u.scored++;
          u.tokens += d.tokenIds.length;
          u.scoredTokens += scoredTokensOf(d, opts.models[0]);
          if (opts.format === 'parquet') {
            const b = rowBytes(fields, d);
            if (u.docs.length > 0 && (u.docs.length >= ROW_GROUP_ROWS || u.groupBytes + b > maxBytes)) {
              for (const bytes of await flush(u)) yield { kind: 'data', unit: u.unit, file: u.file, bytes };
            }
            u.groupBytes += b;
          }
          u.docs.push(d);
        } else {
          units.delete(name);
          const meta = opts.metadata(u.unit, it.records);
          let pieces: Uint8Array[];
          if (u.sink) {
            if (u.docs.length) pieces = await flush(u);
            else pieces = [];
            pieces.push(...(await u.sink.finish(meta)));
          } else pieces = [encodeTable(table(u.docs, meta), opts.format, { rowGroupBytes: maxBytes })];
          u.docs = [];
          for (const bytes of pieces) yield { kind: 'data', unit: u.unit, file: u.file, bytes };
          yield { kind: 'unit', unit: u.unit, file: u.file, records: it.records, scored: u.scored, rejects: u.rejects, tokens: u.tokens, scoredTokens: u.scoredTokens };
        }
      }
    } finally {
      for (const u of units.values()) await u.sink?.abort();
    }
  });
}
