// Input resolution: globs → a sorted, de-duplicated list of shards with their sizes. A pattern that
// matches nothing, or a named file that does not exist, stops the run before any work.
import { statSync } from 'node:fs';
import { glob, isDynamicPattern } from 'tinyglobby';
import { shardFormat } from '../stages/read.js';

export interface InputShard {
  /** As given (or as the glob expanded it): this string is the `source` column and the shard's identity. */
  source: string;
  bytes: number;
}

export async function resolveInputs(patterns: string[]): Promise<InputShard[]> {
  if (patterns.length === 0) throw new Error('no --input given: name at least one shard or glob');
  const seen = new Set<string>();
  const shards: InputShard[] = [];
  for (const pattern of patterns) {
    let matches: string[];
    if (isDynamicPattern(pattern)) {
      matches = (await glob(pattern, { onlyFiles: true, expandDirectories: false })).sort();
      if (matches.length === 0) throw new Error(`--input ${pattern}: the glob matches no file`);
    } else {
      matches = [pattern];
    }
    for (const source of matches) {
      if (seen.has(source)) continue;
      seen.add(source);
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
      shards.push({ source, bytes });
    }
  }
  return shards;
}
