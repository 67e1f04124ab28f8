// Work units: a shard is cut into parts of `unitDocs` consecutive rows. A unit is the grain of output files,
// completion records and resume, so a crash loses at most one part, not a whole shard.
import { createHash } from 'node:crypto';

/** Layout of the output dir, relative to its root. */
export const LAYOUT = {
  manifest: 'manifest.json',
  config: '_rho/config.json',
  doneDir: '_rho/done',
  rejectsDir: '_rho/rejects',
  claimsDir: '_rho/claims',
} as const;

/**
 * A stable, readable, collision-free folder name for a shard: its file name without format and
 * compression extensions, plus 8 hex digits of sha256 of what it is given — the shard's canonical
 * location (resolved real path or s3:// URI), so every spelling of one file names one folder. Stable when
 * more inputs are added later.
 */
export function shardKey(source: string): string {
  const base = source.split('/').pop()!.replace(/\.(gz|zst|zstd)$/i, '').replace(/\.(jsonl|ndjson|json|parquet|pq|arrow|arrows|ipc|feather)$/i, '');
  const safe = base.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 80) || 'shard';
  const h = createHash('sha256').update(source).digest('hex').slice(0, 8);
  return `${safe}-${h}`;
}

export interface UnitId {
  source: string;
  part: number;
  /** The shard's folder: shardKey(canonical location). Absent: shardKey(source) (outputs of rho before 0.2). */
  key?: string;
}

export const partName = (part: number): string => `part-${String(part).padStart(5, '0')}`;
export const unitName = (u: UnitId): string => `${u.key ?? shardKey(u.source)}/${partName(u.part)}`;
/** The shard folder a completion record belongs to (from its unit name). */
export const recordKey = (r: { unit: string }): string => r.unit.slice(0, r.unit.lastIndexOf('/'));
/**
 * The data file of a unit. With `hive`, the shard folder is named `shard=<key>` so that DuckDB, Spark and
 * Trino read the output dir as one table partitioned by `shard` (Hive layout).
 */
/** A data file's format, from its name (rho writes `.parquet` or `.arrow`). */
export const formatOf = (file: string): 'parquet' | 'arrow' => (file.endsWith('.arrow') ? 'arrow' : 'parquet');

export const dataPath = (u: UnitId, format: 'parquet' | 'arrow', hive = false): string =>
  `${hive ? 'shard=' : ''}${unitName(u)}.${format}`;
export const donePath = (u: UnitId): string => `${LAYOUT.doneDir}/${unitName(u)}.json`;
export const rejectsPath = (u: UnitId): string => `${LAYOUT.rejectsDir}/${unitName(u)}.jsonl`;
export const claimPath = (u: UnitId): string => `${LAYOUT.claimsDir}/${unitName(u)}.json`;

/** The completion record of a unit: written after its data file, the unit counts as done once it exists. */
export interface CompletionRecord {
  unit: string;
  source: string;
  part: number;
  first_row: number;
  /** Input records of this unit (scored + rejected). */
  docs_in: number;
  scored: number;
  rejected: number;
  /** Tokens written (token_ids lengths summed). */
  tokens: number;
  /** Tokens with a score (non-null logprob). */
  scored_tokens: number;
  file: string;
  bytes: number;
  sha256: string;
  rejects_file: string | null;
  /** sha256 of the scoring configuration (see RunConfig); a unit of another configuration is never reused. */
  config_sha256: string;
}
