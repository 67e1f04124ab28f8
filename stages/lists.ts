// Zero-copy access to list columns of Arrow record batches (token_ids, <model>_logprob, select_mask).
import { DataType, type RecordBatch, type Data, type Bool } from 'apache-arrow';
import { floatValues } from '../schemas/score-dtype.js';

/**
 * Zero-copy view of a list column of one record batch: row r spans child elements [offsets[r], offsets[r+1]).
 * `values` is indexed by child element; `valid(j)` is false where the element is null.
 */
export interface ListView<V> {
  offsets: Int32Array;
  values: V;
  valid: (j: number) => boolean;
}

export function listView<V = ArrayLike<number>>(batch: RecordBatch, name: string): ListView<V> {
  const col = batch.getChild(name);
  if (!col) throw new Error(`internal: column ${name} missing from a batch`);
  if (col.data.length !== 1) throw new Error(`internal: column ${name} has ${col.data.length} chunks in one batch`);
  const d = col.data[0] as Data;
  const child = d.children[0];
  // arrow-js slices a list's offsets but not its child; the child's own values are sliced from child.offset,
  // its validity bitmap is not (bit index = child.offset + j).
  const bitmap = child.nullBitmap;
  const base = child.offset;
  const hasNulls = child.nullCount > 0 && bitmap && bitmap.length > 0;
  return {
    offsets: d.valueOffsets as Int32Array,
    // float16 lists (--score-dtype float16) come out as float32 values, so every reader handles every dtype.
    values: (DataType.isFloat(child.type) ? floatValues(child) : child.values) as V,
    valid: hasNulls ? (j) => (bitmap[(base + j) >> 3] & (1 << ((base + j) & 7))) !== 0 : () => true,
  };
}

/** A list<bool> column as bytes 0/1 per element (Arrow stores booleans as bits). */
export function boolListBytes(batch: RecordBatch, name: string): { offsets: Int32Array; bytes: Uint8Array } {
  const col = batch.getChild(name);
  if (!col || col.data.length !== 1) throw new Error(`internal: column ${name} missing or chunked`);
  const d = col.data[0] as Data;
  const child = d.children[0] as Data<Bool>;
  const offsets = d.valueOffsets as Int32Array;
  const n = offsets[offsets.length - 1];
  const bits = child.values as Uint8Array;
  const bytes = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    const b = child.offset + j;
    bytes[j] = (bits[b >> 3] >> (b & 7)) & 1;
  }
  return { offsets, bytes };
}
