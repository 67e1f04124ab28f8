// The memory budget: from a budget (default: a stated fraction of RAM, or of the GPU's memory), the model's dimensions
// and the context C, derive the batch size in tokens when --batch-tokens is not given, and refuse a configuration whose
// single window cannot fit, with the numbers, before any work.
//
// The estimate is deliberately simple and errs high: weights (twice: the file as read and the runtime's tensors),
// a fixed runtime overhead, the head's working set, and per token the activations of one layer (the runtime reuses
// buffers between layers when scoring), attention scores over the window, and for the full head the [tokens, V] logits
// plus their log-softmax.

import { spawnSync } from 'node:child_process';
import { totalmem } from 'node:os';

/** Default budget on CPU: this fraction of the machine's RAM. */
export const CPU_BUDGET_FRACTION = 0.5;
/** Default budget on a GPU: this fraction of the device's memory. */
export const GPU_BUDGET_FRACTION = 0.8;
/** Batch size in tokens on CPU when --batch-tokens is not given (measured optimum, see docs/bench.md). */
export const CPU_BATCH_TOKENS = 1024;
/** Largest batch the GPU rule picks by itself. */
export const GPU_MAX_BATCH_TOKENS = 65536;
/** Runtime, Node and tokenizer overhead outside the model. */
export const BASE_BYTES = 256 * 1024 ** 2;

export interface ModelMemory {
  /** Model name (for messages). */
  name: string;
  vocab: number;
  hidden: number;
  layers: number;
  /** Attention heads (per layer); hidden / 64 when unknown. */
  heads?: number;
  /** Bytes of the weights (.onnx plus external data). */
  weightBytes: number;
  head: { kind: 'chunked'; sliceElements: number } | { kind: 'full' };
}

export interface MemoryPlan {
  budgetBytes: number;
  /** Where the budget comes from, in words. */
  budgetSource: string;
  batchTokens: number;
  /** Where the batch size comes from, in words. */
  batchSource: string;
  /** Estimated bytes independent of the batch (weights, runtime, head working set). */
  fixedBytes: number;
  /** Estimated bytes per token of a batch, at this context. */
  perTokenBytes: number;
  /** Estimated peak for one batch of batchTokens. */
  estimateBytes: number;
}

export class MemoryBudgetError extends Error {}

export const gib = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

/** "8GiB", "8G", "512MiB", "512M", "2.5GB", a plain number of bytes; or a fraction "0.5" / "50%" of the default base. */
export function parseMemoryBudget(s: string, baseBytes: number): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*(%|[kmgt]i?b?|b)?\s*$/i.exec(s);
  if (!m) throw new MemoryBudgetError(`--memory-budget "${s}": give bytes with a unit (e.g. 8GiB, 512MiB) or a fraction of memory (0.5 or 50%)`);
  const v = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  let bytes: number;
  if (unit === '%') bytes = (v / 100) * baseBytes;
  else if (unit === '' && v <= 1) bytes = v * baseBytes;
  else {
    const k = unit[0] ?? 'b';
    const pow = { b: 0, k: 1, m: 2, g: 3, t: 4 }[k as 'b' | 'k' | 'm' | 'g' | 't'] ?? 0;
    bytes = v * (unit.includes('i') || unit.length === 1 ? 1024 : 1000) ** pow;
  }
  if (!(bytes > 0)) throw new MemoryBudgetError(`--memory-budget "${s}" is not a positive amount`);
  return Math.floor(bytes);
}

/** Total memory of GPU `deviceId` from nvidia-smi, or null when it cannot be asked. */
export function gpuMemoryBytes(deviceId = 0): number | null {
  try {
    const r = spawnSync('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits', `--id=${deviceId}`], { encoding: 'utf8', timeout: 5000 });
    const mib = Number(r.stdout?.trim().split('\n')[0]);
    return r.status === 0 && mib > 0 ? mib * 1024 ** 2 : null;
  } catch {
    return null;
  }
}

/** Estimated bytes: fixed part and per token, for windows of `context` tokens. */
export function estimate(m: ModelMemory, context: number): { fixed: number; perToken: number } {
  const heads = m.heads ?? Math.max(1, Math.round(m.hidden / 64));
  const f32 = 4;
  const head = m.head.kind === 'chunked' ? 3 * m.head.sliceElements * f32 : 0;
  const fixed = BASE_BYTES + 2 * m.weightBytes + head;
  // One layer's activations (residual, norms, q/k/v, attention output, MLP up/gate/down at ~4x hidden): ~24 hidden
  // values per token, kept with some slack; attention scores and their softmax: 2 x heads x context per token.
  let perToken = f32 * (24 * m.hidden + 2 * heads * context);
  if (m.head.kind === 'full') perToken += 2 * f32 * m.vocab; // logits + log-softmax
  return { fixed, perToken };
}

export interface PlanInput {
  models: ModelMemory[];
  context: number;
  device: 'cpu' | 'cuda' | 'webgpu';
  /** --memory-budget as given, or undefined for the default. */
  budget?: string;
  /** --batch-tokens as given. */
  batchTokens?: number;
  /** For tests: RAM and GPU memory. */
  ramBytes?: number;
  gpuBytes?: number | null;
}

/** The default budget for a device, in bytes, with its source in words. */
export function defaultBudget(device: PlanInput['device'], ramBytes = totalmem(), gpuBytes?: number | null): { bytes: number; source: string; base: number } {
  if (device !== 'cpu') {
    const g = gpuBytes === undefined ? gpuMemoryBytes() : gpuBytes;
    if (g) return { bytes: Math.floor(GPU_BUDGET_FRACTION * g), source: `${GPU_BUDGET_FRACTION * 100}% of the GPU's ${gib(g)}`, base: g };
    return { bytes: Math.floor(CPU_BUDGET_FRACTION * ramBytes), source: `${CPU_BUDGET_FRACTION * 100}% of RAM (${gib(ramBytes)}; GPU memory unknown: nvidia-smi not found, give --memory-budget)`, base: ramBytes };
  }
  return { bytes: Math.floor(CPU_BUDGET_FRACTION * ramBytes), source: `${CPU_BUDGET_FRACTION * 100}% of RAM (${gib(ramBytes)})`, base: ramBytes };
}

/**
 * The largest context that fits the budget with a batch of one window (for capping a context taken from config.json),
 * or 0 if not even the fixed part fits.
 */
export function maxContextFor(input: Omit<PlanInput, 'context' | 'batchTokens'>, budgetBytes: number): number {
  let lo = 0;
  let hi = 1 << 22;
  const fits = (c: number) => input.models.reduce((a, m) => {
    const e = estimate(m, c);
    return a + e.fixed + e.perToken * c;
  }, 0) <= budgetBytes;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Decide the batch size and check that one window fits; throws MemoryBudgetError with the numbers when it cannot. */
export function planMemory(input: PlanInput): MemoryPlan {
  const def = defaultBudget(input.device, input.ramBytes, input.gpuBytes);
  const budgetBytes = input.budget === undefined ? def.bytes : parseMemoryBudget(input.budget, def.base);
  const budgetSource = input.budget === undefined ? def.source : `--memory-budget ${input.budget}`;
  // Every model scores every batch, one after the other in the same worker: their fixed parts add up, and the
  // per-token part is the largest one (activations are freed between models).
  const ests = input.models.map((m) => ({ m, ...estimate(m, input.context) }));
  const fixedBytes = ests.reduce((a, e) => a + e.fixed, 0);
  const perTokenBytes = Math.max(...ests.map((e) => e.perToken));
  const C = input.context;
  const oneWindow = fixedBytes + perTokenBytes * C;
  if (oneWindow > budgetBytes) {
    const worst = ests.reduce((a, e) => (e.perToken > a.perToken ? e : a));
    throw new MemoryBudgetError(
      `one window of C = ${C} tokens needs about ${gib(oneWindow)} (weights and runtime ${gib(fixedBytes)}, ${gib(perTokenBytes * C)} of activations` +
        `${worst.m.head.kind === 'full' ? `, of which ${gib(8 * worst.m.vocab * C)} is the full head's [C, V=${worst.m.vocab}] logits and log-softmax` : ''})` +
        ` but the memory budget is ${gib(budgetBytes)} (${budgetSource}): lower --context, or raise --memory-budget`,
    );
  }
  const fit = Math.floor((budgetBytes - fixedBytes) / perTokenBytes);
  let batchTokens: number;
  let batchSource: string;
  if (input.batchTokens !== undefined) {
    batchTokens = input.batchTokens;
    batchSource = '--batch-tokens';
    const need = fixedBytes + perTokenBytes * Math.max(batchTokens, C);
    if (need > budgetBytes) {
      throw new MemoryBudgetError(
        `--batch-tokens ${batchTokens} needs about ${gib(need)} at C = ${C} but the memory budget is ${gib(budgetBytes)} (${budgetSource}): ` +
          `use --batch-tokens ${Math.max(C, Math.floor(fit / C) * C)} or less, or raise --memory-budget`,
      );
    }
  } else if (input.device === 'cpu') {
    batchTokens = Math.max(C, Math.min(CPU_BATCH_TOKENS, fit));
    batchSource = `CPU default ${CPU_BATCH_TOKENS}${batchTokens !== CPU_BATCH_TOKENS ? ` (${batchTokens < CPU_BATCH_TOKENS ? 'lowered to what the budget holds' : 'raised to one window'})` : ''}`;
  } else {
    batchTokens = Math.max(C, Math.min(GPU_MAX_BATCH_TOKENS, Math.floor(fit / C) * C));
    batchSource = `as many whole windows as the budget holds (at most ${GPU_MAX_BATCH_TOKENS} tokens)`;
  }
  return { budgetBytes, budgetSource, batchTokens, batchSource, fixedBytes, perTokenBytes, estimateBytes: fixedBytes + perTokenBytes * Math.max(batchTokens, C) };
}
