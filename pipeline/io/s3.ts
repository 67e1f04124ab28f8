// Object storage: s3:// outputs (an OutputStore) and inputs (a ShardOpener), on the AWS SDK v3.
// Credentials, region and endpoint come from the standard AWS chain (env vars, ~/.aws profile, instance
// role); `endpoint` (--s3-endpoint) points at an S3-compatible store (Ceph radosgw, MinIO, R2...).
//
// Retries: every request goes through the SDK's retry strategy (exponential backoff with jitter, on
// 503 SlowDown / throttling, 5xx, timeouts and connection resets), with more attempts than the SDK's
// default because a long scoring run must not die of one bad minute. Streamed bodies (GET) are resumed
// from the last byte received with a ranged GET, which the SDK does not do by itself.
//
// Exclusive creates (claims, completion of the run identity): a conditional PUT with `If-None-Match: *`
// (S3 since 2024, radosgw, MinIO). A store that ignores the header is detected at start-up (checkWritable
// PUTs a probe twice) and then served by a weaker protocol: PUT, wait `settleMs`, read back, and own the
// key only if the content read back is ours. That protocol can let two runners believe they own one claim
// when their writes land further apart than settleMs; the outputs are deterministic and written whole, so
// the cost is duplicate work, never a torn or mixed file. Set `conditionalWrites: 'require'` to refuse such
// stores instead.
import { PassThrough, Readable } from 'node:stream';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import {
  S3Client, GetObjectCommand, PutObjectCommand, CopyObjectCommand, HeadObjectCommand, DeleteObjectCommand, ListObjectsV2Command, HeadBucketCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { RetryStrategyV2, RetryToken, RetryErrorInfo } from '@smithy/types';
import { compareKeys, type OutputStore, type StoreWriter } from '../../schemas/store.js';
import type { ShardOpener } from '../../stages/read.js';

export interface S3Options {
  /** --s3-endpoint: URL of an S3-compatible store; path-style addressing is used with it. */
  endpoint?: string;
  region?: string;
  /** Attempts per request (first try included). */
  maxAttempts?: number;
  /** Upper bound of one backoff wait, ms. */
  maxBackoffMs?: number;
  /** Multipart part size for data files, bytes (S3's minimum is 5 MiB). */
  partSize?: number;
  /** 'auto': probe, fall back to the weaker protocol if If-None-Match is ignored; 'require': refuse such stores. */
  conditionalWrites?: 'auto' | 'require';
  /** Wait of the weaker claim protocol between PUT and read-back, ms. */
  settleMs?: number;
  /** Keys per listing page of listRange (S3's default and maximum: 1,000); smaller in tests. */
  listPageSize?: number;
}

export const isS3Uri = (s: string): boolean => /^s3:\/\//i.test(s);

export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(uri);
  if (!m || !m[1]) throw new Error(`${uri}: not an s3://bucket/key URI`);
  return { bucket: m[1], key: m[2] };
}

const clients = new Map<string, S3Client>();

/** One client per endpoint/region (connection reuse); the SDK resolves credentials lazily on first use. */
export function s3Client(opts: S3Options = {}): S3Client {
  const endpoint = opts.endpoint ?? process.env.RHO_S3_ENDPOINT;
  const key = JSON.stringify([endpoint, opts.region, opts.maxAttempts, opts.maxBackoffMs]);
  let c = clients.get(key);
  if (c) return c;
  const maxAttempts = opts.maxAttempts ?? 10;
  const maxBackoff = opts.maxBackoffMs ?? 20_000;
  const cfg: S3ClientConfig = {
    region: opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // Full jitter: runners that got throttled together must not all come back together.
    retryStrategy: new PatientRetry(maxAttempts, maxBackoff),
    // Data files are checksummed by rho (sha256 in the completion record); S3-compatible stores differ in
    // which of the SDK's newer default checksums they accept.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
  if (endpoint) {
    cfg.endpoint = endpoint;
    cfg.forcePathStyle = true;
  }
  c = new S3Client(cfg);
  clients.set(key, c);
  return c;
}

/**
 * The SDK's standard strategy has a shared retry quota (about 100 retries without successes in between),
 * after which it stops retrying at all: a throttled bucket would then fail the run. This one retries every
 * retryable error (the SDK classifies: throttling such as 503 SlowDown, 5xx, timeouts, connection resets
 * and refusals) up to maxAttempts, with full-jitter exponential backoff, longer for throttling.
 */
class PatientRetry implements RetryStrategyV2 {
  constructor(private readonly maxAttempts: number, private readonly maxBackoffMs: number) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return token(0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const retries = previous.getRetryCount() + 1;
    if (info.errorType === 'CLIENT_ERROR' || retries >= this.maxAttempts) throw new Error('no more retries');
    const base = info.errorType === 'THROTTLING' ? 500 : 100;
    let delay = Math.random() * Math.min(this.maxBackoffMs, base * 2 ** (retries - 1));
    if (info.retryAfterHint) delay = Math.max(delay, Math.min(this.maxBackoffMs, info.retryAfterHint.getTime() - Date.now()));
    return token(retries, delay);
  }

  recordSuccess(): void {}
}

const token = (count: number, delay: number): RetryToken => ({ getRetryCount: () => count, getRetryDelay: () => delay });

/** A clear, actionable message for what goes wrong first with S3: endpoint, credentials, bucket. */
export function describeS3Error(e: unknown, what: string): Error {
  const err = e as { name?: string; Code?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = err.$metadata?.httpStatusCode;
  const name = err.name ?? err.Code ?? err.code ?? 'Error';
  let hint = '';
  if (/ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNRESET|TimeoutError|socket hang up/i.test(`${name} ${err.code ?? ''} ${err.message ?? ''}`)) {
    hint = 'the S3 endpoint cannot be reached: check --s3-endpoint (or AWS_ENDPOINT_URL) and the network';
  } else if (name === 'NoSuchBucket' || (status === 404 && /bucket/i.test(what))) {
    hint = 'the bucket does not exist: create it or fix the URI';
  } else if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'CredentialsProviderError', 'ExpiredToken', 'InvalidToken'].includes(name) || status === 403) {
    hint = 'the credentials were refused: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and the bucket policy';
  }
  return new Error(`${what}: ${name}${status ? ` (HTTP ${status})` : ''}${err.message && err.message !== name ? `: ${err.message}` : ''}${hint ? `; ${hint}` : ''}`);
}

const isNotFound = (e: unknown) => {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata?.httpStatusCode === 404;
};
const isPreconditionFailed = (e: unknown) => {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err.name === 'PreconditionFailed' || err.$metadata?.httpStatusCode === 412;
};

async function bodyBytes(body: unknown): Promise<Uint8Array> {
  return (body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray();
}

const equalBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

export class S3Store implements OutputStore {
  readonly root: string;
  readonly bucket: string;
  /** Key prefix, '' or ending in '/'. */
  readonly prefix: string;
  readonly client: S3Client;
  /** Decided by checkWritable(); until then conditional PUTs are assumed to work. */
  conditionalWrites: boolean | null = null;
  private readonly opts: S3Options;

  constructor(uri: string, opts: S3Options = {}) {
    const { bucket, key } = parseS3Uri(uri);
    this.bucket = bucket;
    this.prefix = key && !key.endsWith('/') ? `${key}/` : key;
    this.root = `s3://${bucket}/${this.prefix}`.replace(/\/$/, '');
    this.opts = opts;
    this.client = s3Client(opts);
  }

  private key(rel: string): string {
    return this.prefix + rel;
  }

  async writeAtomic(rel: string, bytes: Uint8Array): Promise<void> {
    // A PUT (or a completed multipart upload) appears whole or not at all: S3 objects are atomic.
    try {
      const partSize = Math.max(5 * 1024 * 1024, this.opts.partSize ?? 8 * 1024 * 1024);
      if (bytes.length <= partSize) {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(rel), Body: bytes }));
      } else {
        // Parts retry one by one; an upload that fails for good is aborted (leavePartsOnError false).
        await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: this.key(rel), Body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) }, partSize, queueSize: 4 }).done();
      }
    } catch (e) {
      throw describeS3Error(e, `writing ${this.root}/${rel}`);
    }
  }

  async createWriter(base: string): Promise<StoreWriter> {
    // A multipart upload fed as the pieces come (the SDK holds at most queueSize parts of partSize in memory;
    // a body under one part is a single PUT). The temp object appears only when the upload completes; close()
    // then copies it to its name (server-side) and deletes it. An upload that fails is aborted by the SDK.
    const tmp = `${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const partSize = Math.max(5 * 1024 * 1024, this.opts.partSize ?? 8 * 1024 * 1024);
    const body = new PassThrough();
    const upload = new Upload({ client: this.client, params: { Bucket: this.bucket, Key: this.key(tmp), Body: body }, partSize, queueSize: 2, leavePartsOnError: false });
    const done = upload.done();
    done.catch(() => undefined); // observed by write() and close()
    let ended = false;
    const abort = async () => {
      body.destroy();
      await upload.abort().catch(() => undefined);
      await done.catch(() => undefined);
      await this.remove(tmp).catch(() => undefined);
    };
    return {
      write: async (bytes) => {
        try {
          if (!body.write(bytes)) await Promise.race([once(body, 'drain'), done]);
        } catch (e) {
          await abort();
          throw describeS3Error(e, `writing ${this.root}/${tmp}`);
        }
      },
      close: async (rel) => {
        if (ended) throw new Error(`internal: close of ${tmp} twice`);
        ended = true;
        body.end();
        try {
          await done;
        } catch (e) {
          await abort();
          throw describeS3Error(e, `writing ${this.root}/${tmp}`);
        }
        if (!(await this.rename(tmp, rel))) throw new Error(`${this.root}/${tmp}: the uploaded object vanished before it could be moved to ${rel}`);
      },
      abort,
    };
  }

  async createExclusive(rel: string, bytes: Uint8Array): Promise<boolean> {
    if (this.conditionalWrites === false) return this.createWeak(rel, bytes);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(rel), Body: bytes, IfNoneMatch: '*' }));
      return true;
    } catch (e) {
      if (!isPreconditionFailed(e)) throw describeS3Error(e, `creating ${this.root}/${rel}`);
    }
    // 412 after a retry can mean our own first attempt landed and only its answer was lost: the bytes tell.
    const now = await this.read(rel);
    return now !== null && equalBytes(now, bytes);
  }

  /** For stores that ignore If-None-Match (see the header comment): put, settle, read back. */
  private async createWeak(rel: string, bytes: Uint8Array): Promise<boolean> {
    if (await this.exists(rel)) return false;
    await this.writeAtomic(rel, bytes);
    await new Promise((r) => setTimeout(r, this.opts.settleMs ?? 2000));
    const now = await this.read(rel);
    return now !== null && equalBytes(now, bytes);
  }

  async read(rel: string): Promise<Uint8Array | null> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      return await bodyBytes(res.Body);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw describeS3Error(e, `reading ${this.root}/${rel}`);
    }
  }

  async exists(rel: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw describeS3Error(e, `checking ${this.root}/${rel}`);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const p = prefix === '' ? this.prefix : this.key(prefix.endsWith('/') ? prefix : `${prefix}/`);
    const keys = await listKeys(this.client, this.bucket, p, `listing ${this.root}/${prefix}`);
    return keys.map((k) => k.key.slice(this.prefix.length)).sort();
  }

  async listRange(prefix: string, after: string | null, upTo: string | null, limit = Number.POSITIVE_INFINITY): Promise<string[]> {
    const p = prefix === '' ? this.prefix : this.key(prefix.endsWith('/') ? prefix : `${prefix}/`);
    const stop = upTo === null ? null : this.key(upTo);
    const out: string[] = [];
    let token: string | undefined;
    try {
      pages: do {
        // StartAfter on the first page only; the continuation token carries the position after it.
        const res = await this.client.send(new ListObjectsV2Command({
          Bucket: this.bucket, Prefix: p, MaxKeys: Math.min(this.opts.listPageSize ?? 1000, limit - out.length),
          ...(token ? { ContinuationToken: token } : after !== null ? { StartAfter: this.key(after) } : {}),
        }));
        for (const o of res.Contents ?? []) {
          if (o.Key === undefined) continue;
          if (stop !== null && compareKeys(o.Key, stop) > 0) break pages; // the next range's: stop here
          if (after !== null && compareKeys(o.Key, this.key(after)) <= 0) continue; // a store that ignored StartAfter
          out.push(o.Key.slice(this.prefix.length));
          if (out.length >= limit) break pages;
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (e) {
      throw describeS3Error(e, `listing ${this.root}/${prefix} after ${after ?? '(start)'}`);
    }
    return out;
  }

  async remove(rel: string): Promise<void> {
    // Like rm -rf: the object itself, and everything "under" it.
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(rel) }));
      for (const k of await this.list(rel)) await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(k) }));
    } catch (e) {
      throw describeS3Error(e, `deleting ${this.root}/${rel}`);
    }
  }

  async rename(from: string, to: string): Promise<boolean> {
    // Server-side copy (up to 5 GB in one request; a unit's data file is far below), then delete the source.
    try {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: this.key(to), CopySource: encodeURIComponent(`${this.bucket}/${this.key(from)}`).replace(/%2F/g, '/') }));
    } catch (e) {
      if (isNotFound(e)) return false;
      throw describeS3Error(e, `copying ${this.root}/${from} to ${to}`);
    }
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(from) }));
    } catch (e) {
      throw describeS3Error(e, `deleting ${this.root}/${from}`);
    }
    return true;
  }

  /**
   * Before any work: the bucket exists, the credentials may write, and whether the store honours
   * If-None-Match (a probe created twice must fail the second time).
   */
  async checkWritable(): Promise<void> {
    try {
      // Few attempts: an unreachable endpoint or a refused key should fail in seconds, not after minutes of backoff.
      await s3Client({ ...this.opts, maxAttempts: 3, maxBackoffMs: 1000 }).send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      throw describeS3Error(e, `bucket ${this.bucket} (output ${this.root})`);
    }
    const probe = `_rho/.probe-${randomBytes(6).toString('hex')}`;
    const bytes = new TextEncoder().encode('rho write probe\n');
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(probe), Body: bytes, IfNoneMatch: '*' }));
      let honoured: boolean;
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(probe), Body: bytes, IfNoneMatch: '*' }));
        honoured = false;
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
        honoured = true;
      }
      this.conditionalWrites = honoured;
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(probe) }));
    } catch (e) {
      throw describeS3Error(e, `writing a probe to ${this.root}`);
    }
    if (!this.conditionalWrites) {
      if (this.opts.conditionalWrites === 'require') {
        throw new Error(`${this.root}: the store ignores conditional writes (If-None-Match: *), so claims cannot be made exclusive; use a store that supports them (AWS S3, radosgw, MinIO)`);
      }
      process.stderr.write(`rho: warning: ${this.root} ignores If-None-Match: * (conditional PUT); claims fall back to put-and-read-back, which may let two runners score one unit twice (never corrupting it)\n`);
    }
  }
}

async function listKeys(client: S3Client, bucket: string, prefix: string, what: string): Promise<{ key: string; size: number }[]> {
  const out: { key: string; size: number }[] = [];
  let token: string | undefined;
  try {
    do {
      const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of res.Contents ?? []) if (o.Key !== undefined) out.push({ key: o.Key, size: o.Size ?? 0 });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
  } catch (e) {
    throw describeS3Error(e, what);
  }
  return out;
}

/** Shell-style glob over object keys: `*` and `?` stay inside one path segment, `**` crosses them, `{a,b}`, `[...]`. */
export function keyGlobRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) { re += '\\{'; continue; }
      re += `(?:${glob.slice(i + 1, end).split(',').map((s) => s.replace(/[.+^$()|\\[\]]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('|')})`;
      i = end;
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) { re += '\\['; continue; }
      re += `[${glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^$()|\\\]}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

const GLOB_CHARS = /[*?{[]/;

/** Expand an s3:// input pattern to the URIs of matching objects (sorted), with sizes. A plain key must exist. */
export async function resolveS3Inputs(pattern: string, opts: S3Options = {}): Promise<{ source: string; bytes: number }[]> {
  const { bucket, key } = parseS3Uri(pattern);
  const client = s3Client(opts);
  const g = key.search(GLOB_CHARS);
  if (g < 0) {
    try {
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return [{ source: pattern, bytes: Number(head.ContentLength ?? 0) }];
    } catch (e) {
      if (isNotFound(e)) throw new Error(`--input ${pattern}: no such object`);
      throw describeS3Error(e, `--input ${pattern}`);
    }
  }
  const literal = key.slice(0, g);
  const re = keyGlobRegExp(key);
  const keys = await listKeys(client, bucket, literal, `--input ${pattern}`);
  const matches = keys.filter((k) => re.test(k.key) && !k.key.endsWith('/')).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (matches.length === 0) throw new Error(`--input ${pattern}: the glob matches no object`);
  return matches.map((k) => ({ source: `s3://${bucket}/${k.key}`, bytes: k.size }));
}

/** Reads shards from s3://: streams resume after a dropped connection; Parquet is read by ranged GETs. */
export class S3Opener implements ShardOpener {
  private readonly client: S3Client;
  constructor(private readonly opts: S3Options = {}) {
    this.client = s3Client(opts);
  }

  stream(source: string): Readable {
    return Readable.from(this.chunks(source), { objectMode: false, highWaterMark: 1 << 20 });
  }

  private async *chunks(source: string): AsyncGenerator<Buffer> {
    const { bucket, key } = parseS3Uri(source);
    let pos = 0;
    let etag: string | undefined;
    const maxResumes = this.opts.maxAttempts ?? 10;
    for (let resumes = 0; ; resumes++) {
      let body: AsyncIterable<Uint8Array>;
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: pos > 0 ? `bytes=${pos}-` : undefined, IfMatch: etag }));
        etag ??= res.ETag;
        body = res.Body as AsyncIterable<Uint8Array>;
      } catch (e) {
        if (pos > 0 && (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) return; // nothing left
        throw describeS3Error(e, `reading ${source}`);
      }
      try {
        for await (const chunk of body) {
          pos += chunk.length;
          yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        }
        return;
      } catch (e) {
        // A connection dropped mid-body: continue from the next byte (If-Match: the object must not have changed).
        if (resumes + 1 >= maxResumes) throw describeS3Error(e, `reading ${source} at byte ${pos}`);
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(5000, 100 * 2 ** resumes)));
      }
    }
  }

  async blob(source: string): Promise<Blob> {
    const { bucket, key } = parseS3Uri(source);
    let head;
    try {
      head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    } catch (e) {
      throw describeS3Error(e, `reading ${source}`);
    }
    // parquet-wasm's ParquetFile.fromFile only uses size, slice(a, b) and arrayBuffer(): a duck-typed Blob
    // backed by ranged GETs lets it read the footer and the wanted column chunks without downloading the file.
    return new RangedObject(this.client, bucket, key, source, Number(head.ContentLength ?? 0), 0, Number(head.ContentLength ?? 0), head.ETag) as unknown as Blob;
  }
}

class RangedObject {
  readonly size: number;
  readonly type = '';
  constructor(
    private readonly client: S3Client, private readonly bucket: string, private readonly key: string, private readonly source: string,
    private readonly total: number, private readonly start: number, private readonly end: number, private readonly etag: string | undefined,
  ) {
    this.size = end - start;
  }

  slice(a = 0, b = this.size): RangedObject {
    const clamp = (x: number) => Math.max(0, Math.min(this.size, x < 0 ? this.size + x : x));
    return new RangedObject(this.client, this.bucket, this.key, this.source, this.total, this.start + clamp(a), this.start + Math.max(clamp(a), clamp(b)), this.etag);
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    if (this.size === 0) return new ArrayBuffer(0);
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key, Range: `bytes=${this.start}-${this.end - 1}`, IfMatch: this.etag }));
        const bytes = await bodyBytes(res.Body);
        if (bytes.length !== this.size) throw new Error(`short read: ${bytes.length} of ${this.size} bytes`);
        return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      } catch (e) {
        // The SDK retried the request; a body cut off mid-transfer is retried here.
        const http = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (http !== undefined || attempt >= 5) throw describeS3Error(e, `reading ${this.source} bytes ${this.start}-${this.end - 1}`);
        await new Promise((r) => setTimeout(r, Math.random() * 100 * 2 ** attempt));
      }
    }
  }
}

/** Size, ETag and version of an object (the input fingerprint of an s3:// shard). */
export async function headObject(uri: string, opts: S3Options = {}): Promise<{ bytes: number; etag: string; version: string | null }> {
  const { bucket, key } = parseS3Uri(uri);
  try {
    const h = await s3Client(opts).send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { bytes: Number(h.ContentLength ?? 0), etag: String(h.ETag ?? ''), version: h.VersionId ?? null };
  } catch (e) {
    if (isNotFound(e)) throw new Error(`${uri}: no such object`);
    throw describeS3Error(e, `reading ${uri}`);
  }
}
