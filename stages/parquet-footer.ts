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

/** Sort the file's key-value metadata by key, in place. Returns the same array. */
export function sortParquetKeyValueMetadata(file: Uint8Array): Uint8Array {
  const n = file.length;
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  if (n < 12 || dv.getUint32(n - 4, true) !== MAGIC) throw new Error('not a Parquet file (no PAR1 footer)');
  const footerLen = dv.getUint32(n - 8, true);
  const start = n - 8 - footerLen;
  const c = new Cursor(file, start);
  skipStruct(c, (id, type) => {
    if (id !== 5 || type !== T.LIST) return false;
    const h = c.byte();
    let count = h >> 4;
    if (count === 15) count = c.varint();
    const elems: { key: string; bytes: Uint8Array }[] = [];
    const listStart = c.pos;
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
      elems.push({ key, bytes: file.slice(from, c.pos) });
    }
    elems.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    let at = listStart;
    for (const e of elems) { file.set(e.bytes, at); at += e.bytes.length; }
    return true;
  });
  return file;
}
