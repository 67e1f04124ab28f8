// Input resolution: globs → a sorted list of shards with their sizes, de-duplicated by canonical location
// (`a.jsonl`, `./a.jsonl`, its absolute path and a symlink to it are one shard). A pattern that matches
// nothing, or a named file that does not exist, stops the run before any work.
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { shardFormat } from '../../stages/read.js';
import type { S3Options } from './s3.js';
import { canonicalLocation } from './input-checks.js';
import { shardKey } from '../../schemas/layout.js';

export interface InputShard {
  /** As given (or as the glob expanded it), first spelling seen: the `source` column. */
  source: string;
  bytes: number;
  /** Resolved real path or normalised URI: the shard's identity. */
  location: string;
  /**
   * Folder name of its units: shardKey(source as first given), so output paths do not depend on where the
   * data lives; assignShardKeys() maps a later spelling of the same file onto the folder it already has.
   */
  key: string;
}

/** `s3` configures s3:// patterns (globs over keys; see pipeline/s3.ts). */
export async function resolveInputs(patterns: string[], s3: S3Options = {}): Promise<InputShard[]> {
  if (patterns.length === 0) throw new Error('no --input given: name at least one shard or glob');
  const seen = new Set<string>();
  const shards: InputShard[] = [];
  for (const pattern of patterns) {
    if (/^s3:\/\//i.test(pattern)) {
      const { resolveS3Inputs } = await import('./s3.js');
      for (const m of await resolveS3Inputs(pattern, s3)) {
        const location = canonicalLocation(m.source);
        if (seen.has(location)) continue;
        seen.add(location);
        shardFormat(m.source);
        shards.push({ ...m, location, key: shardKey(m.source) });
      }
      continue;
    }
    let matches: string[];
    if (isDynamicPattern(pattern)) {
      // Absolute patterns give absolute paths: the source column must not depend on the working directory.
      matches = (await glob(pattern, { onlyFiles: true, expandDirectories: false, absolute: isAbsolute(pattern) })).sort();
      if (matches.length === 0) throw new Error(`--input ${pattern}: the glob matches no file`);
    } else {
      matches = [pattern];
    }
    for (const source of matches) {
      const location = canonicalLocation(source);
      if (seen.has(location)) continue;
      seen.add(location);
      let bytes: number;
      try {
        const st = statSync(source);
        if (!st.isFile()) throw new Error('not a regular file');
        bytes = st.size;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new Error(`--input ${source}: ${code === 'ENOENT' ? 'file not found' : (e as Error).message}`);
      }
      shardFormat(source); // throws on an unknown extension, before any work
      shards.push({ source, bytes, location, key: shardKey(source) });
    }
  }
  return shards;
}
