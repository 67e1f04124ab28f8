// Writer: scored documents → Arrow table in the contract's schema → Parquet (zstd, bounded row groups) or
// Arrow IPC (uncompressed: apache-arrow 21.2's compressed IPC is unreadable by other tools). Bytes only: where
// they go (atomically) is the store's business (pipeline/io).
import { createHash } from 'node:crypto';
import {
  Table, RecordBatch, Struct, Field, Float32, Int32, Int64, Utf8, List, makeData, tableToIPC, tableFromIPC, vectorFromArray, Schema, type Data, type DataType,
} from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { scoreSchema, isUnscoredPosition } from '../schemas/contract.js';
import { sortParquetKeyValueMetadata } from './parquet-footer.js';
import type { EncodedUnit, Rejected, ScoredDocument, UnitRecords, UnitRef, WindowSpec } from '../schemas/types.js';
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
export function scoredTable(docs: ScoredDocument[], models: readonly string[], entropy: boolean, spec: WindowSpec, metadata: Map<string, string>): Table {
  const schema = scoreSchema(models, { entropy }, metadata);
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
        if (validity[at >> 3] & (1 << (at & 7))) {
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
    children.push(listData(new Float32(), true, offsets, makeData({ type: new Float32(), length: total, nullCount, nullBitmap: validity, data: lp })));
    if (ent) children.push(listData(new Float32(), true, offsets, makeData({ type: new Float32(), length: total, nullCount, nullBitmap: validity, data: ent })));
    lossMeans.set(m, { values: means, valid: meanValid, nulls: meanNulls });
  }
  children.push(makeData({ type: new Int32(), length: rows, data: Int32Array.from(docs, (d) => d.tokenIds.length) }));
  for (const m of models) {
    const lm = lossMeans.get(m)!;
    children.push(makeData({ type: new Float32(), length: rows, nullCount: lm.nulls, nullBitmap: lm.nulls ? lm.valid : null, data: lm.values }));
  }
  return tableFromChildren(schema, rows, children);
}

export function listData<T extends DataType>(itemType: T, itemNullable: boolean, valueOffsets: Int32Array, child: Data<T>): Data {
  return makeData({ type: new List<T>(new Field('item', itemType, itemNullable)), length: valueOffsets.length - 1, nullCount: 0, valueOffsets, child });
}

export function tableFromChildren(schema: Schema, rows: number, children: Data[]): Table {
  const struct = makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children });
  return new Table(schema, [new RecordBatch(schema, struct)]);
}

/** Rows per Parquet row group: bounds reader memory and parquet-wasm's (never shrinking) wasm heap. */
export const ROW_GROUP_ROWS = 2048;

/**
 * Encode a table: Parquet with zstd and the metadata as key-value pairs, or an uncompressed Arrow IPC file.
 * Deterministic: the same table gives the same bytes in any process (the metadata goes only into the
 * sorted key-value list, not into the hash-ordered ARROW:schema copy).
 */
export function encodeTable(table: Table, format: OutputFormat): Uint8Array {
  if (format === 'arrow') return tableToIPC(table, 'file');
  const kv = new Map<string, string>(table.schema.metadata);
  const props = new pq.WriterPropertiesBuilder()
    .setCompression(pq.Compression.ZSTD)
    .setMaxRowGroupSize(ROW_GROUP_ROWS)
    .setKeyValueMetadata(kv)
    .build();
  const bare = new Table(new Schema(table.schema.fields), table.batches.map((b) => new RecordBatch(new Schema(table.schema.fields), b.data)));
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
  /** Hive-style `shard=<key>/` folders. */
  hive?: boolean;
  /** Key-value metadata of a unit's file (provenance plus rho.unit), given the unit and its record count. */
  metadata(unit: UnitRef, records: number): Map<string, string>;
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

export function encodeUnit(u: UnitRecords<ScoredDocument>, opts: WriteStageOptions): EncodedUnit {
  const scored: ScoredDocument[] = [];
  const rejects: Rejected[] = [];
  let scoredTokens = 0;
  let tokens = 0;
  for (const r of u.records) {
    if (r.kind === 'reject') { rejects.push(r.reject); continue; }
    scored.push(r.doc);
    tokens += r.doc.tokenIds.length;
    const lp = r.doc.scores.get(opts.models[0])!.logprob;
    for (let i = 0; i < lp.length; i++) if (!Number.isNaN(lp[i])) scoredTokens++;
  }
  const table = scoredTable(scored, opts.models, opts.entropy, opts.spec, opts.metadata(u.unit, u.records.length));
  const bytes = encodeTable(table, opts.format);
  return {
    unit: u.unit, file: dataPath(u.unit, opts.format, opts.hive), bytes, records: u.records.length, scored: scored.length,
    rejects, tokens, scoredTokens,
  };
}
