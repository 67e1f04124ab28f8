// Where outputs live. Two-method-style interface (hyparquet's habit): the pipeline only writes whole files
// atomically, reads them back, lists a prefix and creates a file only if absent (claims). Local disk here;
// an object store implements the same calls.
import { createHash } from 'node:crypto';
import { type Dirent, createReadStream, mkdirSync, readFileSync, existsSync, readdirSync, statSync, rmSync, openSync, writeSync, fsyncSync, closeSync, linkSync, unlinkSync, renameSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { crashPoint } from '../../schemas/crashpoints.js';
import { compareKeys, inKeyRange, type OutputStore, type StoreWriter } from '../../schemas/store.js';

export type { OutputStore, StoreWriter };

/** Write bytes to `path` atomically: a reader sees the old file, no file, or the whole new file. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now().toString(36)}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    crashPoint('write-temp');
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  crashPoint('write-renamed');
  const dfd = openSync(dirname(path), 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

export class LocalStore implements OutputStore {
  constructor(readonly root: string) {}

  private abs(rel: string): string {
    return join(this.root, rel);
  }

  async writeAtomic(rel: string, bytes: Uint8Array): Promise<void> {
    writeFileAtomic(this.abs(rel), bytes);
  }

  async createWriter(base: string): Promise<StoreWriter> {
    // Appended to a temp file (the pid in its name: interrupts remove it), renamed whole into place on close.
    const tmp = this.abs(`${base}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
    mkdirSync(dirname(tmp), { recursive: true });
    let fd: number | null = openSync(tmp, 'w');
    const drop = () => {
      if (fd !== null) { try { closeSync(fd); } catch { /* closed */ } fd = null; }
      try { unlinkSync(tmp); } catch { /* already gone */ }
    };
    return {
      write: async (bytes) => {
        if (fd === null) throw new Error(`internal: write to ${tmp} after close`);
        try {
          let off = 0;
          while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
        } catch (e) {
          drop();
          throw e;
        }
        crashPoint('write-temp');
      },
      close: async (rel) => {
        if (fd === null) throw new Error(`internal: close of ${tmp} twice`);
        const dst = this.abs(rel);
        try {
          fsyncSync(fd);
          closeSync(fd);
          fd = null;
          mkdirSync(dirname(dst), { recursive: true });
          renameSync(tmp, dst);
        } catch (e) {
          drop();
          throw e;
        }
        crashPoint('write-renamed');
        const dfd = openSync(dirname(dst), 'r');
        try { fsyncSync(dfd); } finally { closeSync(dfd); }
      },
      abort: async () => drop(),
    };
  }

  async createExclusive(rel: string, bytes: Uint8Array): Promise<boolean> {
    // Write the full content under a temp name, then hard-link it into place: link() fails with EEXIST
    // if the target exists, so the claim is atomic and never observed half-written.
    const path = this.abs(rel);
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } catch (e) {
      // E.g. ENOSPC: leave no temp file behind.
      closeSync(fd);
      unlinkSync(tmp);
      throw e;
    }
    closeSync(fd);
    try {
      linkSync(tmp, path);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    } finally {
      unlinkSync(tmp);
    }
  }

  async read(rel: string): Promise<Uint8Array | null> {
    try {
      return readFileSync(this.abs(rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async exists(rel: string): Promise<boolean> {
    return existsSync(this.abs(rel));
  }

  async list(prefix: string): Promise<string[]> {
    return this.walk(prefix, () => true).sort();
  }

  async listRange(prefix: string, after: string | null, upTo: string | null, limit?: number): Promise<string[]> {
    // A folder is entered only if some path under it can fall in the range (so that the ranges of a split
    // listing do not each walk the whole tree).
    const mayHold = (dir: string) => {
      const d = `${dir}/`;
      if (upTo !== null && compareKeys(d, upTo) > 0) return false;
      return after === null || compareKeys(d, after) >= 0 || after.startsWith(d);
    };
    const all = this.walk(prefix, mayHold).filter((rel) => inKeyRange(rel, after, upTo)).sort(compareKeys);
    return limit === undefined ? all : all.slice(0, limit);
  }

  /** Relative paths of the files under `prefix`, entering only the folders (relative paths) `enter` accepts. */
  private walk(prefix: string, enter: (relDir: string) => boolean): string[] {
    const out: string[] = [];
    const walk = (dir: string) => {
      let entries: Dirent[];
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return;
        throw e;
      }
      for (const d of entries) {
        const p = join(dir, d.name);
        // The entry's own type, not a second stat: another runner may rename or remove its temp file between
        // readdir and a stat (seen: ENOENT on a claim's .tmp with three concurrent runners). Links are followed.
        let isDir = d.isDirectory();
        if (d.isSymbolicLink()) {
          try {
            isDir = statSync(p).isDirectory();
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
            throw e;
          }
        }
        if (isDir) {
          if (enter(relative(this.root, p))) walk(p);
        } else out.push(relative(this.root, p));
      }
    };
    walk(this.abs(prefix));
    return out;
  }

  async remove(rel: string): Promise<void> {
    rmSync(this.abs(rel), { recursive: true, force: true });
  }

  async rename(from: string, to: string): Promise<boolean> {
    const dst = this.abs(to);
    mkdirSync(dirname(dst), { recursive: true });
    try {
      renameSync(this.abs(from), dst);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    for (const d of new Set([dirname(dst), dirname(this.abs(from))])) {
      const dfd = openSync(d, 'r');
      try { fsyncSync(dfd); } finally { closeSync(dfd); }
    }
    return true;
  }

  async checkWritable(): Promise<void> {
    try {
      mkdirSync(this.root, { recursive: true });
      const probe = join(this.root, `.rho-write-probe-${process.pid}`);
      writeFileAtomic(probe, new Uint8Array([0]));
      unlinkSync(probe);
    } catch (e) {
      throw new Error(`output dir ${this.root} is not writable (${(e as Error).message}); choose another --output or fix its permissions`);
    }
  }
}

/** sha256 of a local file, streamed. */
export function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}
