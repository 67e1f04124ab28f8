// The score job: read → tokenize → window → batch → score (worker threads) → reassemble → write, per work
// unit, with completion records, rejects, and a manifest. The job owns concurrency, backpressure and
// accounting; the stages only transform.
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { join } from 'node:path';
import { pipeline, Transform } from 'node:stream';
import { readShard, InputReadError, type ShardOpener } from '../stages/read.js';
import { TextTokenizer } from '../stages/tokenize.js';
import { planWindows, validateWindowSpec } from '../stages/window.js';
import { WindowPool, buildBatch, type BatchPlan } from '../stages/batch.js';
import { Scorer } from '../stages/score.js';
import { scoredTable, encodeTable, sha256, type OutputFormat } from '../stages/write.js';
import { prepareModel, type PreparedModel } from '../model/prepare.js';
import { META, MODEL_NAME_PATTERN, SCHEMA_VERSION, combinedProvenance } from '../schemas/contract.js';
import { resolveInputs, type InputShard } from './inputs.js';
import type { OutputStore } from './store.js';
import { LAYOUT, dataPath, donePath, rejectsPath, unitName, type CompletionRecord, type UnitId } from './units.js';
import { Progress } from './progress.js';
import { ConfigError, RejectRatioError } from './errors.js';
import { IncompleteRunError, checkChangedInputs, checkNumericFlags, fingerprint, probeFields, refuseInputsInsideOutput, type InputFingerprint } from './input-checks.js';
import { probeContext } from './preflight.js';
import { Claims, DEFAULT_LEASE_SECONDS } from './claims.js';
import { ownerOf, checkWorldSize } from './rank.js';
import { openOutputStore, openerFor } from './output.js';
import type { S3Options } from './s3.js';
import { crashPoint } from './crashpoints.js';
import { RHO_VERSION } from './version.js';
import { buildManifest, readCompletionRecords, type Manifest } from './manifest.js';
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
  /** Inputs changed since their units were scored: delete and rescore those units (else exit 2). */
  rescoreChanged?: boolean;
}

export interface RunSummary {
  output: string;
  manifest: Manifest;
  /** This run only (units skipped because they were already done are not counted here). */
  run: { units_written: number; units_skipped: number; units_other_rank: number; units_claimed_elsewhere: number; docs_in: number; scored: number; rejected: number; tokens: number; scored_tokens: number; wall_seconds: number; tokens_per_second: number; padding_fraction: number };
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
  checkNumericFlags({ context: cfg.context, stride: cfg.stride, threads: cfg.threads, 'lease-seconds': cfg.leaseSeconds, 'device-id': cfg.deviceId, rank: cfg.rank, 'world-size': cfg.worldSize },
    { context: 'positive-int', stride: 'positive-int', threads: 'positive-int', 'lease-seconds': 'positive', 'device-id': 'nonneg-int', rank: 'nonneg-int', 'world-size': 'positive-int' });

  let shards: InputShard[];
  try {
    shards = await resolveInputs(cfg.inputs, cfg.s3);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  refuseInputsInsideOutput(shards, cfg.output);
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
  // Proven before anything is committed (_rho/config.json): the models load and run a full window, the
  // vocabularies fit, the fields exist in every shard.
  const deviceIds = cfg.device === 'cpu' ? [undefined] : (cfg.devices?.length ? cfg.devices : [cfg.deviceId ?? 0]);
  const scorers: Scorer[] = [];
  try {
    for (const deviceId of deviceIds) {
      scorers.push(await Scorer.open({ models: prepared, device: cfg.device, deviceId, intraOpThreads: cfg.threads ?? defaultThreads(cfg.device), tokenizerVocabSize: tokenizer.info.vocabSize }));
    }
    await probeContext(scorers[0], spec.contextTokens, prepared.map((p) => `${p.name} (${p.sourcePath})`).join(', '));
    await probeFields(shards, { textField: cfg.textField, idField: cfg.idField, s3: cfg.s3 });
  } catch (e) {
    await Promise.all(scorers.map((x) => x.close()));
    if (e instanceof ConfigError || e instanceof InputReadError) throw e;
    throw new ConfigError((e as Error).message);
  }
  const orClose = async <T>(p: Promise<T>): Promise<T> => {
    try {
      return await p;
    } catch (e) {
      await Promise.all(scorers.map((x) => x.close()));
      throw e;
    }
  };
  const configSha = sha256(new TextEncoder().encode(identityJson));
  await orClose(claimOutputDir(store, identityJson, cfg.overwrite));
  if (worldSize > 1) await orClose(checkWorldSize(store, { rank, worldSize, from: 'flags' }));

  // Only whole `.json` records count: a crash can leave a `*.tmp` that was never renamed into place.
  const doneRecords = (await orClose(readCompletionRecords(store))).filter((r) => r.config_sha256 === configSha);
  const done = new Set(doneRecords.map((r) => r.unit));
  // One shard, one spelling: the `source` its first units were written with.
  for (const s of shards) {
    const r = doneRecords.find((x) => x.unit.startsWith(`${s.key}/`));
    if (r) s.source = r.source;
  }
  const changes = await orClose(checkChangedInputs(store, shards, doneRecords, { rescoreChanged: cfg.rescoreChanged ?? false, s3: cfg.s3 }));
  for (const u of changes.removed) done.delete(u);
  const fingerprints: Map<string, InputFingerprint> = changes.fingerprints;

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

  // ---- the run ----
  const run = { units_written: 0, units_skipped: 0, units_other_rank: 0, units_claimed_elsewhere: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 };
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
  /** Shards whose bytes could not be read (transport): not done, not rejected. */
  const unreadable: InputReadError[] = [];

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
    const shard = shards.find((s) => s.key === u.id.key)!;
    meta.set(META.inputs, JSON.stringify([{ source: shard.source, bytes: shard.bytes }]));
    meta.set(META.unit, JSON.stringify({ source: u.id.source, part: u.id.part, first_row: u.firstRow, rows: u.items.length }));
    meta.set(META.all, combinedProvenance(meta));
    const bytes = encodeTable(scoredTable(scored, modelNames, cfg.entropy, spec, meta), cfg.format);
    const file = dataPath(u.id, cfg.format, cfg.partitionBy === 'shard');
    await store.writeAtomic(file, bytes);
    crashPoint('unit-data-written');
    let rejectsFile: string | null = null;
    if (rejects.length) {
      rejectsFile = rejectsPath(u.id);
      await store.writeAtomic(rejectsFile, new TextEncoder().encode(rejects.map((r) => JSON.stringify(r)).join('\n') + '\n'));
      crashPoint('unit-rejects-written');
    }
    const tokens = scored.reduce((a, d) => a + d.tokenIds.length, 0);
    const record: CompletionRecord = {
      unit: unitName(u.id), source: u.id.source, part: u.id.part, first_row: u.firstRow,
      docs_in: u.items.length, scored: scored.length, rejected: rejects.length, tokens, scored_tokens: scoredTokens,
      file, bytes: bytes.length, sha256: sha256(bytes), rejects_file: rejectsFile, config_sha256: configSha,
      input: fingerprints.get(shard.key),
    };
    await store.writeAtomic(donePath(u.id), new TextEncoder().encode(JSON.stringify(record, null, 2) + '\n'));
    crashPoint('unit-record-written');
    await claims.finish(unitName(u.id));
    for (const it of u.items) if (it.kind === 'doc') docs.delete(it.st!.doc.docSeq);
    u.items = [];
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
      try {
      // What this shard's units are scored from (a rerun compares it: changed inputs are refused or rescored).
      if (!fingerprints.has(shard.key)) fingerprints.set(shard.key, await fingerprint(shard.source, cfg.s3));
      for await (const item of readShard(shard.source, { textField: cfg.textField, idField: cfg.idField }, opener)) {
        if (failure) throw failure;
        const row = item.kind === 'doc' ? item.doc.row : item.reject.row;
        const part = Math.floor(row / cfg.unitDocs);
        await closeBefore(part);
        if (skippedParts.has(part)) continue;
        let unit = open.get(part);
        if (!unit) {
          const id = { source: shard.source, part, key: shard.key };
          const name = unitName(id);
          const skip = done.has(name) ? 'done'
            : ownerOf(name, worldSize) !== rank ? 'rank'
            : !(await claims.acquire(name)) ? 'claimed'
            // Finished by another runner since this one started (its claim is gone once it is done).
            : (await store.exists(donePath(id))) ? (await claims.finish(name), 'done')
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
      } catch (e) {
        if (!(e instanceof InputReadError)) throw e;
        // The bytes could not be read: the shard's open units are abandoned (never written, no rejects, no
        // record; their claims are released as failed at the end), other shards go on, the run exits 1.
        await flushChunk();
        open.clear();
        unreadable.push(e);
        process.stderr.write(`rho: ${e.message}\n`);
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

  if (unreadable.length) await claims.releaseAll(unreadable.map((e) => e.message).join('; '));
  const manifest = await buildManifest(store, {
    provenance: Object.fromEntries(provenance),
    inputs: shards,
    configSha,
    runMeta: { wall_seconds: progress.elapsedSeconds() },
  });
  crashPoint('manifest');
  await store.writeAtomic(LAYOUT.manifest, new TextEncoder().encode(JSON.stringify(manifest, null, 2) + '\n'));
  const wall = scoringSeconds;
  const summary: RunSummary = {
    output: store.root,
    manifest,
    run: { ...run, wall_seconds: wall, tokens_per_second: run.scored_tokens / wall, padding_fraction: paddedPositions ? 1 - realPositions / paddedPositions : 0 },
  };
  if (unreadable.length) throw Object.assign(new IncompleteRunError(unreadable), { summary });
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
