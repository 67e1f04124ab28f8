// What the pipeline needs from storage, as an interface below everything that uses it: the executor and the
// jobs write through it; pipeline/io implements it for local disk (LocalStore) and S3 (S3Store).

/**
 * A file written piece by piece (a unit's data file as its row groups fill): invisible under any final name
 * until close() moves it, whole, to one; abort() leaves nothing behind. Its temporary name is the base given
 * to createWriter plus `.<pid>.<random>.tmp` (so interrupt and crash clean-up know it).
 */
export interface StoreWriter {
  write(bytes: Uint8Array): Promise<void>;
  /** Finish the file and make it appear at `rel` whole (local: fsync + rename; S3: complete the upload, copy). */
  close(rel: string): Promise<void>;
  abort(): Promise<void>;
}

export interface OutputStore {
  /** Human-readable root (path or URI) for messages. */
  readonly root: string;
  writeAtomic(rel: string, bytes: Uint8Array): Promise<void>;
  /** Create `rel` with `bytes` only if it does not exist; false if it already did. Never a torn file. */
  createExclusive(rel: string, bytes: Uint8Array): Promise<boolean>;
  read(rel: string): Promise<Uint8Array | null>;
  exists(rel: string): Promise<boolean>;
  /** Relative paths of the files under `prefix` (recursive), sorted. */
  list(prefix: string): Promise<string[]>;
  /**
   * One range of a listing split so that its parts can be requested in parallel: the relative paths under
   * `prefix` (recursive) that sort after `after` and not after `upTo` (UTF-8 byte order, S3's order), sorted.
   * null: unbounded. Ranges (null, s1], (s1, s2], …, (sN, null] together list every path exactly once.
   * S3: ListObjectsV2 from StartAfter, stopped at the first page past `upTo`. With `limit`: only the first
   * `limit` of those (fewer: the range holds no more).
   */
  listRange(prefix: string, after: string | null, upTo: string | null, limit?: number): Promise<string[]>;
  remove(rel: string): Promise<void>;
  /**
   * Move `from` to `to` (replacing `to`); false when `from` does not exist. Local: rename(2), atomic. S3: a
   * server-side copy (the new key appears whole) and a delete of the old one.
   */
  rename(from: string, to: string): Promise<boolean>;
  /** Start a file written in pieces (memory bounded by one piece, or one multipart part on S3). */
  createWriter(base: string): Promise<StoreWriter>;
  /** Check the store can be written at all, before any work (a clear error instead of a late failure). */
  checkWritable(): Promise<void>;
}

/** Order of keys as S3 lists them: by UTF-8 bytes (for ASCII the same as `<`). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Whether `key` lies in the range (after, upTo] of OutputStore.listRange. */
export function inKeyRange(key: string, after: string | null, upTo: string | null): boolean {
  return (after === null || compareKeys(key, after) > 0) && (upTo === null || compareKeys(key, upTo) <= 0);
}
