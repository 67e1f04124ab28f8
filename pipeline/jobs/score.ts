// The score job: read → tokenize → window → batch → score (worker threads) → assemble → write, composed from
// the stages (stages/) and run by the executor (pipeline/run/executor.ts), which owns units, claims, resume,
// accounting and progress. This file checks the request, plans the run (inputs, models, window rule, run
// identity, provenance) and wires the two together.
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { readShard, readDocuments } from '../../stages/read.js';
import { TextTokenizer, tokenizeStage } from '../../stages/tokenize.js';
import { validateWindowSpec, windowStage } from '../../stages/window.js';
import { batchStage } from '../../stages/batch.js';
import { OnnxScorer, scoreStage, type Scorer } from '../../stages/score.js';
import { assembleStage } from '../../stages/assemble.js';
import { CrossTokenizerModels, PROJECTION_RULE, crossTokenizerStage, resolveModelTokenizers } from '../../stages/cross.js';
import { streamWriteStage, sha256, type OutputFormat } from '../../stages/write.js';
import { compose, stage, type Stage, type StageStats } from '../../stages/stage.js';
import { prepareModel, type PreparedModel } from '../../model/prepare.js';
import { META, MODEL_NAME_PATTERN, SCHEMA_VERSION, provenanceViews, resolvedPath } from '../../schemas/contract.js';
import { DEFAULT_SCORE_DTYPE, SCORE_DTYPES, isScoreDtype, type ScoreDtype } from '../../schemas/score-dtype.js';
import { defaultBudget, gib, maxContextFor, MemoryBudgetError, parseMemoryBudget, planMemory, type MemoryPlan, type ModelMemory } from '../../model/memory.js';
import { stat } from 'node:fs/promises';
import { LAYOUT } from '../../schemas/layout.js';
import { ConfigError, RejectRatioError } from '../../schemas/errors.js';
import { crashPoint } from '../../schemas/crashpoints.js';
import { RHO_VERSION } from '../../schemas/version.js';
import type { OutputStore } from '../../schemas/store.js';
import type { Manifest } from '../../schemas/manifest.js';
import type { Document, DocumentSource, Flow, OrderedFlow, ScoredDocument, TokenizedDocument, UnitRef, WindowSpec, WindowedDocument } from '../../schemas/types.js';
import { resolveInputs, type InputShard } from '../io/inputs.js';
import { openOutputStore, openerFor, countingOpener } from '../io/open.js';
import { fileSha256 } from '../io/local.js';
import type { S3Options } from '../io/s3.js';
import { Executor, type ExecutorInput, type RunCounts } from '../run/executor.js';
import { claimOutputDir, type RunIdentity } from '../run/identity.js';
import { readCompletionRecords } from '../run/manifest.js';
import { dropFromSummaries } from '../run/records.js';
import { probeContext } from '../run/preflight.js';
import { shardKey } from '../../schemas/layout.js';
import { IncompleteRunError, assignShardKeys, checkChangedInputs, checkNumericFlags, fingerprint, probeFields, recordInputFingerprint, refuseInputsInsideOutput, type InputFingerprint, type ShardEntry } from '../io/input-checks.js';
import { checkWorldSize } from '../run/rank.js';

export type { RunIdentity };

export interface ModelSpec {
  name: string;
  path: string;
}

export interface ScoreConfig {
  models: ModelSpec[];
  tokenizer: string;
  /** --model-tokenizer NAME=PATH: model NAME reads the text with its own tokenizer; its scores are projected onto the trainer's tokens. */
  modelTokenizers?: ModelSpec[];
  /** Paths, globs, s3:// URIs, or document sources (rows: source = its name, row = index of the document). */
  inputs: (string | DocumentSource)[];
  output: string;
  textField: string;
  idField?: string;
  /** C; default: the smallest max context the models declare, else 2048. */
  context?: number;
  /** S; default C. */
  stride?: number;
  /** Tokens per inference batch; default: from the memory budget (model/memory.ts). */
  batchTokens?: number;
  /** --memory-budget as given (8GiB, 50%, ...); default: a fraction of RAM, or of the GPU's memory. */
  memoryBudget?: string;
  format: OutputFormat;
  device: 'cpu' | 'cuda' | 'webgpu';
  deviceId?: number;
  appendEos: boolean;
  eosToken?: string;
  entropy: boolean;
  /** How per-token scores are stored (default float32; schemas/score-dtype.ts). */
  scoreDtype?: ScoreDtype;
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
  /** Stages over documents between reading and tokenizing (filters, normalisers): what they drop is rejected with their reason. */
  transforms?: Stage<Flow<Document>, Flow<Document>>[];
  /** Scorers to use instead of onnxruntime over `models` (e.g. another backend); all must name the same models. */
  scorers?: Scorer[];
  /** Inputs changed since some of their units were scored: delete and rescore those units (else exit 2). */
  rescoreChanged?: boolean;
}

export interface RunSummary {
  output: string;
  /** 'dir': `manifest` is the whole dir's, written to manifest.json (this was the last rank to finish); 'rank': it covers this rank's units only. */
  scope: 'dir' | 'rank';
  manifest: Manifest;
  /** This run only (units skipped because they were already done are not counted here). */
  run: RunCounts & { wall_seconds: number; tokens_per_second: number; padding_fraction: number; cross_tokenizer?: { projection_seconds: number; tokenize_seconds: number } };
  /** Per stage, in pipeline order: documents/tokens in and out, rejects, seconds (also in manifest.json under run.stages). */
  stages: StageStats[];
  /** C, S, the batch budget and the memory budget, each with where it came from. */
  limits: RunLimits;
}

export interface RunLimits {
  context: number;
  contextSource: string;
  stride: number;
  batchTokens: number;
  batchSource: string;
  memoryBudgetBytes: number;
  memorySource: string;
  /** Estimated peak of one batch (model/memory.ts). */
  estimateBytes: number;
  heads: Record<string, string>;
}

/** One line per limit, for the start of a run and its summary. */
export function describeLimits(l: RunLimits): string[] {
  return [
    `C = ${l.context} tokens per window (${l.contextSource}), S = ${l.stride}`,
    `batch budget ${l.batchTokens} tokens (${l.batchSource}); memory budget ${gib(l.memoryBudgetBytes)} (${l.memorySource}), estimated peak ${gib(l.estimateBytes)}`,
    ...Object.entries(l.heads).map(([m, h]) => `model ${m}: ${h}`),
  ];
}

export const DEFAULT_CACHE_DIR = process.env.RHO_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rho');

/** Everything a run needs, checked and resolved before any work. */
interface ScorePlan {
  shards: (InputShard & { documents?: DocumentSource })[];
  store: OutputStore;
  tokenizer: TextTokenizer;
  prepared: PreparedModel[];
  /** Models with their own tokenizer (--model-tokenizer), name → that tokenizer; the rest use the primary one. */
  modelTokenizers: Map<string, { path: string; sha256: string }>;
  /** Column names of the models, in order (from `models`, or from the custom scorers). */
  models: string[];
  spec: WindowSpec;
  limits: RunLimits;
  identityJson: string;
  configSha: string;
  /** Provenance keys shared by every file of the run (rho.inputs and rho.unit are added per file). */
  provenance: Map<string, string>;
  /** Input fingerprints already computed by the change check (by shard key). */
  fingerprints: Map<string, InputFingerprint>;
  /** The `_rho/inputs/` entries read at start (by shard key), so no shard's entry is read twice. */
  entries: Map<string, ShardEntry>;
}

export async function runScore(cfg: ScoreConfig): Promise<RunSummary> {
  checkFlags(cfg);
  const plan = await planScore(cfg);
  const rank = cfg.rank ?? 0;
  const worldSize = cfg.worldSize ?? 1;
  // Proven before anything is committed (_rho/config.json): the models load and run a full window of C
  // tokens, the vocabularies fit, the text/id fields are in the first records of every shard.
  const scorers = cfg.scorers ?? (await openScorers(cfg, plan));
  let cross: CrossTokenizerModels | null = null;
  try {
    cross = await openCrossTokenizer(cfg, plan);
    const primary = plan.prepared.filter((p) => !plan.modelTokenizers.has(p.name));
    if (!cfg.scorers && scorers.length) await probeContext(scorers[0], plan.spec.contextTokens, primary.map((p) => `${p.name} (${p.sourcePath})`).join(', '));
    // Models with their own tokenizer run their own windows of C tokens: each proven the same way.
    for (const p of cross?.probes ?? []) await probeContext(p.scorer, plan.spec.contextTokens, p.models.map((m) => `${m.name} (${m.sourcePath})`).join(', '));
    await probeFields(plan.shards.filter((s) => !s.documents), { textField: cfg.textField, idField: cfg.idField, s3: cfg.s3 });
    await claimOutputDir(plan.store, plan.identityJson, cfg.overwrite);
    if (worldSize > 1) await checkWorldSize(plan.store, { rank, worldSize, from: 'flags' });
    plan.fingerprints = await checkInputsAgainstRecords(cfg, plan);
  } catch (e) {
    if (!cfg.scorers) await Promise.all(scorers.map((x) => x.close()));
    await cross?.close();
    throw e;
  }
  process.stderr.write(describeLimits(plan.limits).map((l) => `rho score: ${l}\n`).join(''));

  let stats: StageStats[] = [];
  const stat = (name: string) => stats.find((s) => s.name === name);
  const executor = await Executor.open({
    store: plan.store, inputs: plan.shards.map((s) => shardInput(s, cfg, plan)), unitDocs: cfg.unitDocs, rank, worldSize,
    leaseSeconds: cfg.leaseSeconds, configSha: plan.configSha, progress: cfg.progress,
    // `tokenized` (tokens tokenized so far, piece by piece inside a long document) reaches the progress line.
    live: () => ({ docs: stat('assemble')?.docs_out ?? 0, tokens: stat('assemble')?.counters.scored_tokens ?? 0, tokenized: stat('tokenize')?.counters.tokenized_tokens ?? 0 }),
  });
  let scoringSeconds: number;
  try {
    scoringSeconds = await executor.execute((source) => {
      const c = compose<never>(source, scoreStages(cfg, plan, scorers, cross, executor), { rank, worldSize, crashPoint });
      stats = c.stats;
      return c.output;
    });
  } finally {
    if (!cfg.scorers) await Promise.all(scorers.map((x) => x.close()));
    await cross?.close();
  }
  // The rank's summary; manifest.json if this rank is the last to finish (else its own share's accounting).
  const { manifest, scope } = await executor.finish(Object.fromEntries(plan.provenance), { wall_seconds: executor.progress.elapsedSeconds(), stages: stats });
  if (executor.unreadable.length) {
    // Exit 1 naming the shards: the output is not complete (exit 3 would say it is).
    const summary = summarize({ ...cfg, maxRejectRatio: 1 }, plan, executor, manifest, scope, stats, scoringSeconds, cross);
    throw Object.assign(new IncompleteRunError(executor.unreadable), { summary });
  }
  return summarize(cfg, plan, executor, manifest, scope, stats, scoringSeconds, cross);
}

/**
 * Inputs against the units already done: every spelling of a file gets the folder (and `source`) it already
 * has in this dir, and an input changed since its units were scored is refused (exit 2) or, with
 * --rescore-changed, its stale units are deleted so that they are scored again.
 */
async function checkInputsAgainstRecords(cfg: ScoreConfig, plan: ScorePlan): Promise<Map<string, InputFingerprint>> {
  plan.entries = await assignShardKeys(plan.store, plan.shards, true);
  const records = async () => (await readCompletionRecords(plan.store)).filter((r) => r.config_sha256 === plan.configSha);
  return checkChangedInputs(plan.store, plan.shards.filter((s) => !s.documents), records, {
    rescoreChanged: cfg.rescoreChanged ?? false, s3: cfg.s3, entries: plan.entries,
    // A rank starts from its summary alone: the units removed for rescoring leave the summaries first.
    beforeRemove: async (units) => { await dropFromSummaries(plan.store, units); },
  });
}

/**
 * The stages of `rho score`, in order; the executor's ordering stage sits between assembly and writing, and
 * the writer streams each unit's file as its row groups fill (no unit is held whole).
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function scoreStages(cfg: ScoreConfig, plan: ScorePlan, scorers: Scorer[], cross: CrossTokenizerModels | null, executor: Executor): Stage<any, any>[] {
  const models = plan.models;
  const primary = models.filter((m) => !plan.modelTokenizers.has(m));
  const shardBytes = new Map(plan.shards.map((s) => [s.source, s.bytes]));
  const metadata = (unit: UnitRef, records: number) => {
    const meta = new Map(plan.provenance);
    meta.set(META.inputs, JSON.stringify([{ source: unit.source, bytes: shardBytes.get(unit.source) }]));
    meta.set(META.unit, JSON.stringify({ source: unit.source, part: unit.part, first_row: unit.firstRow, rows: records }));
    return provenanceViews(meta).keyValues;
  };
  // Models on the primary tokenizer: its windows, batches and scorers. With none (every model has its own
  // tokenizer), documents go straight to assembly with no window.
  const primaryStages: Stage<any, any>[] = primary.length
    ? [windowStage(plan.spec), batchStage({ batchTokens: plan.limits.batchTokens, contextTokens: plan.spec.contextTokens }), scoreStage(scorers)]
    : [stage<Flow<TokenizedDocument>, Flow<WindowedDocument>>('window', async function* (input) {
        for await (const it of input) yield it.kind === 'doc' ? { ...it, doc: { ...it.doc, windows: [] } } : it;
      })];
  return [
    ...(cfg.transforms ?? []),
    // With projected models the text travels on to the cross-tokenizer stage, which reads it again.
    tokenizeStage(plan.tokenizer, { keepText: cross !== null }),
    ...primaryStages,
    assembleStage({ models: primary, entropy: cfg.entropy }),
    ...(cross ? [crossTokenizerStage(cross)] : []),
    executor.ordered<ScoredDocument>(),
    ...(process.env.RHO_TEST_PERTURB_SCORES === '1' ? [perturbStage(models)] : []),
    streamWriteStage({ models, entropy: cfg.entropy, scoreDtype: cfg.scoreDtype ?? DEFAULT_SCORE_DTYPE, spec: plan.spec, format: cfg.format, hive: cfg.partitionBy === 'shard', metadata, projected: new Set(plan.modelTokenizers.keys()) }),
  ];
}

/**
 * Test only (RHO_TEST_PERTURB_SCORES=1): every runner writes different bytes, as GPU kernels chosen by batch
 * shape do, so the tests can show that exactly-once does not rest on determinism. Scores move by < 1e-6 nats.
 */
function perturbStage(models: string[]): Stage<OrderedFlow<ScoredDocument>, OrderedFlow<ScoredDocument>> {
  return stage('perturb', async function* (input) {
    for await (const it of input) {
      if (it.kind === 'doc') {
        for (const m of models) {
          const lp = it.doc.scores.get(m)!.logprob;
          for (let i = 0; i < lp.length; i++) if (!Number.isNaN(lp[i])) lp[i] -= Math.random() * 1e-6;
        }
      }
      yield it;
    }
  });
}

/** A shard file as an executor input: its records through the reader, bytes counted for the progress line. */
function shardInput(shard: InputShard & { documents?: DocumentSource }, cfg: ScoreConfig, plan: ScorePlan): ExecutorInput {
  const src = shard.documents;
  if (src) return { source: shard.source, bytes: 0, key: shard.key, read: () => readDocuments(src) };
  return {
    source: shard.source,
    bytes: shard.bytes,
    key: shard.key,
    prepare: async () => {
      let now = plan.fingerprints.get(shard.key);
      if (!now) plan.fingerprints.set(shard.key, (now = await fingerprint(shard.source, cfg.s3)));
      await recordInputFingerprint(plan.store, shard, now, plan.entries);
    },
    async *read(onBytes) {
      const opener = countingOpener(await openerFor(shard.source, cfg.s3), onBytes);
      yield* readShard(shard.source, { textField: cfg.textField, idField: cfg.idField }, opener);
    },
  };
}

/** Flags that are wrong whatever the inputs: checked first. */
function checkFlags(cfg: ScoreConfig): void {
  if (cfg.scorers) {
    if (cfg.scorers.length === 0) throw new ConfigError('scorers: give at least one scorer');
    const names = cfg.scorers.map((x) => x.modelNames.join(','));
    if (new Set(names).size !== 1) throw new ConfigError(`scorers name different models (${names.join(' vs ')}); every scorer must score the same models`);
  } else if (cfg.models.length === 0) throw new ConfigError('no --model given');
  for (const t of cfg.transforms ?? []) {
    if (!t || typeof t.name !== 'string' || typeof t.run !== 'function') throw new ConfigError('transforms: each entry must be a stage { name, run(input, ctx) } (see filterDocuments, mapDocuments)');
  }
  const names = new Set<string>();
  for (const m of cfg.scorers ? cfg.scorers[0].modelNames.map((name) => ({ name })) : cfg.models) {
    if (!MODEL_NAME_PATTERN.test(m.name)) throw new ConfigError(`model name "${m.name}" must match ${MODEL_NAME_PATTERN} (it becomes the column prefix <name>_logprob)`);
    if (names.has(m.name)) throw new ConfigError(`model name "${m.name}" given twice`);
    names.add(m.name);
  }
  if (cfg.batchTokens !== undefined && (!Number.isInteger(cfg.batchTokens) || cfg.batchTokens < 2)) throw new ConfigError(`--batch-tokens must be an integer >= 2 (got ${cfg.batchTokens})`);
  if (!Number.isInteger(cfg.unitDocs) || cfg.unitDocs < 1) throw new ConfigError(`--unit-docs must be a positive integer (got ${cfg.unitDocs})`);
  if (!(cfg.maxRejectRatio >= 0 && cfg.maxRejectRatio <= 1)) throw new ConfigError(`--max-reject-ratio must be in [0, 1] (got ${cfg.maxRejectRatio})`);
  if (!Array.isArray(cfg.inputs) || cfg.inputs.length === 0) throw new ConfigError('no --input given: name at least one shard or glob');
  if (cfg.scorers && cfg.modelTokenizers?.length) throw new ConfigError('--model-tokenizer needs ONNX models (--model): a custom scorer scores the primary tokenizer\'s windows only');
  if (cfg.scoreDtype !== undefined && !isScoreDtype(cfg.scoreDtype)) throw new ConfigError(`--score-dtype must be one of ${SCORE_DTYPES.join(', ')} (got ${String(cfg.scoreDtype)})`);
  checkNumericFlags({ context: cfg.context, stride: cfg.stride, threads: cfg.threads, 'lease-seconds': cfg.leaseSeconds, 'device-id': cfg.deviceId, rank: cfg.rank, 'world-size': cfg.worldSize },
    { context: 'positive-int', stride: 'positive-int', threads: 'positive-int', 'lease-seconds': 'positive', 'device-id': 'nonneg-int', rank: 'nonneg-int', 'world-size': 'positive-int' });
}

/** Inputs, output store, tokenizer, models and window rule: everything that can be wrong is found here, before any work. */
async function planScore(cfg: ScoreConfig): Promise<ScorePlan> {
  const shards = await configStep(() => resolveAllInputs(cfg.inputs, cfg.s3));
  refuseInputsInsideOutput(shards.filter((s) => !s.documents), cfg.output);
  const rank = cfg.rank ?? 0;
  const worldSize = cfg.worldSize ?? 1;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ConfigError(`--world-size must be a positive integer (got ${worldSize})`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new ConfigError(`--rank must be in [0, world size ${worldSize}) (got ${rank})`);
  const store = await configStep(() => (cfg.store ? Promise.resolve(cfg.store) : openOutputStore(cfg.output, cfg.s3)));
  await configStep(() => store.checkWritable());
  const tokenizer = await configStep(async () => TextTokenizer.load(cfg.tokenizer, { appendEos: cfg.appendEos, eosToken: cfg.eosToken }));
  const cacheDir = cfg.cacheDir ?? DEFAULT_CACHE_DIR;
  const prepared: PreparedModel[] = [];
  for (const m of cfg.scorers ? [] : cfg.models) {
    try {
      prepared.push(await prepareModel({ path: m.path, name: m.name, cacheDir: join(cacheDir, 'models'), entropy: cfg.entropy }));
    } catch (e) {
      throw new ConfigError(`model ${m.name} (${m.path}): ${(e as Error).message}`);
    }
  }
  const { spec, limits } = await configStep(async () => limitsOf(cfg, prepared, tokenizer.info.vocabSize));
  const tokenizerSha = await fileSha256(cfg.tokenizer);
  const modelTokenizers = await configStep(() => resolveModelTokenizers(cfg.modelTokenizers ?? [], prepared.map((p) => p.name), tokenizerSha, fileSha256));
  if (modelTokenizers.size > 0 && cfg.entropy) throw new ConfigError('--entropy with --model-tokenizer: the entropy of another tokenizer\'s next-token distribution has no meaning on the trainer\'s tokens; score entropy in a separate run');
  const modelIds = cfg.scorers
    ? cfg.scorers[0].modelNames.map((name) => ({ name, path: null, sha256: cfg.scorers![0].fingerprint ?? 'custom-scorer', external_data: false }))
    : prepared.map((p, i) => ({
      name: p.name, path: cfg.models[i].path, resolved_path: p.sourcePath, sha256: p.sha256, external_data: p.externalData,
      // Only in runs with --model-tokenizer: each model's tokenizer and how its scores reach the trainer's tokens.
      ...(modelTokenizers.size > 0 ? modelTokenizers.has(p.name)
        ? { tokenizer: tokenizerId(modelTokenizers.get(p.name)!), projection: PROJECTION_RULE }
        : { tokenizer: tokenizerId({ path: cfg.tokenizer, sha256: tokenizerSha }), projection: null } : {}),
    }));
  const identity = runIdentity(cfg, modelIds, tokenizer, tokenizerSha, spec);
  // Only when some model has its own tokenizer, so existing identities are unchanged.
  if (modelTokenizers.size > 0) identity.model_tokenizers = [...modelTokenizers].map(([name, t]) => ({ name, sha256: t.sha256, projection: PROJECTION_RULE }));
  const identityJson = JSON.stringify(identity, null, 2);
  const provenance = new Map<string, string>([
    [META.schemaVersion, String(SCHEMA_VERSION)],
    [META.rhoVersion, RHO_VERSION],
    // Paths as given (what the user typed, portable across machines) and resolved (where they were).
    [META.models, JSON.stringify(modelIds)],
    [META.tokenizer, JSON.stringify(tokenizerId({ path: cfg.tokenizer, sha256: tokenizerSha }))],
    [META.scoreDtype, cfg.scoreDtype ?? DEFAULT_SCORE_DTYPE],
    [META.context, String(spec.contextTokens)],
    [META.stride, String(spec.strideTokens)],
    [META.specialTokens, JSON.stringify({ post_processor: true, append_eos: cfg.appendEos, eos_token: tokenizer.info.eosToken, eos_id: tokenizer.info.eosId })],
  ]);
  return { shards, store, tokenizer, prepared, modelTokenizers, models: modelIds.map((m) => m.name), spec, limits, identityJson, configSha: sha256(new TextEncoder().encode(identityJson)), provenance, fingerprints: new Map(), entries: new Map() };
}

/** A tokenizer in provenance: the path as given, where it resolved to, and its sha256. */
const tokenizerId = (t: { path: string; sha256: string }) => ({ path: t.path, resolved_path: resolvedPath(t.path), sha256: t.sha256 });

/** Run `f`; whatever it throws is a problem with the request (exit 2). */
async function configStep<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

/**
 * C defaults to the smallest max context the models declare (config.json, a learned position table), else 2048,
 * capped to what the memory budget holds (a power of two, said so); S to C. The batch size follows from the budget
 * when --batch-tokens is not given, and a window that cannot fit is refused, with the numbers.
 */
async function limitsOf(cfg: ScoreConfig, prepared: PreparedModel[], tokenizerVocab: number): Promise<{ spec: WindowSpec; limits: RunLimits }> {
  const declared = prepared.filter((p) => p.maxContext !== null).sort((a, b) => a.maxContext! - b.maxContext!)[0];
  const modelMax = declared?.maxContext ?? null;
  const memModels = await Promise.all(prepared.map((p) => memoryOf(p, tokenizerVocab)));
  let context = cfg.context ?? modelMax ?? 2048;
  let contextSource = cfg.context !== undefined ? '--context' : declared ? `from ${declared.name}'s ${declared.maxContextSource}` : 'default 2048';
  if (modelMax !== null && context > modelMax) {
    throw new ConfigError(`--context ${context} is longer than the ${modelMax} positions model ${declared!.name} takes (${declared!.maxContextSource}); use --context ${modelMax} or less`);
  }
  if (cfg.context === undefined) {
    const budget = planMemoryBudget(cfg);
    const fit = maxContextFor({ models: memModels, device: cfg.device }, budget);
    if (fit >= 2 && context > fit) {
      const capped = 2 ** Math.floor(Math.log2(fit));
      contextSource += `, capped to ${capped} because one window of ${context} tokens does not fit the memory budget`;
      context = capped;
    }
  }
  const spec: WindowSpec = { contextTokens: context, strideTokens: cfg.stride ?? context };
  try {
    validateWindowSpec(spec);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  let mem: MemoryPlan;
  try {
    mem = memModels.length > 0
      ? planMemory({ models: memModels, context, device: cfg.device, budget: cfg.memoryBudget, batchTokens: cfg.batchTokens })
      // A custom Scorer: rho knows nothing of its memory, so no estimate; the batch budget is the flag's or 1024.
      : {
        budgetBytes: planMemoryBudget(cfg), budgetSource: cfg.memoryBudget === undefined ? defaultBudget(cfg.device).source : `--memory-budget ${cfg.memoryBudget}`,
        batchTokens: cfg.batchTokens ?? 1024, batchSource: cfg.batchTokens !== undefined ? '--batch-tokens' : 'default 1024 (custom scorer: no memory estimate)',
        fixedBytes: 0, perTokenBytes: 0, estimateBytes: 0,
      };
  } catch (e) {
    throw new ConfigError(e instanceof MemoryBudgetError ? `memory: ${e.message}` : (e as Error).message);
  }
  const heads = Object.fromEntries(prepared.map((p) => [p.name, p.head.kind === 'chunked' ? `chunked head over vocabulary slices (V = ${p.dims.vocab})` : `full head (${p.head.reason})`]));
  return {
    spec,
    limits: {
      context, contextSource, stride: spec.strideTokens, batchTokens: mem.batchTokens, batchSource: mem.batchSource,
      memoryBudgetBytes: mem.budgetBytes, memorySource: mem.budgetSource, estimateBytes: mem.estimateBytes, heads,
    },
  };
}

function planMemoryBudget(cfg: ScoreConfig): number {
  const def = defaultBudget(cfg.device);
  try {
    return cfg.memoryBudget === undefined ? def.bytes : parseMemoryBudget(cfg.memoryBudget, def.base);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

/** What the memory estimate needs to know about a prepared model (unknown dimensions: assumed large). */
async function memoryOf(p: PreparedModel, tokenizerVocab: number): Promise<ModelMemory> {
  let weightBytes = p.externalData.reduce((a, x) => a + x.bytes, 0);
  try {
    weightBytes += (await stat(p.sourcePath)).size;
  } catch {
    // prepared already read it; a vanished file fails later with its own message
  }
  return {
    name: p.name,
    vocab: p.dims.vocab ?? tokenizerVocab,
    hidden: p.dims.hidden ?? 4096,
    layers: p.dims.layers ?? 32,
    heads: p.dims.heads ?? undefined,
    weightBytes,
    head: p.head.kind === 'chunked' ? { kind: 'chunked', sliceElements: p.head.sliceElements } : { kind: 'full' },
  };
}

function runIdentity(cfg: ScoreConfig, models: { name: string; sha256: string }[], tokenizer: TextTokenizer, tokenizerSha: string, spec: WindowSpec): RunIdentity {
  const identity: RunIdentity = {
    schema_version: SCHEMA_VERSION,
    models: models.map((m) => ({ name: m.name, sha256: m.sha256 })),
    tokenizer_sha256: tokenizerSha,
    context: spec.contextTokens,
    stride: spec.strideTokens,
    special_tokens: { post_processor: true, append_eos: cfg.appendEos, eos_id: cfg.appendEos ? tokenizer.info.eosId : null },
    entropy: cfg.entropy,
    text_field: cfg.textField,
    id_field: cfg.idField ?? null,
    unit_docs: cfg.unitDocs,
    format: cfg.format,
    // Only when not float32, so float32 dirs written before the option existed stay resumable.
    ...(cfg.scoreDtype && cfg.scoreDtype !== DEFAULT_SCORE_DTYPE ? { score_dtype: cfg.scoreDtype } : {}),
  };
  // Only when there are any, so that the identity of a run without them is what it always was.
  if (cfg.transforms?.length) identity.transforms = cfg.transforms.map((t) => t.name);
  return identity;
}

/**
 * Inputs in the order given: each string through resolveInputs (globs sorted), each document source as an
 * input of its name. A name may appear once.
 */
async function resolveAllInputs(entries: (string | DocumentSource)[], s3: S3Options | undefined): Promise<(InputShard & { documents?: DocumentSource })[]> {
  const out: (InputShard & { documents?: DocumentSource })[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (typeof e === 'string') {
      // One shard per file however it is spelled (canonical location).
      for (const sh of await resolveInputs([e], s3)) if (!seen.has(sh.location)) { seen.add(sh.location); out.push(sh); }
      continue;
    }
    if (!e || typeof e.name !== 'string' || e.name === '' || typeof e.documents !== 'function') {
      throw new Error('inputs: an entry that is not a string must be a document source { name: string, documents(): AsyncIterable<{ id?, text }> }');
    }
    if (seen.has(e.name)) throw new Error(`inputs: "${e.name}" is given twice (a document source's name is its identity, like a file's path)`);
    seen.add(e.name);
    out.push({ source: e.name, bytes: 0, location: `document-source:${e.name}`, key: shardKey(e.name), documents: e });
  }
  return out;
}

/** One onnxruntime scorer per device (one worker thread each). A provider that cannot load is a config error. */
async function openScorers(cfg: ScoreConfig, plan: ScorePlan): Promise<Scorer[]> {
  const deviceIds = cfg.device === 'cpu' ? [undefined] : (cfg.devices?.length ? cfg.devices : [cfg.deviceId ?? 0]);
  const scorers: Scorer[] = [];
  const primary = plan.prepared.filter((p) => !plan.modelTokenizers.has(p.name));
  try {
    for (const deviceId of primary.length ? deviceIds : []) {
      scorers.push(await OnnxScorer.open({ models: primary, device: cfg.device, deviceId, intraOpThreads: cfg.threads ?? defaultThreads(cfg.device), tokenizerVocabSize: plan.tokenizer.info.vocabSize }));
    }
  } catch (e) {
    await Promise.all(scorers.map((x) => x.close()));
    throw new ConfigError((e as Error).message);
  }
  return scorers;
}

/** The models with their own tokenizer: their tokenizers, windows and scorers (stages/cross.ts); null when none. */
async function openCrossTokenizer(cfg: ScoreConfig, plan: ScorePlan): Promise<CrossTokenizerModels | null> {
  if (plan.modelTokenizers.size === 0) return null;
  const deviceIds = cfg.device === 'cpu' ? [undefined] : (cfg.devices?.length ? cfg.devices : [cfg.deviceId ?? 0]);
  return configStep(() => CrossTokenizerModels.open({
    models: plan.prepared.filter((p) => plan.modelTokenizers.has(p.name)).map((model) => ({ model, tokenizerPath: plan.modelTokenizers.get(model.name)!.path })),
    primary: plan.tokenizer, appendEos: cfg.appendEos, spec: plan.spec, batchTokens: plan.limits.batchTokens, device: cfg.device, deviceIds,
    intraOpThreads: cfg.threads ?? defaultThreads(cfg.device),
  }));
}

/** The summary `rho score --json` prints; throws RejectRatioError (carrying it) when too much was rejected. */
function summarize(cfg: ScoreConfig, plan: ScorePlan, executor: Executor, manifest: Manifest, scope: RunSummary['scope'], stats: StageStats[], wall: number, cross: CrossTokenizerModels | null = null): RunSummary {
  const store = plan.store;
  const batch = stats.find((s) => s.name === 'batch')?.counters ?? {};
  const padded = batch.padded_positions ?? 0;
  const real = batch.real_positions ?? 0;
  const run = executor.counts;
  const summary: RunSummary = {
    output: store.root,
    scope,
    manifest,
    run: { ...run, wall_seconds: wall, tokens_per_second: run.scored_tokens / wall, padding_fraction: padded ? 1 - real / padded : 0 },
    stages: stats,
    limits: plan.limits,
  };
  // Only with --model-tokenizer: the cost of the second tokenization (with byte spans) and of the projection.
  if (cross) summary.run.cross_tokenizer = { projection_seconds: cross.projectSeconds, tokenize_seconds: cross.tokenizeSeconds };
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
