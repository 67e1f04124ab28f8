// Inference worker: one per device, one onnxruntime session per model, created once and reused.
// session.run blocks the event loop in onnxruntime-node 1.30, so it runs here, off the main thread.
// Requests are processed strictly in arrival order; every request gets exactly one reply (result or error).

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { PreparedModel } from '../model/prepare.js';

export interface WorkerModel {
  name: string;
  preparedPath: string;
  inputs: PreparedModel['inputs'];
  entropy: boolean;
}

export type WorkerRequest =
  | { type: 'init'; id: number; models: WorkerModel[]; device: 'cpu' | 'cuda' | 'webgpu'; deviceId?: number; intraOpThreads?: number }
  | { type: 'score'; id: number; rows: number; width: number; tokens: Int32Array; lengths: Int32Array }
  | { type: 'close'; id: number };

export interface WorkerScores {
  /** Raw graph outputs, [rows*width]: value at t is about token t+1. */
  logprob: Float32Array;
  entropy?: Float32Array;
  vocabSize: number;
  /** Only on a session's first run: how many graph nodes each execution provider ran (from onnxruntime's profile). */
  providers?: Record<string, number>;
}

export type WorkerReply =
  | { type: 'ok'; id: number }
  | { type: 'result'; id: number; scores: Record<string, WorkerScores> }
  | { type: 'error'; id: number; message: string; stack?: string };

export const CUDA_MISSING =
  'onnxruntime-node was installed without the CUDA provider: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci (needs CUDA 12 + cuDNN 9)';
export const WEBGPU_MISSING = 'the WebGPU execution provider could not start: it needs a Vulkan loader (libvulkan1) and a GPU driver';

interface Loaded {
  model: WorkerModel;
  session: ort.InferenceSession;
  /** Folder of the profile of the session's first run (which provider ran each node); null once read. */
  profileDir: string | null;
}

/** Nodes per execution provider in an onnxruntime profile (events of category "Node" carry args.provider). */
function providersOf(profileDir: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const f of readdirSync(profileDir).filter((n) => n.endsWith('.json'))) {
    for (const e of JSON.parse(readFileSync(join(profileDir, f), 'utf8')) as { cat?: string; args?: { provider?: string } }[]) {
      if (e.cat === 'Node' && e.args?.provider) counts[e.args.provider] = (counts[e.args.provider] ?? 0) + 1;
    }
  }
  return counts;
}

let sessions: Loaded[] = [];

async function init(req: Extract<WorkerRequest, { type: 'init' }>): Promise<void> {
  const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
  if (req.intraOpThreads !== undefined) opts.intraOpNumThreads = req.intraOpThreads;
  if (req.device === 'cuda') opts.executionProviders = [{ name: 'cuda', deviceId: req.deviceId ?? 0 }];
  else if (req.device === 'webgpu') opts.executionProviders = ['webgpu'];
  else opts.executionProviders = ['cpu'];
  for (const model of req.models) {
    let session: ort.InferenceSession;
    // Profiling is on for the first run only (ended right after it), to report the provider that ran each node.
    const profileDir = mkdtempSync(join(tmpdir(), 'rho-ep-'));
    try {
      session = await ort.InferenceSession.create(model.preparedPath, { ...opts, enableProfiling: true, profileFilePrefix: join(profileDir, 'run') });
    } catch (e) {
      const msg = (e as Error).message;
      if (req.device === 'cuda') throw new Error(`--device cuda failed for model ${model.name} (${model.preparedPath}): ${CUDA_MISSING}. onnxruntime said: ${msg}`);
      if (req.device === 'webgpu') throw new Error(`--device webgpu failed for model ${model.name} (${model.preparedPath}): ${WEBGPU_MISSING}. onnxruntime said: ${msg}`);
      throw new Error(`cannot load model ${model.name} (${model.preparedPath}): ${msg}`);
    } finally {
      if (!session!) rmSync(profileDir, { recursive: true, force: true });
    }
    sessions.push({ model, session, profileDir });
  }
}

export function feeds(m: WorkerModel, rows: number, width: number, tokens: Int32Array, lengths: Int32Array): Record<string, ort.Tensor> {
  const n = rows * width;
  const ids = new BigInt64Array(n);
  const mask = new BigInt64Array(n);
  const pos = new BigInt64Array(n);
  const target = new BigInt64Array(n);
  for (let b = 0; b < rows; b++) {
    const len = lengths[b]!;
    if (len < 0 || len > width) throw new Error(`batch row ${b} has length ${len} outside 0..${width}`);
    const o = b * width;
    for (let t = 0; t < width; t++) ids[o + t] = BigInt(tokens[o + t]!);
    for (let t = 0; t < len; t++) {
      mask[o + t] = 1n;
      pos[o + t] = BigInt(t);
      if (t + 1 < len) target[o + t] = BigInt(tokens[o + t + 1]!);
    }
  }
  const dims = [rows, width];
  // Models exported with int32 token inputs get int32 (the values are the same).
  const int = (type: 'int64' | 'int32' | undefined, x: BigInt64Array) => (type === 'int32' ? new ort.Tensor('int32', Int32Array.from(x, Number), dims) : new ort.Tensor('int64', x, dims));
  const f: Record<string, ort.Tensor> = { [m.inputs.inputIds]: int(m.inputs.idsType, ids), rho_target_ids: new ort.Tensor('int64', target, dims) };
  if (m.inputs.attentionMask) f[m.inputs.attentionMask] = int(m.inputs.maskType, mask);
  if (m.inputs.positionIds) f[m.inputs.positionIds] = int(m.inputs.positionType, pos);
  if (m.inputs.useCacheBranch) f[m.inputs.useCacheBranch] = new ort.Tensor('bool', new Uint8Array(1), [1]);
  for (const p of m.inputs.past) {
    // Empty past: batch dim = rows, symbolic (past length) dims = 0, numeric dims as declared.
    const pd = p.dims.map((d, i) => (i === 0 ? rows : typeof d === 'number' ? d : 0));
    f[p.name] = p.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), pd) : new ort.Tensor('float32', new Float32Array(0), pd);
  }
  return f;
}

async function score(req: Extract<WorkerRequest, { type: 'score' }>): Promise<{ scores: Record<string, WorkerScores>; transfer: ArrayBuffer[] }> {
  const scores: Record<string, WorkerScores> = {};
  const transfer: ArrayBuffer[] = [];
  for (const loaded of sessions) {
    const { model, session } = loaded;
    const out = await session.run(feeds(model, req.rows, req.width, req.tokens, req.lengths));
    let providers: Record<string, number> | undefined;
    if (loaded.profileDir) {
      session.endProfiling();
      providers = providersOf(loaded.profileDir);
      rmSync(loaded.profileDir, { recursive: true, force: true });
      loaded.profileDir = null;
    }
    const lp = out['rho_logprob'];
    const vs = out['rho_vocab_size'];
    if (!lp || !vs) throw new Error(`model ${model.name}: prepared graph did not return rho_logprob / rho_vocab_size`);
    const logprob = lp.data as Float32Array;
    const s: WorkerScores = { logprob, vocabSize: Number((vs.data as BigInt64Array)[0]) };
    if (providers) s.providers = providers;
    transfer.push(logprob.buffer as ArrayBuffer);
    if (model.entropy) {
      const ent = out['rho_entropy'];
      if (!ent) throw new Error(`model ${model.name}: prepared graph did not return rho_entropy`);
      s.entropy = ent.data as Float32Array;
      transfer.push(s.entropy.buffer as ArrayBuffer);
    }
    for (const t of Object.values(out)) if (t !== lp && t !== out['rho_entropy']) t.dispose?.();
    scores[model.name] = s;
  }
  return { scores, transfer: [...new Set(transfer)] };
}

async function handle(req: WorkerRequest): Promise<void> {
  const port = parentPort!;
  try {
    switch (req.type) {
      case 'init':
        await init(req);
        port.postMessage({ type: 'ok', id: req.id } satisfies WorkerReply);
        return;
      case 'score': {
        const { scores, transfer } = await score(req);
        port.postMessage({ type: 'result', id: req.id, scores } satisfies WorkerReply, transfer);
        return;
      }
      case 'close':
        for (const s of sessions) {
          await s.session.release();
          if (s.profileDir) rmSync(s.profileDir, { recursive: true, force: true });
        }
        sessions = [];
        port.postMessage({ type: 'ok', id: req.id } satisfies WorkerReply);
        return;
    }
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    port.postMessage({ type: 'error', id: req.id, message: err.message, stack: err.stack } satisfies WorkerReply);
  }
}

if (parentPort) {
  let chain: Promise<void> = Promise.resolve();
  parentPort.on('message', (req: WorkerRequest) => {
    chain = chain.then(() => handle(req));
  });
}
