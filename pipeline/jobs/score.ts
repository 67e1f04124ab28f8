// The score job: read → tokenize → window → batch → score (worker threads) → assemble → write, composed from
// the stages (stages/) and run by the executor (pipeline/run/executor.ts), which owns units, claims, resume,
// accounting and progress. This file checks the request, plans the run (inputs, models, window rule, run
// identity, provenance) and wires the two together.
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { readShard } from '../../stages/read.js';
import { TextTokenizer, tokenizeStage } from '../../stages/tokenize.js';
import { validateWindowSpec, windowStage } from '../../stages/window.js';
import { batchStage } from '../../stages/batch.js';
import { OnnxScorer, scoreStage, type Scorer } from '../../stages/score.js';
import { assembleStage } from '../../stages/assemble.js';
import { writeStage, sha256, type OutputFormat } from '../../stages/write.js';
import { compose, type Stage, type StageStats } from '../../stages/stage.js';
import { prepareModel, type PreparedModel } from '../../model/prepare.js';
import { META, MODEL_NAME_PATTERN, SCHEMA_VERSION, combinedProvenance } from '../../schemas/contract.js';
import { LAYOUT } from '../../schemas/layout.js';
import { ConfigError, RejectRatioError } from '../../schemas/errors.js';
import { crashPoint } from '../../schemas/crashpoints.js';
import { RHO_VERSION } from '../../schemas/version.js';
import type { OutputStore } from '../../schemas/store.js';
import type { Manifest } from '../../schemas/manifest.js';
import type { ScoredDocument, UnitRef, WindowSpec } from '../../schemas/types.js';
import { resolveInputs, type InputShard } from '../io/inputs.js';
import { openOutputStore, openerFor, countingOpener } from '../io/open.js';
import { fileSha256 } from '../io/local.js';
import type { S3Options } from '../io/s3.js';
import { Executor, type ExecutorInput, type RunCounts } from '../run/executor.js';
import { claimOutputDir, type RunIdentity } from '../run/identity.js';
import { readCompletionRecords } from '../run/manifest.js';
import { probeContext } from '../run/preflight.js';
import { IncompleteRunError, assignShardKeys, checkChangedInputs, checkNumericFlags, fingerprint, probeFields, recordInputFingerprint, refuseInputsInsideOutput, type InputFingerprint } from '../io/input-checks.js';
import { checkWorldSize } from '../run/rank.js';

export type { RunIdentity };

export interface ModelSpec {
  name: string;
  path: string;
}

export interface ScoreConfig {
  models: ModelSpec[];
  tokenizer: string;
  inputs: string[];
  output: string;
  textField: string;
  idField?: string;
  /** C; default: the smallest max context the models declare, else 2048. */
  context?: number;
  /** S; default C. */
  stride?: number;
  batchTokens: number;
  format: OutputFormat;
  device: 'cpu' | 'cuda' | 'webgpu';
  deviceId?: number;
  appendEos: boolean;
  eosToken?: string;
  entropy: boolean;
  /** Documents per work unit (output file / completion record). */
  unitDocs: number;
  maxRejectRatio: number;
  overwrite: boolean;
  cacheDir?: string;
  threads?: number;
  progress: boolean;
  /** GPU ids for --device cuda/webgpu: one inference worker per device, sharing readers and writers. */
  devices?: number[];
  /** This runner's rank and the world size: it works on the units with ownerOf(unit, worldSize) === rank. */
  rank?: number;
  worldSize?: number;
  /** Lease of a unit claim; a claim not renewed for this long is taken over by another runner. */
  leaseSeconds?: number;
  /** 'shard': Hive-style `shard=<key>/part-NNNNN.parquet` folders. */
  partitionBy?: 'none' | 'shard';
  /** Output store; default: opened from `output` (local path or s3://). */
  store?: OutputStore;
  /** S3 settings for s3:// inputs and outputs (endpoint, retries). */
  s3?: S3Options;
  /** Inputs changed since some of their units were scored: delete and rescore those units (else exit 2). */
  rescoreChanged?: boolean;
}

export interface RunSummary {
  output: string;
  manifest: Manifest;
  /** This run only (units skipped because they were already done are not counted here). */
  run: RunCounts & { wall_seconds: number; tokens_per_second: number; padding_fraction: number };
  /** Per stage, in pipeline order: documents/tokens in and out, rejects, seconds (also in manifest.json under run.stages). */
  stages: StageStats[];
}

export const DEFAULT_CACHE_DIR = process.env.RHO_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rho');

/** Everything a run needs, checked and resolved before any work. */
interface ScorePlan {
  shards: InputShard[];
  store: OutputStore;
  tokenizer: TextTokenizer;
  prepared: PreparedModel[];
  spec: WindowSpec;
  identityJson: string;
  configSha: string;
  /** Provenance keys shared by every file of the run (rho.inputs and rho.unit are added per file). */
  provenance: Map<string, string>;
  /** Input fingerprints already computed by the change check (by shard key). */
  fingerprints: Map<string, InputFingerprint>;
}

export async function runScore(cfg: ScoreConfig): Promise<RunSummary> {
  checkFlags(cfg);
  const plan = await planScore(cfg);
  const rank = cfg.rank ?? 0;
  const worldSize = cfg.worldSize ?? 1;
  // Proven before anything is committed (_rho/config.json): the models load and run a full window of C
  // tokens, the vocabularies fit, the text/id fields are in the first records of every shard.
  const scorers = await openScorers(cfg, plan);
  try {
    await probeContext(scorers[0], plan.spec.contextTokens, plan.prepared.map((p) => `${p.name} (${p.sourcePath})`).join(', '));
    await probeFields(plan.shards, { textField: cfg.textField, idField: cfg.idField, s3: cfg.s3 });
    await claimOutputDir(plan.store, plan.identityJson, cfg.overwrite);
    if (worldSize > 1) await checkWorldSize(plan.store, { rank, worldSize, from: 'flags' });
    plan.fingerprints = await checkInputsAgainstRecords(cfg, plan);
  } catch (e) {
    await Promise.all(scorers.map((x) => x.close()));
    throw e;
  }

  let stats: StageStats[] = [];
  const stat = (name: string) => stats.find((s) => s.name === name);
  const executor = await Executor.open({
    store: plan.store, inputs: plan.shards.map((s) => shardInput(s, cfg, plan)), unitDocs: cfg.unitDocs, rank, worldSize,
    leaseSeconds: cfg.leaseSeconds, configSha: plan.configSha, progress: cfg.progress,
    live: () => ({ docs: stat('assemble')?.docs_out ?? 0, tokens: stat('assemble')?.counters.scored_tokens ?? 0 }),
  });
  let scoringSeconds: number;
  try {
    scoringSeconds = await executor.execute((source) => {
      const c = compose<never>(source, scoreStages(cfg, plan, scorers, executor), { rank, worldSize, crashPoint });
      stats = c.stats;
      return c.output;
    });
  } finally {
    await Promise.all(scorers.map((x) => x.close()));
  }
  const manifest = await executor.writeManifest(Object.fromEntries(plan.provenance), { wall_seconds: executor.progress.elapsedSeconds(), stages: stats });
  if (executor.unreadable.length) {
    // Exit 1 naming the shards: the output is not complete (exit 3 would say it is).
    const summary = summarize({ ...cfg, maxRejectRatio: 1 }, plan.store, executor, manifest, stats, scoringSeconds);
    throw Object.assign(new IncompleteRunError(executor.unreadable), { summary });
  }
  return summarize(cfg, plan.store, executor, manifest, stats, scoringSeconds);
}

/**
 * Inputs against the units already done: one spelling per shard (the `source` its first units have), and
 * an input changed since its units were scored is refused (exit 2) or, with --rescore-changed, its stale
 * units are deleted so that they are scored again.
 */
async function checkInputsAgainstRecords(cfg: ScoreConfig, plan: ScorePlan): Promise<Map<string, InputFingerprint>> {
  await assignShardKeys(plan.store, plan.shards, true);
  const records = (await readCompletionRecords(plan.store)).filter((r) => r.config_sha256 === plan.configSha);
  return checkChangedInputs(plan.store, plan.shards, records, { rescoreChanged: cfg.rescoreChanged ?? false, s3: cfg.s3 });
}

/** The stages of `rho score`, in order; the executor's gather sits between assembly and writing. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function scoreStages(cfg: ScoreConfig, plan: ScorePlan, scorers: Scorer[], executor: Executor): Stage<any, any>[] {
  const models = plan.prepared.map((p) => p.name);
  const shardBytes = new Map(plan.shards.map((s) => [s.source, s.bytes]));
  const metadata = (unit: UnitRef, records: number) => {
    const meta = new Map(plan.provenance);
    meta.set(META.inputs, JSON.stringify([{ source: unit.source, bytes: shardBytes.get(unit.source) }]));
    meta.set(META.unit, JSON.stringify({ source: unit.source, part: unit.part, first_row: unit.firstRow, rows: records }));
    meta.set(META.all, combinedProvenance(meta));
    return meta;
  };
  return [
    tokenizeStage(plan.tokenizer),
    windowStage(plan.spec),
    batchStage({ batchTokens: cfg.batchTokens, contextTokens: plan.spec.contextTokens }),
    scoreStage(scorers),
    assembleStage({ models, entropy: cfg.entropy }),
    executor.gather<ScoredDocument>(),
    writeStage({ models, entropy: cfg.entropy, spec: plan.spec, format: cfg.format, hive: cfg.partitionBy === 'shard', metadata }),
  ];
}

/** A shard file as an executor input: its records through the reader, bytes counted for the progress line. */
function shardInput(shard: InputShard, cfg: ScoreConfig, plan: ScorePlan): ExecutorInput {
  return {
    source: shard.source,
    bytes: shard.bytes,
    key: shard.key,
    prepare: async () => {
      let now = plan.fingerprints.get(shard.key);
      if (!now) plan.fingerprints.set(shard.key, (now = await fingerprint(shard.source, cfg.s3)));
      await recordInputFingerprint(plan.store, shard, now);
    },
    async *read(onBytes) {
      const opener = countingOpener(await openerFor(shard.source, cfg.s3), onBytes);
      yield* readShard(shard.source, { textField: cfg.textField, idField: cfg.idField }, opener);
    },
  };
}

/** Flags that are wrong whatever the inputs: checked first. */
function checkFlags(cfg: ScoreConfig): void {
  if (cfg.models.length === 0) throw new ConfigError('no --model given');
  const names = new Set<string>();
  for (const m of cfg.models) {
    if (!MODEL_NAME_PATTERN.test(m.name)) throw new ConfigError(`model name "${m.name}" must match ${MODEL_NAME_PATTERN} (it becomes the column prefix <name>_logprob)`);
    if (names.has(m.name)) throw new ConfigError(`model name "${m.name}" given twice`);
    names.add(m.name);
  }
  if (!Number.isInteger(cfg.batchTokens) || cfg.batchTokens < 2) throw new ConfigError(`--batch-tokens must be an integer >= 2 (got ${cfg.batchTokens})`);
  if (!Number.isInteger(cfg.unitDocs) || cfg.unitDocs < 1) throw new ConfigError(`--unit-docs must be a positive integer (got ${cfg.unitDocs})`);
  if (!(cfg.maxRejectRatio >= 0 && cfg.maxRejectRatio <= 1)) throw new ConfigError(`--max-reject-ratio must be in [0, 1] (got ${cfg.maxRejectRatio})`);
  checkNumericFlags({ context: cfg.context, stride: cfg.stride, threads: cfg.threads, 'lease-seconds': cfg.leaseSeconds, 'device-id': cfg.deviceId, rank: cfg.rank, 'world-size': cfg.worldSize },
    { context: 'positive-int', stride: 'positive-int', threads: 'positive-int', 'lease-seconds': 'positive', 'device-id': 'nonneg-int', rank: 'nonneg-int', 'world-size': 'positive-int' });
}

/** Inputs, output store, tokenizer, models and window rule: everything that can be wrong is found here, before any work. */
async function planScore(cfg: ScoreConfig): Promise<ScorePlan> {
  const shards = await configStep(() => resolveInputs(cfg.inputs, cfg.s3));
  refuseInputsInsideOutput(shards, cfg.output);
  const rank = cfg.rank ?? 0;
  const worldSize = cfg.worldSize ?? 1;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ConfigError(`--world-size must be a positive integer (got ${worldSize})`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new ConfigError(`--rank must be in [0, world size ${worldSize}) (got ${rank})`);
  const store = await configStep(() => (cfg.store ? Promise.resolve(cfg.store) : openOutputStore(cfg.output, cfg.s3)));
  await configStep(() => store.checkWritable());
  const tokenizer = await configStep(async () => TextTokenizer.load(cfg.tokenizer, { appendEos: cfg.appendEos, eosToken: cfg.eosToken }));
  const cacheDir = cfg.cacheDir ?? DEFAULT_CACHE_DIR;
  const prepared: PreparedModel[] = [];
  for (const m of cfg.models) {
    try {
      prepared.push(await prepareModel({ path: m.path, name: m.name, cacheDir: join(cacheDir, 'models'), entropy: cfg.entropy }));
    } catch (e) {
      throw new ConfigError(`model ${m.name} (${m.path}): ${(e as Error).message}`);
    }
  }
  const spec = windowSpecOf(cfg, prepared);
  const tokenizerSha = await fileSha256(cfg.tokenizer);
  const identity = runIdentity(cfg, prepared, tokenizer, tokenizerSha, spec);
  const identityJson = JSON.stringify(identity, null, 2);
  const provenance = new Map<string, string>([
    [META.schemaVersion, String(SCHEMA_VERSION)],
    [META.rhoVersion, RHO_VERSION],
    [META.models, JSON.stringify(prepared.map((p) => ({ name: p.name, path: p.sourcePath, sha256: p.sha256, external_data: p.externalData })))],
    [META.tokenizer, JSON.stringify({ path: cfg.tokenizer, sha256: tokenizerSha })],
    [META.context, String(spec.contextTokens)],
    [META.stride, String(spec.strideTokens)],
    [META.specialTokens, JSON.stringify({ post_processor: true, append_eos: cfg.appendEos, eos_token: tokenizer.info.eosToken, eos_id: tokenizer.info.eosId })],
  ]);
  return { shards, store, tokenizer, prepared, spec, identityJson, configSha: sha256(new TextEncoder().encode(identityJson)), provenance, fingerprints: new Map() };
}

/** Run `f`; whatever it throws is a problem with the request (exit 2). */
async function configStep<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

/** C defaults to the smallest max context the models declare (config.json), else 2048; S to C. */
function windowSpecOf(cfg: ScoreConfig, prepared: PreparedModel[]): WindowSpec {
  const declared = prepared.map((p) => p.maxContext).filter((c): c is number => c !== null);
  const modelMax = declared.length ? Math.min(...declared) : null;
  const context = cfg.context ?? modelMax ?? 2048;
  if (modelMax !== null && context > modelMax) {
    throw new ConfigError(`--context ${context} is longer than the ${modelMax} positions a model declares (config.json next to the model); use --context ${modelMax} or less`);
  }
  const spec: WindowSpec = { contextTokens: context, strideTokens: cfg.stride ?? context };
  try {
    validateWindowSpec(spec);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  return spec;
}

function runIdentity(cfg: ScoreConfig, prepared: PreparedModel[], tokenizer: TextTokenizer, tokenizerSha: string, spec: WindowSpec): RunIdentity {
  return {
    schema_version: SCHEMA_VERSION,
    models: prepared.map((p) => ({ name: p.name, sha256: p.sha256 })),
    tokenizer_sha256: tokenizerSha,
    context: spec.contextTokens,
    stride: spec.strideTokens,
    special_tokens: { post_processor: true, append_eos: cfg.appendEos, eos_id: cfg.appendEos ? tokenizer.info.eosId : null },
    entropy: cfg.entropy,
    text_field: cfg.textField,
    id_field: cfg.idField ?? null,
    unit_docs: cfg.unitDocs,
    format: cfg.format,
  };
}

/** One onnxruntime scorer per device (one worker thread each). A provider that cannot load is a config error. */
async function openScorers(cfg: ScoreConfig, plan: ScorePlan): Promise<Scorer[]> {
  const deviceIds = cfg.device === 'cpu' ? [undefined] : (cfg.devices?.length ? cfg.devices : [cfg.deviceId ?? 0]);
  const scorers: Scorer[] = [];
  try {
    for (const deviceId of deviceIds) {
      scorers.push(await OnnxScorer.open({ models: plan.prepared, device: cfg.device, deviceId, intraOpThreads: cfg.threads ?? defaultThreads(cfg.device), tokenizerVocabSize: plan.tokenizer.info.vocabSize }));
    }
  } catch (e) {
    await Promise.all(scorers.map((x) => x.close()));
    throw new ConfigError((e as Error).message);
  }
  return scorers;
}

/** The summary `rho score --json` prints; throws RejectRatioError (carrying it) when too much was rejected. */
function summarize(cfg: ScoreConfig, store: OutputStore, executor: Executor, manifest: Manifest, stats: StageStats[], wall: number): RunSummary {
  const batch = stats.find((s) => s.name === 'batch')?.counters ?? {};
  const padded = batch.padded_positions ?? 0;
  const real = batch.real_positions ?? 0;
  const run = executor.counts;
  const summary: RunSummary = {
    output: store.root,
    manifest,
    run: { ...run, wall_seconds: wall, tokens_per_second: run.scored_tokens / wall, padding_fraction: padded ? 1 - real / padded : 0 },
    stages: stats,
  };
  const t = manifest.totals;
  if (t.docs_in > 0 && t.rejected / t.docs_in > cfg.maxRejectRatio) {
    throw Object.assign(new RejectRatioError(`${t.rejected} of ${t.docs_in} input documents were rejected (${((t.rejected / t.docs_in) * 100).toFixed(2)}% > --max-reject-ratio ${cfg.maxRejectRatio}); see ${cfg.output}/${LAYOUT.rejectsDir}/`), { summary });
  }
  return summary;
}

/**
 * onnxruntime-node's own default used 1 intra-op thread on a 2-core VM here (it counts physical cores, and
 * a VM's topology can hide them): half the CPU speed (4,900 vs 9,100 tokens/s on the benchmark model).
 * On CPU, use every core the process may run on; on a GPU leave onnxruntime's choice.
 */
function defaultThreads(device: ScoreConfig['device']): number | undefined {
  return device === 'cpu' ? availableParallelism() : undefined;
}
