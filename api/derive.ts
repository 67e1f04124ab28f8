// select(), exportMemmap() and verify(): the other jobs, with the CLI's defaults and typed errors.
import { ConfigError, asTypedError } from '../schemas/errors.js';
import type { DocumentSource } from '../schemas/types.js';
import type { SelectBy, SelectScope } from '../stages/select.js';
import type { ScoreDtype } from '../stages/export.js';
import type { OutputFormat } from '../stages/write.js';
import { openOutputStore } from '../pipeline/io/open.js';
import { runSelect, DEFAULT_BATCH_TOKENS, type SelectReport } from '../pipeline/jobs/select.js';
import { runExport, type ExportSummary } from '../pipeline/jobs/export.js';
import { verifyOutput, type VerifyReport } from '../pipeline/jobs/verify/index.js';

export interface SelectOptions {
  /** A `rho score` output dir. */
  input: string;
  output: string;
  /** k in (0, 1]. */
  ratio: number;
  by: SelectBy;
  scope: SelectScope;
  /** `--batch-tokens` (default 2^20), `--ref` (default 'ref'), `--base` (default 'base'). */
  batchTokens?: number;
  ref?: string;
  base?: string;
  /** `--format` (default: each file's own). */
  format?: OutputFormat;
  /** `--compact` (default false): write only (source, row, select_mask), aligned with the score files. */
  compact?: boolean;
  /** `--exact` / `--no-exact` (default: exact up to 16M scored tokens). */
  exact?: boolean;
  /** `--sketch-accuracy` (default 0.005). */
  sketchAccuracy?: number;
  overwrite?: boolean;
  progress?: boolean;
}

/** `rho select`: resolves to the report `rho select --json` prints. */
export async function select(o: SelectOptions): Promise<SelectReport> {
  try {
    return await runSelect({
      input: o.input, output: o.output, ratio: o.ratio, by: o.by, scope: o.scope,
      batchTokens: o.batchTokens ?? DEFAULT_BATCH_TOKENS, ref: o.ref ?? 'ref', base: o.base ?? 'base',
      format: o.format, compact: o.compact, exact: o.exact, sketchAccuracy: o.sketchAccuracy ?? 0.005,
      overwrite: o.overwrite ?? false, progress: o.progress ?? true,
    });
  } catch (e) {
    throw asTypedError(e);
  }
}

export interface ExportOptions {
  /** A `rho score` or `rho select` output dir. */
  input: string;
  output: string;
  /** `--score-dtype` (default 'float32'). */
  scoreDtype?: ScoreDtype;
  /** `--selection`: a compact selection dir (`rho select --compact`) made from `input`. */
  selection?: string;
  /** `--columns` (default: every <model>_logprob / <model>_entropy). */
  columns?: string[];
  overwrite?: boolean;
  progress?: boolean;
}

/** `rho export --format memmap`: flat arrays for numpy/PyTorch. */
export async function exportMemmap(o: ExportOptions): Promise<ExportSummary> {
  try {
    return await runExport({ input: o.input, output: o.output, scoreDtype: o.scoreDtype ?? 'float32', selection: o.selection, columns: o.columns, overwrite: o.overwrite ?? false, progress: o.progress ?? true });
  } catch (e) {
    throw asTypedError(e);
  }
}

export interface VerifyApiOptions {
  /** A `rho score` output dir or s3:// URI. */
  output: string;
  /** `--inputs` / `--no-inputs` (default 'auto': when every input is reachable). */
  inputs?: boolean | 'auto';
  inputsBase?: string;
  /** `--max-per-file` (default 20). */
  maxPerFile?: number;
  progress?: boolean;
  s3Endpoint?: string;
  /** Document sources the output was scored from: re-read (by name) to account for every document. */
  sources?: DocumentSource[];
}

/** `rho verify`: resolves to the report (`ok` false when problems were found: the CLI's exit 4). */
export async function verify(o: VerifyApiOptions): Promise<VerifyReport> {
  try {
    const s3 = o.s3Endpoint ? { endpoint: o.s3Endpoint } : {};
    let store;
    try {
      store = await openOutputStore(o.output, s3);
    } catch (e) {
      throw new ConfigError((e as Error).message);
    }
    return await verifyOutput(o.output, { inputs: o.inputs ?? 'auto', inputsBase: o.inputsBase, maxPerFileCheck: o.maxPerFile ?? 20, progress: o.progress ?? true, s3, sources: o.sources }, store);
  } catch (e) {
    throw asTypedError(e);
  }
}
