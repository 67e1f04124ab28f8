// What verify reports: findings (errors and warnings, each naming its check, file, row and field) and the
// counts of what was checked. Shared by the checks in this folder.
import type { ScoreDtype } from '../../../schemas/score-dtype.js';
import type { OutputFormat } from '../../../stages/write.js';
import type { S3Options } from '../../io/s3.js';
import type { DocumentSource } from '../../../schemas/types.js';
import type { CompletionRecord } from '../../../schemas/layout.js';

export type Severity = 'error' | 'warning';

/** One problem found. `file` is relative to the output dir (or an input path); row/field when they apply. */
export interface Finding {
  severity: Severity;
  /** Short stable name of the check that failed (see docs/verify.md). */
  check: string;
  file: string;
  row?: number;
  field?: string;
  message: string;
}

export interface VerifyOptions {
  /** Re-read the input shards: true = required, false = never, 'auto' = when every input file is reachable. */
  inputs: boolean | 'auto';
  /** Directory that relative input sources are resolved against (default: the current directory, as `rho score` saw them). */
  inputsBase?: string;
  /** Findings kept per (check, file); the rest are counted in `suppressed`. */
  maxPerFileCheck?: number;
  progress?: boolean;
  /** Settings for s3:// inputs (the output store is passed to verifyOutput). */
  s3?: S3Options;
  /** Document sources the output was scored from (matched by name): re-read like files. */
  sources?: DocumentSource[];
}

export interface VerifyReport {
  output: string;
  ok: boolean;
  config_sha256: string;
  checked: { units: number; rows: number; tokens: number; rejects: number; shards: number };
  inputs: { checked: string[]; unreachable: string[] };
  errors: Finding[];
  warnings: Finding[];
  /** Findings beyond maxPerFileCheck, not listed. */
  suppressed: { errors: number; warnings: number };
}

/** The part of `_rho/config.json` (RunIdentity in pipeline/run/identity.ts) verify relies on. */
export interface RunIdentityView {
  schema_version: number;
  models: { name: string; sha256: string }[];
  context: number;
  stride: number;
  entropy: boolean;
  text_field: string;
  id_field: string | null;
  unit_docs: number;
  format: OutputFormat;
  score_dtype?: ScoreDtype;
}

/** Float tolerance: values are float32; a log-prob can only exceed 0 by rounding. */
export const LOGPROB_MAX = 1e-4;
export const LOSS_MEAN_RTOL = 1e-4;
export const DATA_FILE = /^(.+)\/(part-\d{5})\.(parquet|arrow)$/;

export class Findings {
  readonly errors: Finding[] = [];
  readonly warnings: Finding[] = [];
  readonly suppressed = { errors: 0, warnings: 0 };
  private readonly perKey = new Map<string, number>();
  constructor(private readonly maxPerKey: number) {}

  add(f: Finding): void {
    const key = `${f.severity}\0${f.check}\0${f.file}`;
    const n = (this.perKey.get(key) ?? 0) + 1;
    this.perKey.set(key, n);
    if (n > this.maxPerKey) {
      this.suppressed[f.severity === 'error' ? 'errors' : 'warnings']++;
      return;
    }
    (f.severity === 'error' ? this.errors : this.warnings).push(f);
  }
  error(check: string, file: string, message: string, at: { row?: number; field?: string } = {}): void {
    this.add({ severity: 'error', check, file, ...at, message });
  }
  warn(check: string, file: string, message: string, at: { row?: number; field?: string } = {}): void {
    this.add({ severity: 'warning', check, file, ...at, message });
  }
}

/** What the per-unit checks learn about a shard, for the cross-unit and input checks. */
export interface ShardSeen {
  source: string;
  records: CompletionRecord[];
  /** row → id of every scored output row. */
  scoredIds: Map<number, string>;
  rejectRows: Set<number>;
  /** Parts whose data file could not be read: already reported, so their rows are not reported again per input row. */
  unreadableParts: Set<number>;
  /** Parts whose completion record is unreadable (already an error): the shard's input count cannot be checked. */
  brokenParts: Set<number>;
}

export const text = (b: Uint8Array) => new TextDecoder().decode(b);
