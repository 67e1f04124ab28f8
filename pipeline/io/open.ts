// Where a URI's bytes live: local paths and s3:// URIs, for outputs (OutputStore) and inputs (ShardOpener).
// The S3 side is loaded only when an s3:// URI is used, so local runs never load the AWS SDK.
import { pipeline, Transform } from 'node:stream';
import { localFiles, type ShardOpener } from '../../stages/read.js';
import { LocalStore, type OutputStore } from './local.js';
import type { S3Options } from './s3.js';

export const isS3Uri = (s: string): boolean => /^s3:\/\//i.test(s);

/** `--output`: a local dir → LocalStore, `s3://bucket/prefix` → S3Store. */
export async function openOutputStore(uri: string, opts: S3Options = {}): Promise<OutputStore> {
  if (isS3Uri(uri)) {
    const { S3Store } = await import('./s3.js');
    return new S3Store(uri, opts);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(uri)) throw new Error(`--output ${uri}: unsupported scheme (use a local path or s3://bucket/prefix)`);
  return new LocalStore(uri);
}

const s3Openers = new Map<string, ShardOpener>();

/** The ShardOpener that reads `source` (pass it to readShard). */
export async function openerFor(source: string, opts: S3Options = {}): Promise<ShardOpener> {
  if (!isS3Uri(source)) return localFiles;
  const key = JSON.stringify(opts);
  let o = s3Openers.get(key);
  if (!o) {
    const { S3Opener } = await import('./s3.js');
    o = new S3Opener(opts);
    s3Openers.set(key, o);
  }
  return o;
}

/** Wrap an opener so that the bytes its streams deliver are counted (for progress only). */
export function countingOpener(inner: ShardOpener, onBytes: (n: number) => void): ShardOpener {
  return {
    stream(source) {
      const counter = new Transform({ transform(chunk: Buffer, _e, cb) { onBytes(chunk.length); cb(null, chunk); } });
      return pipeline(inner.stream(source), counter, () => {});
    },
    blob: (source) => inner.blob(source),
  };
}
