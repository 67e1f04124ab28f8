// The score job: read → tokenize → window → batch → score (worker threads) → reassemble → write, per work
// unit, with completion records, rejects, and a manifest. The job owns concurrency, backpressure and
// accounting; the stages only transform.
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { pipeline, Transform } from 'node:stream';
import { readShard, type ShardOpener } from '../stages/read.js';
import { TextTokenizer } from '../stages/tokenize.js';
import { planWindows, validateWindowSpec } from '../stages/window.js';
import { WindowPool, buildBatch, type BatchPlan } from '../stages/batch.js';
import { Scorer } from '../stages/score.js';
import { scoredTable, encodeTable, sha256, type OutputFormat } from '../stages/write.js';
import { prepareModel, type PreparedModel } from '../model/prepare.js';
import { META, MODEL_NAME_PATTERN, SCHEMA_VERSION, combinedProvenance } from '../schemas/contract.js';
import { resolveInputs, type InputShard } from './inputs.js';
import type { OutputStore } from './store.js';
import { LAYOUT, unitName, type CompletionRecord, type UnitId } from './units.js';
import { Progress } from './progress.js';
import { ConfigError, RejectRatioError } from './errors.js';
import { Claims, DEFAULT_LEASE_SECONDS } from './claims.js';
import { ownerOf, checkWorldSize } from './rank.js';
import { openOutputStore, openerFor } from './output.js';
import type { S3Options } from './s3.js';
import { crashPoint } from './crashpoints.js';
import { RHO_VERSION } from './version.js';
import { manifestOf, writeDirManifest, type Manifest } from './manifest.js';
import { readRecords, ensureRunInfo } from './records.js';
import { commitUnit } from './commit.js';
import { rankStart, rankEnd } from './rank-books.js';
import type { Document, Rejected, ScoredDocument, TokenizedDocument, WindowSpec } from './types.js';

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
}

export interface RunSummary {
  output: string;
  /** 'dir': `manifest` is the whole dir's, written to manifest.json (this was the last rank to finish); 'rank': it covers this rank's units only. */
  scope: 'dir' | 'rank';
  manifest: Manifest;
  /** This run only (units skipped because they were already done are not counted here). */
  run: { units_written: number; units_skipped: number; units_other_rank: number; units_claimed_elsewhere: number; units_lost: number; docs_in: number; scored: number; rejected: number; tokens: number; scored_tokens: number; wall_seconds: number; tokens_per_second: number; padding_fraction: number };
}

export const DEFAULT_CACHE_DIR = process.env.RHO_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'rho');

function fileSha256(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}

/** What fixes the meaning of an output dir. A rerun with a different identity is refused (or --overwrite). */
export interface RunIdentity {
  schema_version: number;
  models: { name: string; sha256: string }[];
  tokenizer_sha256: string;
  context: number;
  stride: number;
  special_tokens: { post_processor: true; append_eos: boolean; eos_id: number | null };
  entropy: boolean;
  text_field: string;
  id_field: string | null;
  unit_docs: number;
  format: OutputFormat;
}

interface DocState {
  doc: TokenizedDocument;
  scores: ScoredDocument['scores'];
  pendingWindows: number;
  unit: UnitState;
}

interface DocItem {
  kind: 'doc';
  /** Null until the document is tokenized. */
  st: DocState | null;
}

interface DocSlot {
  unit: UnitState;
  item: DocItem;
}

interface UnitState {
  id: UnitId;
  firstRow: number;
  items: (DocItem | { kind: 'reject'; reject: Rejected })[];
  pendingDocs: number;
  closed: boolean;
  writing: boolean;
}

export async function runScore(cfg: ScoreConfig): Promise<RunSummary> {
  // ---- everything that can be wrong with the request is checked before any work ----
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

  let shards: InputShard[];
  try {
    shards = await resolveInputs(cfg.inputs, cfg.s3);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const rank = cfg.rank ?? 0;
  const worldSize = cfg.worldSize ?? 1;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new ConfigError(`--world-size must be a positive integer (got ${worldSize})`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new ConfigError(`--rank must be in [0, world size ${worldSize}) (got ${rank})`);
  let store: OutputStore;
  try {
    store = cfg.store ?? (await openOutputStore(cfg.output, cfg.s3));
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  await store.checkWritable().catch((e: Error) => { throw new ConfigError(e.message); });

  let tokenizer: TextTokenizer;
  try {
    tokenizer = TextTokenizer.load(cfg.tokenizer, { appendEos: cfg.appendEos, eosToken: cfg.eosToken });
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const cacheDir = cfg.cacheDir ?? DEFAULT_CACHE_DIR;
  const prepared: PreparedModel[] = [];
  for (const m of cfg.models) {
    try {
      prepared.push(await prepareModel({ path: m.path, name: m.name, cacheDir: join(cacheDir, 'models'), entropy: cfg.entropy }));
    } catch (e) {
      throw new ConfigError(`model ${m.name} (${m.path}): ${(e as Error).message}`);
    }
  }
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

  const tokenizerSha = await fileSha256(cfg.tokenizer);
  const identity: RunIdentity = {
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
  const identityJson = JSON.stringify(identity, null, 2);
  const configSha = sha256(new TextEncoder().encode(identityJson));
  await claimOutputDir(store, identityJson, cfg.overwrite);
  if (worldSize > 1) await checkWorldSize(store, { rank, worldSize, from: 'flags' });

  // What is done: only the records of the units this rank owns (its summary, else the records themselves);
  // staged files a crash left between record and publish are published first (commit.ts).
  const ownDone = (await rankStart(store, { rank, worldSize, configSha })).done;
  const done = new Set(ownDone.keys());

  const deviceIds = cfg.device === 'cpu' ? [undefined] : (cfg.devices?.length ? cfg.devices : [cfg.deviceId ?? 0]);
  const scorers: Scorer[] = [];
  try {
    for (const deviceId of deviceIds) {
      scorers.push(await Scorer.open({ models: prepared, device: cfg.device, deviceId, intraOpThreads: cfg.threads ?? defaultThreads(cfg.device), tokenizerVocabSize: tokenizer.info.vocabSize }));
    }
  } catch (e) {
    await Promise.all(scorers.map((x) => x.close()));
    throw new ConfigError((e as Error).message);
  }
  const busy = new Map<Scorer, number>(scorers.map((x) => [x, 0]));
  const claims = new Claims(store, rank, (cfg.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000);

  const modelNames = prepared.map((p) => p.name);
  const provenance = new Map<string, string>([
    [META.schemaVersion, String(SCHEMA_VERSION)],
    [META.rhoVersion, RHO_VERSION],
    [META.models, JSON.stringify(prepared.map((p) => ({ name: p.name, path: p.sourcePath, sha256: p.sha256, external_data: p.externalData })))],
    [META.tokenizer, JSON.stringify({ path: cfg.tokenizer, sha256: tokenizerSha })],
    [META.context, String(spec.contextTokens)],
    [META.stride, String(spec.strideTokens)],
    [META.specialTokens, JSON.stringify({ post_processor: true, append_eos: cfg.appendEos, eos_token: tokenizer.info.eosToken, eos_id: tokenizer.info.eosId })],
  ]);
  const runInfo = { provenance: Object.fromEntries(provenance), inputs: shards };
  const runFile = await ensureRunInfo(store, runInfo);

  // ---- the run ----
  const run = { units_written: 0, units_skipped: 0, units_other_rank: 0, units_claimed_elsewhere: 0, units_lost: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 };
  let inputBytesDone = 0;
  // Bytes of the current shard read so far (streamed formats), so the ETA moves inside a large shard.
  let shardBytesRead = 0;
  let paddedPositions = 0;
  let realPositions = 0;
  // Live counts for the progress line (the run counts above move only when a unit is written).
  const live = { docs: 0, rejected: 0, tokens: 0 };
  const progress = new Progress(shards.reduce((a, s) => a + s.bytes, 0), () => ({ ...live, inputBytesDone: inputBytesDone + shardBytesRead }), cfg.progress);

  const docs = new Map<number, DocState>();
  let nextDocSeq = 0;
  const pool = new WindowPool(cfg.batchTokens, context);
  const inflight = new Set<Promise<void>>();
  // Two batches per worker: one running, one queued in the worker, so a model never waits for the main thread.
  const maxInflight = 2 * scorers.length;
  let failure: Error | null = null;
  let scoringSeconds = 0;
  let writeChain: Promise<void> = Promise.resolve();

  const fail = (e: unknown) => { failure ??= e instanceof Error ? e : new Error(String(e)); };
  const finishedMeanwhile = async (name: string): Promise<boolean> => {
    const [r] = await readRecords(store, [name]);
    if (r) ownDone.set(name, r);
    return r !== undefined;
  };

  const maybeWrite = (u: UnitState) => {
    if (!u.closed || u.pendingDocs > 0 || u.writing) return;
    u.writing = true;
    writeChain = writeChain.then(() => (failure ? undefined : writeUnit(u))).catch(fail);
  };

  const finishDoc = (st: DocState) => {
    live.docs++;
    st.unit.pendingDocs--;
    maybeWrite(st.unit);
  };

  const writeUnit = async (u: UnitState) => {
    const scored: ScoredDocument[] = [];
    const rejects: Rejected[] = [];
    let scoredTokens = 0;
    for (const it of u.items) {
      if (it.kind === 'reject') rejects.push(it.reject);
      else {
        const st = it.st!;
        scored.push({ ...st.doc, scores: st.scores });
        const lp = st.scores.get(modelNames[0])!.logprob;
        for (let i = 0; i < lp.length; i++) if (!Number.isNaN(lp[i])) scoredTokens++;
      }
    }
    const meta = new Map(provenance);
    const shard = shards.find((s) => s.source === u.id.source)!;
    meta.set(META.inputs, JSON.stringify([{ source: shard.source, bytes: shard.bytes }]));
    meta.set(META.unit, JSON.stringify({ source: u.id.source, part: u.id.part, first_row: u.firstRow, rows: u.items.length }));
    meta.set(META.all, combinedProvenance(meta));
    if (PERTURB) perturbScores(scored, modelNames);
    const bytes = encodeTable(scoredTable(scored, modelNames, cfg.entropy, spec, meta), cfg.format);
    const tokens = scored.reduce((a, d) => a + d.tokenIds.length, 0);
    const name = unitName(u.id);
    // Exactly once whatever the bytes: staged, fenced by the lease, decided by an exclusive record (commit.ts).
    const result = await commitUnit(store, {
      id: u.id, format: cfg.format, hive: cfg.partitionBy === 'shard', bytes,
      rejects: rejects.length ? new TextEncoder().encode(rejects.map((r) => JSON.stringify(r)).join('\n') + '\n') : null,
      record: { unit: name, source: u.id.source, part: u.id.part, first_row: u.firstRow, docs_in: u.items.length, scored: scored.length, rejected: rejects.length, tokens, scored_tokens: scoredTokens, config_sha256: configSha },
    }, () => claims.holds(name));
    for (const it of u.items) if (it.kind === 'doc') docs.delete(it.st!.doc.docSeq);
    u.items = [];
    if (!result.won) {
      // Another runner committed this unit (or took it over after this runner's lease ran out): its record stands.
      await claims.drop(name);
      if (result.record) ownDone.set(name, result.record);
      run.units_lost++;
      return;
    }
    const record = result.record;
    ownDone.set(name, record);
    await claims.finish(name);
    run.units_written++;
    run.docs_in += record.docs_in;
    run.scored += record.scored;
    run.rejected += record.rejected;
    run.tokens += tokens;
    run.scored_tokens += scoredTokens;
    progress.draw();
  };

  const dispatch = async (plans: BatchPlan[]) => {
    for (const plan of plans) {
      while (inflight.size >= maxInflight) await Promise.race(inflight);
      if (failure) throw failure;
      const batch = buildBatch(plan, (seq) => docs.get(seq)!.doc.tokenIds);
      paddedPositions += batch.rows * batch.width;
      for (const w of plan.windows) realPositions += w.end - w.start;
      const scorer = [...busy].sort((a, b) => a[1] - b[1])[0][0];
      busy.set(scorer, busy.get(scorer)! + 1);
      const p: Promise<void> = scorer.score(batch).then((res) => {
        batch.windows.forEach((w, r) => {
          const st = docs.get(w.docSeq)!;
          const rowBase = r * batch.width;
          for (const [name, s] of res) {
            const dst = st.scores.get(name)!;
            const from = w.scoreFrom - w.start;
            const len = w.end - w.start;
            dst.logprob.set(s.logprob.subarray(rowBase + from, rowBase + len), w.scoreFrom);
            if (dst.entropy && s.entropy) dst.entropy.set(s.entropy.subarray(rowBase + from, rowBase + len), w.scoreFrom);
          }
          live.tokens += w.end - w.scoreFrom - (w.scoreFrom === w.start ? 1 : 0);
          if (--st.pendingWindows === 0) finishDoc(st);
        });
        crashPoint('batch-scored');
      }).catch(fail).finally(() => {
        inflight.delete(p);
        busy.set(scorer, busy.get(scorer)! - 1);
      });
      inflight.add(p);
      crashPoint('batch-dispatched');
    }
  };

  const addTokenized = async (tokenized: TokenizedDocument[], slots: DocSlot[]) => {
    for (let i = 0; i < tokenized.length; i++) {
      const doc = tokenized[i];
      const slot = slots[i];
      const unit = slot.unit;
      const scores: ScoredDocument['scores'] = new Map();
      for (const name of modelNames) {
        scores.set(name, { logprob: new Float32Array(doc.tokenIds.length).fill(NaN), entropy: cfg.entropy ? new Float32Array(doc.tokenIds.length).fill(NaN) : undefined });
      }
      const windows = planWindows(doc.docSeq, doc.tokenIds.length, spec);
      const st: DocState = { doc, scores, pendingWindows: windows.length, unit };
      slot.item.st = st;
      docs.set(doc.docSeq, st);
      if (windows.length === 0) {
        finishDoc(st);
        continue;
      }
      const plans = pool.add(windows);
      if (plans) await dispatch(plans);
    }
  };

  try {
    const TOKENIZE_CHUNK_DOCS = 256;
    const TOKENIZE_CHUNK_CHARS = 2_000_000;
    for (const shard of shards) {
      const open = new Map<number, UnitState>();
      let chunk: Document[] = [];
      let chunkSlots: DocSlot[] = [];
      let chunkChars = 0;
      const flushChunk = async () => {
        if (chunk.length === 0) return;
        const c = chunk;
        const cs = chunkSlots;
        chunk = [];
        chunkSlots = [];
        chunkChars = 0;
        await addTokenized(await tokenizer.encode(c), cs);
        crashPoint('tokenized');
      };
      const closeBefore = async (part: number) => {
        const older = [...open.keys()].filter((p) => p < part);
        if (older.length === 0) return;
        await flushChunk();
        for (const p of older) {
          const u = open.get(p)!;
          open.delete(p);
          u.closed = true;
          maybeWrite(u);
        }
      };
      const skippedParts = new Set<number>();
      const opener = countingOpener(await openerFor(shard.source, cfg.s3), (n) => { shardBytesRead = Math.min(shardBytesRead + n, shard.bytes); });
      shardBytesRead = 0;
      for await (const item of readShard(shard.source, { textField: cfg.textField, idField: cfg.idField }, opener)) {
        if (failure) throw failure;
        const row = item.kind === 'doc' ? item.doc.row : item.reject.row;
        const part = Math.floor(row / cfg.unitDocs);
        await closeBefore(part);
        if (skippedParts.has(part)) continue;
        let unit = open.get(part);
        if (!unit) {
          const id = { source: shard.source, part };
          const name = unitName(id);
          const skip = done.has(name) ? 'done'
            : ownerOf(name, worldSize) !== rank ? 'rank'
            : !(await claims.acquire(name)) ? 'claimed'
            // Finished by another runner since this one started (its claim is gone once it is done).
            : (await finishedMeanwhile(name)) ? (await claims.finish(name), 'done')
            : null;
          if (!skip) crashPoint('claim-acquired');
          if (skip) {
            skippedParts.add(part);
            if (skip === 'done') run.units_skipped++;
            else if (skip === 'rank') run.units_other_rank++;
            else run.units_claimed_elsewhere++;
            continue;
          }
          unit = { id, firstRow: part * cfg.unitDocs, items: [], pendingDocs: 0, closed: false, writing: false };
          open.set(part, unit);
        }
        if (item.kind === 'reject') {
          unit.items.push({ kind: 'reject', reject: item.reject });
          live.rejected++;
          continue;
        }
        const slotItem: DocItem = { kind: 'doc', st: null };
        unit.items.push(slotItem);
        unit.pendingDocs++;
        chunk.push({ ...item.doc, docSeq: nextDocSeq++ });
        chunkSlots.push({ unit, item: slotItem });
        chunkChars += item.doc.text.length;
        if (chunk.length >= TOKENIZE_CHUNK_DOCS || chunkChars >= TOKENIZE_CHUNK_CHARS) await flushChunk();
      }
      await closeBefore(Number.POSITIVE_INFINITY);
      inputBytesDone += shard.bytes;
      shardBytesRead = 0;
    }
    await dispatch(pool.flush());
    while (inflight.size > 0) await Promise.race(inflight);
    await writeChain;
    if (failure) throw failure;
    // The clock of the run's throughput stops with the last write: closing workers is a fixed cost per run.
    scoringSeconds = progress.elapsedSeconds();
  } catch (e) {
    await claims.releaseAll((e as Error).message);
    throw e;
  } finally {
    claims.stopRenewal();
    progress.stop();
    await Promise.all(scorers.map((x) => x.close()));
  }

  // This rank's summary (its units' records, batched); the last rank to finish writes manifest.json.
  const runMeta = { wall_seconds: progress.elapsedSeconds() };
  const last = await rankEnd(store, {
    rank, world_size: worldSize, config_sha256: configSha, run_file: runFile,
    complete: run.units_claimed_elsewhere === 0 && run.units_lost === 0, finished_at: new Date().toISOString(),
    run: { ...run, ...runMeta }, records: [...ownDone.values()],
  });
  const manifest = last
    ? (await writeDirManifest(store, { runMeta, run: runInfo, configSha })).manifest
    : manifestOf([...ownDone.values()], { ...runInfo, configSha, runMeta: { ...runMeta, scope: `rank ${rank} of ${worldSize}` } });
  const wall = scoringSeconds;
  const summary: RunSummary = {
    output: store.root,
    scope: last ? 'dir' : 'rank',
    manifest,
    run: { ...run, wall_seconds: wall, tokens_per_second: run.scored_tokens / wall, padding_fraction: paddedPositions ? 1 - realPositions / paddedPositions : 0 },
  };
  const t = manifest.totals;
  if (t.docs_in > 0 && t.rejected / t.docs_in > cfg.maxRejectRatio) {
    throw Object.assign(new RejectRatioError(`${t.rejected} of ${t.docs_in} input documents were rejected (${((t.rejected / t.docs_in) * 100).toFixed(2)}% > --max-reject-ratio ${cfg.maxRejectRatio}); see ${cfg.output}/${LAYOUT.rejectsDir}/`), { summary });
  }
  return summary;
}

/**
 * Test only (RHO_TEST_PERTURB_SCORES=1): every runner writes different bytes, as GPU kernels chosen by batch
 * shape do, so the tests can show exactly-once does not rest on determinism. Scores move by < 1e-6 nats.
 */
const PERTURB = process.env.RHO_TEST_PERTURB_SCORES === '1';
function perturbScores(docs: ScoredDocument[], models: string[]): void {
  for (const d of docs) {
    for (const m of models) {
      const lp = d.scores.get(m)!.logprob;
      for (let i = 0; i < lp.length; i++) if (!Number.isNaN(lp[i])) lp[i] -= Math.random() * 1e-6;
    }
  }
}

/**
 * onnxruntime-node's own default used 1 intra-op thread on a 2-core VM here (it counts physical cores, and
 * a VM's topology can hide them): half the CPU speed (4,900 vs 9,100 tokens/s on the benchmark model).
 * On CPU, use every core the process may run on; on a GPU leave onnxruntime's choice.
 */
function defaultThreads(device: ScoreConfig['device']): number | undefined {
  return device === 'cpu' ? availableParallelism() : undefined;
}

/** Wrap an opener so that the bytes its streams deliver are counted (for progress only). */
function countingOpener(inner: ShardOpener, onBytes: (n: number) => void): ShardOpener {
  return {
    stream(source) {
      const counter = new Transform({ transform(chunk: Buffer, _e, cb) { onBytes(chunk.length); cb(null, chunk); } });
      return pipeline(inner.stream(source), counter, () => {});
    },
    blob: (source) => inner.blob(source),
  };
}

/** Record the run identity in the output dir, or refuse a dir made with another one. */
async function claimOutputDir(store: OutputStore, identityJson: string, overwrite: boolean): Promise<void> {
  const existing = await store.read(LAYOUT.config);
  const mine = new TextEncoder().encode(identityJson + '\n');
  if (existing && new TextDecoder().decode(existing) !== identityJson + '\n') {
    if (!overwrite) {
      const before = JSON.parse(new TextDecoder().decode(existing)) as Record<string, unknown>;
      const after = JSON.parse(identityJson) as Record<string, unknown>;
      const diffs = Object.keys({ ...before, ...after }).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
      throw new ConfigError(`output dir ${store.root} holds results of another configuration (differs in: ${diffs.join(', ')}); use another --output, or --overwrite to delete them and start over`);
    }
    for (const rel of await store.list('')) {
      if (rel.startsWith('_rho/') || rel === LAYOUT.manifest || /\/part-\d{5}\.(parquet|arrow)$/.test(rel)) await store.remove(rel);
    }
  }
  if (!existing || overwrite) {
    if (existing) await store.writeAtomic(LAYOUT.config, mine);
    else await store.createExclusive(LAYOUT.config, mine);
  }
  // Another runner may have created it first with a different identity.
  const now = await store.read(LAYOUT.config);
  if (now && new TextDecoder().decode(now) !== identityJson + '\n') {
    throw new ConfigError(`output dir ${store.root} was just claimed by a run of another configuration`);
  }
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}
