// score(options): the public face of `rho score`. Options mirror the CLI flags in camelCase with the CLI's
// defaults; the result is the summary `rho score --json` prints; errors carry the CLI's exit code.
import { ConfigError, RejectRatioError, asTypedError } from '../schemas/errors.js';
import type { Document, DocumentSource, Flow } from '../schemas/types.js';
import type { OutputStore } from '../schemas/store.js';
import type { Stage, StageStats } from '../stages/stage.js';
import type { Scorer } from '../stages/score.js';
import type { OutputFormat } from '../stages/write.js';
import type { ScoreDtype } from '../schemas/score-dtype.js';
import { DEFAULT_LEASE_SECONDS } from '../pipeline/run/claims.js';
import { resolveRank } from '../pipeline/run/rank.js';
import { runScore, DEFAULT_CACHE_DIR, type ModelSpec, type RunSummary } from '../pipeline/jobs/score.js';

/** `--model`: `PATH`, `NAME=PATH`, or `{ name, path }`. */
export type ModelEntry = string | ModelSpec;

interface CommonScoreOptions {
  /** `--tokenizer`: a Hugging Face tokenizer.json. */
  tokenizer: string;
  /** `--input`: paths, globs, s3:// URIs, or document sources `{ name, documents() }`. */
  inputs: (string | DocumentSource)[];
  /** `--output`: a local dir or s3://bucket/prefix. */
  output: string;
  /** `--model-name` (default 'ref'): the column prefix of a single unnamed model. */
  modelName?: string;
  /**
   * `--model-tokenizer` (default none): models that read the text with their own tokenizer, as `NAME=PATH`
   * strings or `{ name, path }` (NAME is a model's column name); their scores are projected onto the trainer's
   * tokens and a `<name>_native_sum` column is added (docs/cross-tokenizer.md). Not with `entropy`.
   */
  modelTokenizers?: ModelEntry[];
  /** `--text-field` (default 'text'), `--id-field` (default: ids are `<source>#<row>`). */
  textField?: string;
  idField?: string;
  /** `--context` C (default: the models' max positions from config.json, else 2048), `--stride` S (default C). */
  context?: number;
  stride?: number;
  /** `--batch-tokens` (default: from the memory budget; CPU 1024, the measured optimum). */
  batchTokens?: number;
  /** `--memory-budget` (`8GiB`, `50%`; default 50% of RAM, or 80% of the GPU's memory). */
  memoryBudget?: string;
  /** `--format` (default 'parquet'). */
  format?: OutputFormat;
  /** `--device` (default 'cpu'), `--device-id` (default 0), `--devices` ('0,1' or [0, 1]). */
  device?: 'cpu' | 'cuda' | 'webgpu';
  deviceId?: number;
  devices?: string | number[];
  /** `--append-eos` (default false), `--eos-token`. */
  appendEos?: boolean;
  eosToken?: string;
  /** `--entropy` (default false). */
  entropy?: boolean;
  /** `--score-dtype` (default 'float32'): how score columns are stored (float16 / bfloat16 halve them). */
  scoreDtype?: ScoreDtype;
  /** `--unit-docs` (default 10000). */
  unitDocs?: number;
  /** `--max-reject-ratio` (default 0.01): above it the promise rejects with a RejectRatioError (exit 3) carrying the summary. */
  maxRejectRatio?: number;
  /** `--overwrite` (default false). */
  overwrite?: boolean;
  /** `--rescore-changed` (default false): inputs changed since their units were scored are rescored, not refused. */
  rescoreChanged?: boolean;
  /** `--cache-dir` (default $RHO_CACHE_DIR, else ~/.cache/rho). */
  cacheDir?: string;
  /** `--threads` (default on CPU: every core). */
  threads?: number;
  /** `--progress` (default true): the progress line on stderr. */
  progress?: boolean;
  /** `--rank`, `--world-size` (default: from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX..., else 0 of 1). */
  rank?: number;
  worldSize?: number;
  /** `--lease-seconds` (default 600). */
  leaseSeconds?: number;
  /** `--partition-by` (default 'none'). */
  partitionBy?: 'none' | 'shard';
  /** `--s3-endpoint`. */
  s3Endpoint?: string;
  /** API only: document stages between reading and tokenizing (filterDocuments, mapDocuments, or your own). */
  transforms?: Stage<Flow<Document>, Flow<Document>>[];
  /** API only: an output store other than the local disk or S3 (see OutputStore). */
  store?: OutputStore;
}

/** `models` is required, unless a custom `scorer` replaces onnxruntime (its modelNames name the columns). */
export type ScoreOptions = CommonScoreOptions & ({ models: ModelEntry[]; scorer?: undefined } | { models?: undefined; scorer: Scorer | Scorer[] });

/** What `rho score --json` prints. */
export interface ScoreSummary {
  output: string;
  /** 'dir': totals are the whole output dir's (this runner wrote manifest.json: it was the last rank to finish); 'rank': this rank's share only. */
  scope: RunSummary['scope'];
  run: RunSummary['run'];
  totals: RunSummary['manifest']['totals'];
  shards: RunSummary['manifest']['shards'];
  /** Per stage: documents/tokens in and out, rejects, seconds (also in manifest.json under run.stages). */
  stages: StageStats[];
  /** C, S, the batch budget and the memory plan, with where each came from. */
  limits: RunSummary['limits'];
}

/** `--model PATH` (named by --model-name) or `--model NAME=PATH`, repeatable. */
export function parseModels(values: ModelEntry[], defaultName: string): ModelSpec[] {
  return values.map((v, i) => {
    if (typeof v !== 'string') {
      if (!v || typeof v.name !== 'string' || typeof v.path !== 'string') throw new ConfigError(`models[${i}]: expected "PATH", "NAME=PATH" or { name, path }`);
      return { name: v.name, path: v.path };
    }
    const eq = v.indexOf('=');
    if (eq > 0 && !v.slice(0, eq).includes('/')) return { name: v.slice(0, eq), path: v.slice(eq + 1) };
    if (values.length > 1) throw new ConfigError(`with several --model values, name each one: --model NAME=PATH (value ${i + 1}: ${v})`);
    return { name: defaultName, path: v };
  });
}

/** `--model-tokenizer NAME=PATH` (or `{ name, path }`), repeatable. */
export function parseModelTokenizers(values: ModelEntry[]): ModelSpec[] {
  if (!Array.isArray(values)) throw new ConfigError('score(options): "modelTokenizers" must be an array of "NAME=PATH" or { name, path }');
  return values.map((v, i) => {
    if (typeof v !== 'string') {
      if (!v || typeof v.name !== 'string' || typeof v.path !== 'string') throw new ConfigError(`modelTokenizers[${i}]: expected "NAME=PATH" or { name, path }`);
      return { name: v.name, path: v.path };
    }
    const eq = v.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--model-tokenizer ${v}: expected NAME=PATH (NAME is a --model name)`);
    return { name: v.slice(0, eq), path: v.slice(eq + 1) };
  });
}

function parseDevices(devices: string | number[] | undefined): number[] | undefined {
  if (devices === undefined) return undefined;
  const list = typeof devices === 'string' ? devices.split(',') : devices.map(String);
  return list.map((d) => {
    if (!/^\d+$/.test(d.trim())) throw new ConfigError(`--devices: "${d}" is not a device index (expected e.g. 0,1,2,3)`);
    return Number(d);
  });
}

export function summaryOf(s: RunSummary): ScoreSummary {
  return { output: s.output, scope: s.scope, run: s.run, limits: s.limits, totals: s.manifest.totals, shards: s.manifest.shards, stages: s.stages };
}

/**
 * Score every token of the inputs, as `rho score` does. Resolves to the summary `rho score --json` prints;
 * rejects with a ConfigError (exitCode 2: nothing was done), a RejectRatioError (3: the output is complete;
 * `summary` holds it) or a RunError (1).
 */
export async function score(options: ScoreOptions): Promise<ScoreSummary> {
  try {
    const o = options;
    if (!o || typeof o !== 'object') throw new ConfigError('score(options): options must be an object');
    for (const k of ['tokenizer', 'output'] as const) if (typeof o[k] !== 'string') throw new ConfigError(`score(options): "${k}" is required (a path)`);
    if (!Array.isArray(o.inputs)) throw new ConfigError('score(options): "inputs" is required (paths, globs or document sources)');
    if (!o.scorer && !Array.isArray(o.models)) throw new ConfigError('score(options): "models" is required (or a custom "scorer")');
    const where = resolveRank({ rank: o.rank, worldSize: o.worldSize });
    const summary = await runScore({
      rank: where.rank,
      worldSize: where.worldSize,
      devices: parseDevices(o.devices),
      leaseSeconds: o.leaseSeconds ?? DEFAULT_LEASE_SECONDS,
      partitionBy: o.partitionBy ?? 'none',
      s3: o.s3Endpoint ? { endpoint: o.s3Endpoint } : {},
      models: o.models ? parseModels(o.models, o.modelName ?? 'ref') : [],
      scorers: o.scorer === undefined ? undefined : Array.isArray(o.scorer) ? o.scorer : [o.scorer],
      transforms: o.transforms,
      store: o.store,
      tokenizer: o.tokenizer,
      modelTokenizers: o.modelTokenizers === undefined ? undefined : parseModelTokenizers(o.modelTokenizers),
      inputs: o.inputs,
      output: o.output,
      textField: o.textField ?? 'text',
      idField: o.idField,
      context: o.context,
      stride: o.stride,
      batchTokens: o.batchTokens,
      memoryBudget: o.memoryBudget,
      format: o.format ?? 'parquet',
      device: o.device ?? 'cpu',
      deviceId: o.deviceId ?? 0,
      appendEos: o.appendEos ?? false,
      eosToken: o.eosToken,
      entropy: o.entropy ?? false,
      scoreDtype: o.scoreDtype,
      unitDocs: o.unitDocs ?? 10000,
      maxRejectRatio: o.maxRejectRatio ?? 0.01,
      overwrite: o.overwrite ?? false,
      rescoreChanged: o.rescoreChanged ?? false,
      cacheDir: o.cacheDir ?? DEFAULT_CACHE_DIR,
      threads: o.threads,
      progress: o.progress ?? true,
    });
    return summaryOf(summary);
  } catch (e) {
    const s = (e as { summary?: RunSummary }).summary;
    if (e instanceof RejectRatioError && s && 'manifest' in s) Object.assign(e, { summary: summaryOf(s) });
    throw asTypedError(e);
  }
}
