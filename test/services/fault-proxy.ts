// An HTTP proxy on 127.0.0.1 between rho and an S3 server that injects the faults object stores really
// produce: 503 SlowDown, connections reset before the request reaches the server, responses lost after the
// server acted (the client cannot know the PUT landed), and GET bodies cut off halfway. Faults hit a
// deterministic pattern of request numbers, so a run is reproducible.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';

export interface FaultCounts {
  requests: number;
  slowDown: number;
  resetBefore: number;
  lostResponse: number;
  cutBody: number;
  /** Requests by kind: GET, PUT, HEAD, DELETE, LIST (a GET with list-type), COPY (a PUT with x-amz-copy-source). */
  byKind: Record<string, number>;
}

export interface FaultProxy {
  endpoint: string;
  counts: FaultCounts;
  /** Turn faults off (e.g. while the test reads results back) or on. */
  enabled: boolean;
  /** Answer 200 to a PUT with If-None-Match that the server refused with 412: a store that ignores the header. */
  ignoreIfNoneMatch: boolean;
  /**
   * Requests for keys containing this string: the first GET's body is cut off halfway, then the server is
   * "down" for it (every later GET of it has its connection reset), past any retry budget. null: off.
   */
  brokenKey: string | null;
  /** GETs of brokenKey passed through untouched before the cut (e.g. a probe that reads the first records). */
  brokenSkip: number;
  close(): Promise<void>;
}

const SLOWDOWN = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>';

/** `delayMs`: added to every request before it is forwarded (the latency of a remote object store). */
export async function startFaultProxy(target: string, opts: { every?: number; delayMs?: number } = {}): Promise<FaultProxy> {
  const t = new URL(target);
  const every = opts.every ?? 4;
  const counts: FaultCounts = { requests: 0, slowDown: 0, resetBefore: 0, lostResponse: 0, cutBody: 0, byKind: {} };
  const delayMs = opts.delayMs ?? 0;
  const state = { enabled: true, ignoreIfNoneMatch: false, brokenKey: null as string | null, brokenCut: false, brokenSkip: 0, brokenSeen: 0 };
  const server: Server = createServer((req: IncomingMessage, res) => {
    const n = ++counts.requests;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    const kind = req.method === 'GET' && /[?&]list-type=/.test(req.url ?? '') ? 'LIST' : req.method === 'PUT' && req.headers['x-amz-copy-source'] ? 'COPY' : req.method ?? '?';
    counts.byKind[kind] = (counts.byKind[kind] ?? 0) + 1;
    req.on('end', () => (delayMs > 0 ? setTimeout(forward, delayMs) : forward()));
    const forward = () => {
      const body = Buffer.concat(chunks);
      // One request in `every` gets a fault, rotating through the four kinds.
      let flushCut = false;
      let fault = state.enabled && n % every === 0 ? (n / every) % 4 : -1;
      if (state.brokenKey !== null && req.method === 'GET' && decodeURIComponent(req.url ?? '').includes(state.brokenKey)) {
        if (state.brokenSeen++ < state.brokenSkip) fault = -1;
        else if (state.brokenCut) fault = 1;
        else { state.brokenCut = true; fault = 3; flushCut = true; }
      }
      if (fault === 0) {
        counts.slowDown++;
        res.writeHead(503, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(SLOWDOWN) });
        res.end(SLOWDOWN);
        return;
      }
      if (fault === 1) {
        counts.resetBefore++;
        req.socket.destroy();
        return;
      }
      const up = httpRequest({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        const status = ur.statusCode ?? 502;
        if (fault === 2) {
          // The server did the work; the client never hears of it.
          ur.resume();
          ur.on('end', () => { counts.lostResponse++; req.socket.destroy(); });
          return;
        }
        if (state.ignoreIfNoneMatch && req.method === 'PUT' && req.headers['if-none-match'] === '*' && status === 412) {
          ur.resume();
          res.writeHead(200, { etag: '"ignored-if-none-match"', 'content-length': 0 });
          res.end();
          return;
        }
        const len = Number(ur.headers['content-length'] ?? 0);
        if (fault === 3 && req.method === 'GET' && status < 300 && len > 64) {
          counts.cutBody++;
          res.writeHead(status, ur.headers);
          let sent = 0;
          ur.on('data', (c: Buffer) => {
            if (sent >= len / 2) return;
            const part = c.subarray(0, Math.max(0, Math.ceil(len / 2) - sent));
            sent += part.length;
            // flushCut: the half really reaches the client before the connection drops (a mid-read outage).
            if (flushCut) res.write(part, () => { if (sent >= len / 2) { ur.destroy(); res.socket?.destroy(); } });
            else {
              res.write(part);
              if (sent >= len / 2) { ur.destroy(); res.socket?.destroy(); }
            }
          });
          return;
        }
        res.writeHead(status, ur.headers);
        ur.pipe(res);
      });
      up.on('error', () => req.socket.destroy());
      up.end(body);
    };
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts,
    get enabled() { return state.enabled; },
    set enabled(v: boolean) { state.enabled = v; },
    get ignoreIfNoneMatch() { return state.ignoreIfNoneMatch; },
    set ignoreIfNoneMatch(v: boolean) { state.ignoreIfNoneMatch = v; },
    get brokenKey() { return state.brokenKey; },
    set brokenKey(v: string | null) { state.brokenKey = v; state.brokenCut = false; state.brokenSeen = 0; },
    get brokenSkip() { return state.brokenSkip; },
    set brokenSkip(v: number) { state.brokenSkip = v; },
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
