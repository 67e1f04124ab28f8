// Byte-identical Parquet: parquet-wasm (arrow-rs) keeps key-value metadata in a hash map, so the order of
// the footer's key_value_metadata list changes from process to process. This sorts that list by key, in
// place (same bytes, permuted), by walking the footer's Thrift compact encoding. Nothing else is touched.

const MAGIC = 0x31524150; // "PAR1" little-endian

class Cursor {
  constructor(readonly b: Uint8Array, public pos: number) {}
  byte(): number {
    if (this.pos >= this.b.length) throw new Error('Parquet footer ends early');
    return this.b[this.pos++];
  }
  varint(): number {
    let shift = 0;
    let v = 0;
    for (;;) {
      const x = this.byte();
      v += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return v;
      shift += 7;
    }
  }
  skip(n: number): void {
    this.pos += n;
  }
}

const T = { STOP: 0, TRUE: 1, FALSE: 2, BYTE: 3, I16: 4, I32: 5, I64: 6, DOUBLE: 7, BINARY: 8, LIST: 9, SET: 10, MAP: 11, STRUCT: 12 } as const;

function skipValue(c: Cursor, type: number, inContainer: boolean): void {
  switch (type) {
    case T.TRUE:
    case T.FALSE:
      if (inContainer) c.skip(1); // a bool inside a list is one byte; as a field it lives in the header
      return;
    case T.BYTE: c.skip(1); return;
    case T.I16: case T.I32: case T.I64: c.varint(); return;
    case T.DOUBLE: c.skip(8); return;
    case T.BINARY: c.skip(c.varint()); return;
    case T.LIST: case T.SET: {
      const h = c.byte();
      let n = h >> 4;
      if (n === 15) n = c.varint();
      for (let i = 0; i < n; i++) skipValue(c, h & 0x0f, true);
      return;
    }
    case T.MAP: {
      const n = c.varint();
      if (n === 0) return;
      const kv = c.byte();
      for (let i = 0; i < n; i++) { skipValue(c, kv >> 4, true); skipValue(c, kv & 0x0f, true); }
      return;
    }
    case T.STRUCT: skipStruct(c, null); return;
    default: throw new Error(`Parquet footer: unknown Thrift type ${type}`);
  }
}

/** Skip a struct; report each field (id, type, value start) to `onField`, which may consume the value itself. */
function skipStruct(c: Cursor, onField: ((id: number, type: number) => boolean) | null): void {
  let last = 0;
  for (;;) {
    const h = c.byte();
    if (h === T.STOP) return;
    const delta = h >> 4;
    const type = h & 0x0f;
    let id: number;
    if (delta) id = last + delta;
    else { const z = c.varint(); id = (z >>> 1) ^ -(z & 1); }
    last = id;
    if (onField && onField(id, type)) continue;
    skipValue(c, type, false);
  }
}

/** The footer's key_value_metadata list (field 5 of FileMetaData): where it lies and its pairs in file order. */
interface KeyValueList {
  footerLen: number;
  /** Where the footer starts. */
  start: number;
  /** The list's header byte(s) and its end (both -1 when the footer has no key-value metadata). */
  listFrom: number;
  itemsFrom: number;
  listTo: number;
  elems: { key: string; bytes: Uint8Array }[];
}

function readKeyValueList(file: Uint8Array): KeyValueList {
  const n = file.length;
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (n < 12 || dv.getUint32(n - 4, true) !== MAGIC) throw new Error('not a Parquet file (no PAR1 footer)');
  const footerLen = dv.getUint32(n - 8, true);
  const start = n - 8 - footerLen;
  if (start < 0) throw new Error(`internal: Parquet footer (${footerLen} bytes) longer than the bytes given (${n})`);
  const out: KeyValueList = { footerLen, start, listFrom: -1, itemsFrom: -1, listTo: -1, elems: [] };
  const c = new Cursor(file, start);
  skipStruct(c, (id, type) => {
    if (id !== 5 || type !== T.LIST) return false;
    out.listFrom = c.pos;
    const h = c.byte();
    let count = h >> 4;
    if (count === 15) count = c.varint();
    out.itemsFrom = c.pos;
    for (let i = 0; i < count; i++) {
      const from = c.pos;
      let key = '';
      skipStruct(c, (fid, ftype) => {
        if (fid !== 1 || ftype !== T.BINARY) return false;
        const len = c.varint();
        key = new TextDecoder().decode(file.subarray(c.pos, c.pos + len));
        c.skip(len);
        return true;
      });
      out.elems.push({ key, bytes: file.slice(from, c.pos) });
    }
    out.listTo = c.pos;
    return true;
  });
  return out;
}

const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Sort the file's key-value metadata by key, in place. Returns the same array. */
export function sortParquetKeyValueMetadata(file: Uint8Array): Uint8Array {
  const { itemsFrom, elems } = readKeyValueList(file);
  let at = itemsFrom;
  for (const e of elems.sort(byKey)) { file.set(e.bytes, at); at += e.bytes.length; }
  return file;
}

function varintBytes(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) { out.push((v & 0x7f) | 0x80); v = Math.floor(v / 128); }
  out.push(v);
  return out;
}

/** One KeyValue struct in Thrift compact encoding, as arrow-rs writes it: key (field 1), value (field 2), stop. */
function encodeKeyValue(key: string, value: string): Uint8Array {
  const k = new TextEncoder().encode(key);
  const v = new TextEncoder().encode(value);
  return Uint8Array.from([0x18, ...varintBytes(k.length), ...k, 0x18, ...varintBytes(v.length), ...v, T.STOP]);
}

/**
 * The end of a Parquet file written before its key-value metadata was final (a unit streamed row group by row
 * group: its row count is known only at the end): replace the values of the keys in `kv` (adding missing
 * ones), keep the other pairs (ARROW:schema) as written, sort the list by key and fix the footer length.
 * `tail` must hold the whole footer; the bytes before it are returned unchanged. The result equals what the
 * writer would have produced had it been given `kv` from the start (then sorted).
 */
export function setParquetKeyValueMetadata(tail: Uint8Array, kv: Map<string, string>): Uint8Array {
  const n = tail.length;
  const { footerLen, start, listFrom, listTo, elems } = readKeyValueList(tail);
  // Field 5 must already be there (the writer got provisional values of the same keys).
  if (listFrom < 0) throw new Error('internal: the streamed Parquet footer has no key-value metadata to replace');
  const kept = elems.filter((e) => !kv.has(e.key));
  const all = [...kept, ...[...kv].map(([key, value]) => ({ key, bytes: encodeKeyValue(key, value) }))];
  all.sort(byKey);
  const header = all.length < 15 ? [(all.length << 4) | T.STRUCT] : [0xf0 | T.STRUCT, ...varintBytes(all.length)];
  const list = [Uint8Array.from(header), ...all.map((e) => e.bytes)];
  const listBytes = list.reduce((a, b) => a + b.length, 0);
  const newFooterLen = footerLen - (listTo - listFrom) + listBytes;
  const out = new Uint8Array(start + newFooterLen + 8);
  out.set(tail.subarray(0, listFrom), 0);
  let at = listFrom;
  for (const b of list) { out.set(b, at); at += b.length; }
  out.set(tail.subarray(listTo, n - 8), at);
  const odv = new DataView(out.buffer);
  odv.setUint32(out.length - 8, newFooterLen, true);
  odv.setUint32(out.length - 4, MAGIC, true);
  return out;
}
