// Small pieces shared by the service starters.
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (services of parallel test files must not collide). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The service's programs are not installed here (test/requirements.ts decides what a test does about it). */
export class ServiceUnavailable extends Error {}
