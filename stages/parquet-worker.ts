// Parquet decoding off the main thread, in a worker of its own. parquet-wasm aborts on some corrupt pages
// with a wasm trap (`RuntimeError: unreachable`) raised from a microtask, which no try/catch can catch and
// which would also leave the shared wasm instance (the one that writes our output) in an unknown state. Here
// a trap kills only this worker; the reader (stages/read.ts) turns the lost row group into rejects and goes
// on with a fresh worker. The worker never touches storage: it asks the main thread for byte ranges, so
// transport errors stay on the main thread, where they are told apart from corrupt content.
import { parentPort } from 'node:worker_threads';
import * as pq from 'parquet-wasm';

export type ParquetToWorker =
  | { type: 'open'; size: number }
  | { type: 'range'; id: number; bytes?: Uint8Array; error?: string }
  | { type: 'read'; rowGroup: number; columns: string[]; batchSize: number }
  | { type: 'next' };

export type ParquetFromWorker =
  | { type: 'range'; id: number; start: number; end: number }
  | { type: 'meta'; rowGroups: number[]; schemaIpc: Uint8Array }
  | { type: 'batch'; ipc: Uint8Array }
  | { type: 'done' }
  | { type: 'error'; message: string };

const port = parentPort!;
let nextRange = 0;
const ranges = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
let wantNext: (() => void) | null = null;
let file: pq.ParquetFile | null = null;

/** The Blob parquet-wasm's ParquetFile.fromFile needs (size, slice, arrayBuffer), served by the main thread. */
class RemoteBlob {
  readonly type = '';
  constructor(private readonly start: number, private readonly end: number) {}
  get size(): number { return this.end - this.start; }
  slice(a = 0, b = this.size): RemoteBlob {
    const clamp = (x: number) => Math.max(0, Math.min(this.size, x < 0 ? this.size + x : x));
    return new RemoteBlob(this.start + clamp(a), this.start + Math.max(clamp(a), clamp(b)));
  }
  arrayBuffer(): Promise<ArrayBuffer> {
    const id = nextRange++;
    return new Promise<Uint8Array>((resolve, reject) => {
      ranges.set(id, { resolve, reject });
      post({ type: 'range', id, start: this.start, end: this.end });
    }).then((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
  }
}

function post(m: ParquetFromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

async function open(size: number): Promise<void> {
  file = await pq.ParquetFile.fromFile(new RemoteBlob(0, size) as unknown as Blob);
  const rowGroups = file.metadata().rowGroups().map((g) => Number(g.numRows()));
  post({ type: 'meta', rowGroups, schemaIpc: file.schema().intoIPCStream() as Uint8Array });
}

async function read(rowGroup: number, columns: string[], batchSize: number): Promise<void> {
  const stream = await file!.stream({ columns, batchSize, rowGroups: [rowGroup] });
  for await (const rb of stream as unknown as AsyncIterable<pq.RecordBatch>) {
    const ipc = rb.intoIPCStream() as Uint8Array;
    // One batch in flight: the main thread asks for the next when it has taken this one.
    const next = new Promise<void>((r) => { wantNext = r; });
    post({ type: 'batch', ipc }, [ipc.buffer as ArrayBuffer]);
    await next;
  }
  post({ type: 'done' });
}

const fail = (e: unknown) => post({ type: 'error', message: e instanceof Error ? e.message : String(e) });

port.on('message', (m: ParquetToWorker) => {
  if (m.type === 'range') {
    const r = ranges.get(m.id);
    ranges.delete(m.id);
    if (m.bytes) r?.resolve(m.bytes);
    else r?.reject(new Error(m.error ?? 'range read failed'));
  } else if (m.type === 'next') {
    const w = wantNext;
    wantNext = null;
    w?.();
  } else if (m.type === 'open') {
    open(m.size).catch(fail);
  } else if (m.type === 'read') {
    read(m.rowGroup, m.columns, m.batchSize).catch(fail);
  }
});
