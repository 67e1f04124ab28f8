// Model preparation: add per-token log-prob (and optionally entropy) outputs to an ONNX causal LM, so that only [B,T]
// floats leave the runtime. The prepared model is cached by the sha256 of the .onnx file.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import {
  DataType,
  editModel,
  encodeNode,
  encodeValueInfo,
  summarizeModel,
  type ModelSummary,
  type NodeSpec,
  type ValueInfo,
} from './onnx-wire.js';

export interface PreparedModel {
  name: string;
  sourcePath: string;
  /** sha256 of the .onnx file. */
  sha256: string;
  externalData: { path: string; bytes: number; sha256: string }[];
  preparedPath: string;
  logitsType: 'float32' | 'float16' | 'bfloat16';
  /** From config.json next to the model (max_position_embeddings / n_positions / max_seq_len) or a static sequence dim, else null. */
  maxContext: number | null;
  inputs: {
    inputIds: string;
    attentionMask: string | null;
    positionIds: string | null;
    useCacheBranch: string | null;
    past: { name: string; type: 'float32' | 'float16'; dims: (number | string)[] }[];
  };
  entropy: boolean;
}

export interface PrepareOptions {
  path: string;
  name: string;
  cacheDir: string;
  entropy: boolean;
}

/** Names of what the prepared graph adds. */
export const RHO_TARGET = 'rho_target_ids';
export const RHO_LOGPROB = 'rho_logprob';
export const RHO_ENTROPY = 'rho_entropy';
export const RHO_VOCAB = 'rho_vocab_size';

const LOGITS = 'logits';

async function sha256File(p: string): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(p)) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), bytes };
}

/**
 * sha256 of a (possibly huge) external data file, remembered in <cacheDir>/data-sha256/ keyed by path, size, mtime and
 * inode, so a multi-GB .onnx_data is streamed once, not at every start-up.
 */
async function cachedSha256(p: string, cacheDir: string): Promise<{ sha256: string; bytes: number }> {
  const st = await fsp.stat(p);
  const key = { path: p, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  const file = path.join(cacheDir, 'data-sha256', `${createHash('sha256').update(p).digest('hex').slice(0, 32)}.json`);
  try {
    const c = JSON.parse(await fsp.readFile(file, 'utf8')) as typeof key & { sha256: string };
    if (c.path === key.path && c.size === key.size && c.mtimeMs === key.mtimeMs && c.ino === key.ino && /^[0-9a-f]{64}$/.test(c.sha256)) {
      return { sha256: c.sha256, bytes: c.size };
    }
  } catch {
    // not cached yet
  }
  const h = await sha256File(p);
  try {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    await writeAtomic(file, new TextEncoder().encode(JSON.stringify({ ...key, sha256: h.sha256 })));
  } catch {
    // the cache is an optimisation only
  }
  return h;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}

/** Write via a temp file in the same folder + rename, so concurrent writers never expose a partial file. */
async function writeAtomic(p: string, data: Uint8Array): Promise<void> {
  const tmp = `${p}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, p);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

async function readMaxContext(modelPath: string, inputIds: ValueInfo): Promise<number | null> {
  try {
    const cfg = JSON.parse(await fsp.readFile(path.join(path.dirname(modelPath), 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['max_position_embeddings', 'n_positions', 'max_seq_len']) {
      const v = cfg[k];
      if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
    }
  } catch {
    // no or unreadable config.json: fall through
  }
  const d = inputIds.dims?.[1];
  return typeof d === 'number' && d > 0 ? d : null;
}

function elemTypeName(t: number): 'float32' | 'float16' | 'bfloat16' | null {
  return t === DataType.FLOAT ? 'float32' : t === DataType.FLOAT16 ? 'float16' : t === DataType.BFLOAT16 ? 'bfloat16' : null;
}

interface Analysis {
  summary: ModelSummary;
  logits: ValueInfo;
  logitsType: PreparedModel['logitsType'];
  inputIds: ValueInfo;
  inputs: PreparedModel['inputs'];
  opset: number;
}

function analyze(modelPath: string, summary: ModelSummary): Analysis {
  const logits = summary.outputs.find((o) => o.name === LOGITS);
  if (!logits) {
    throw new Error(
      `model ${modelPath} has no output named "logits" (outputs: ${summary.outputs.map((o) => o.name).join(', ') || 'none'}): ` +
        'export it with optimum (optimum-cli export onnx --task text-generation) or name the LM head output "logits"',
    );
  }
  // Models from IR < 4 list initializers among graph inputs: those are not feeds.
  const feeds = summary.inputs.filter((i) => !summary.initializerNames.has(i.name));
  const byName = new Map(feeds.map((i) => [i.name, i]));
  const inputIds = byName.get('input_ids');
  if (!inputIds) {
    throw new Error(
      `model ${modelPath} has no input named "input_ids" (inputs: ${feeds.map((i) => i.name).join(', ') || 'none'}): ` +
        'rho feeds input_ids [batch, sequence] int64; export the model with optimum or rename its token input',
    );
  }
  const logitsType = logits.elemType === 0 ? 'float32' : elemTypeName(logits.elemType);
  if (!logitsType) throw new Error(`model ${modelPath}: logits have unsupported element type ${logits.elemType} (need float32, float16 or bfloat16)`);
  const opset = summary.opset ?? 0;
  if (opset < 11) throw new Error(`model ${modelPath} uses opset ${opset}; rho needs opset >= 11 (GatherElements): re-export with a newer opset`);
  const past: PreparedModel['inputs']['past'] = [];
  const known = new Set(['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch']);
  for (const i of feeds) {
    if (known.has(i.name)) continue;
    if (/^past/.test(i.name)) {
      const type = i.elemType === DataType.FLOAT16 ? 'float16' : i.elemType === DataType.FLOAT ? 'float32' : null;
      if (!type || !i.dims) throw new Error(`model ${modelPath}: past input ${i.name} must be a float32/float16 tensor with a known rank`);
      past.push({ name: i.name, type, dims: i.dims });
      continue;
    }
    throw new Error(
      `model ${modelPath} has an input rho does not know how to feed: ${i.name} (known: input_ids, attention_mask, position_ids, use_cache_branch, past*)`,
    );
  }
  return {
    summary,
    logits,
    logitsType,
    inputIds,
    opset,
    inputs: {
      inputIds: 'input_ids',
      attentionMask: byName.has('attention_mask') ? 'attention_mask' : null,
      positionIds: byName.has('position_ids') ? 'position_ids' : null,
      useCacheBranch: byName.has('use_cache_branch') ? 'use_cache_branch' : null,
      past,
    },
  };
}

/** The nodes / inputs / outputs appended to the graph. */
export function buildScoringEdit(a: { opset: number; logitsType: PreparedModel['logitsType']; inputIds: ValueInfo }, entropy: boolean) {
  const axesAsInput = a.opset >= 13;
  const nodes: NodeSpec[] = [];
  const p = 'rho_';
  let logits = LOGITS;
  if (a.logitsType !== 'float32') {
    nodes.push({ opType: 'Cast', name: `${p}cast`, inputs: [LOGITS], outputs: [`${p}logits_f32`], attributes: [{ name: 'to', kind: 'int', value: DataType.FLOAT }] });
    logits = `${p}logits_f32`;
  }
  if (axesAsInput) {
    nodes.push({ opType: 'Constant', name: `${p}axes_last`, inputs: [], outputs: [`${p}axes_last`], attributes: [{ name: 'value', kind: 'tensorInt64', value: [-1], dims: [1] }] });
  }
  const axes = (op: string, name: string, inputs: string[], outputs: string[], extra: NodeSpec['attributes'] = []): NodeSpec =>
    axesAsInput
      ? { opType: op, name, inputs: [...inputs, `${p}axes_last`], outputs, attributes: extra }
      : { opType: op, name, inputs, outputs, attributes: [{ name: 'axes', kind: 'ints', value: [-1] }, ...extra] };
  nodes.push({ opType: 'LogSoftmax', name: `${p}lsm`, inputs: [logits], outputs: [`${p}lsm`], attributes: [{ name: 'axis', kind: 'int', value: -1 }] });
  nodes.push(axes('Unsqueeze', `${p}target_u`, [RHO_TARGET], [`${p}target_u`]));
  nodes.push({ opType: 'GatherElements', name: `${p}gather`, inputs: [`${p}lsm`, `${p}target_u`], outputs: [`${p}gathered`], attributes: [{ name: 'axis', kind: 'int', value: -1 }] });
  nodes.push(axes('Squeeze', `${p}squeeze`, [`${p}gathered`], [RHO_LOGPROB]));
  if (entropy) {
    nodes.push({ opType: 'Exp', name: `${p}exp`, inputs: [`${p}lsm`], outputs: [`${p}prob`] });
    nodes.push({ opType: 'Mul', name: `${p}plogp`, inputs: [`${p}prob`, `${p}lsm`], outputs: [`${p}plogp`] });
    nodes.push(axes('ReduceSum', `${p}sum`, [`${p}plogp`], [`${p}negent`], [{ name: 'keepdims', kind: 'int', value: 0 }]));
    nodes.push({ opType: 'Neg', name: `${p}neg`, inputs: [`${p}negent`], outputs: [RHO_ENTROPY] });
  }
  nodes.push({ opType: 'Shape', name: `${p}shape`, inputs: [LOGITS], outputs: [`${p}shape`] });
  nodes.push({ opType: 'Constant', name: `${p}idx_last`, inputs: [], outputs: [`${p}idx_last`], attributes: [{ name: 'value', kind: 'tensorInt64', value: [-1], dims: [1] }] });
  nodes.push({ opType: 'Gather', name: `${p}vocab`, inputs: [`${p}shape`, `${p}idx_last`], outputs: [RHO_VOCAB], attributes: [{ name: 'axis', kind: 'int', value: 0 }] });

  const d0 = a.inputIds.dims?.[0];
  const d1 = a.inputIds.dims?.[1];
  const bt: (number | string)[] = [
    d0 !== undefined && d0 !== '?' ? d0 : 'rho_batch',
    d1 !== undefined && d1 !== '?' ? d1 : 'rho_sequence',
  ];
  const outputs = [encodeValueInfo(RHO_LOGPROB, DataType.FLOAT, bt)];
  if (entropy) outputs.push(encodeValueInfo(RHO_ENTROPY, DataType.FLOAT, bt));
  outputs.push(encodeValueInfo(RHO_VOCAB, DataType.INT64, [1]));
  return {
    // Every original output (logits, present.*, anything else) is dropped: only [B,T] scores leave the runtime.
    dropOutput: () => true,
    addNodes: nodes.map(encodeNode),
    addInputs: [encodeValueInfo(RHO_TARGET, DataType.INT64, bt)],
    addOutputs: outputs,
  };
}

function isLinkUnsupported(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EXDEV' || code === 'EPERM' || code === 'EACCES' || code === 'ENOTSUP' || code === 'EMLINK' || code === 'EROFS';
}

/** Hard-link src to dst (atomically replacing dst when it is not already the same file). */
async function ensureHardLink(src: string, dst: string): Promise<void> {
  const s = await fsp.stat(src);
  try {
    const d = await fsp.stat(dst);
    if (d.ino === s.ino && d.dev === s.dev) return;
  } catch {
    // dst missing
  }
  await fsp.mkdir(path.dirname(dst), { recursive: true });
  const tmp = `${dst}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await fsp.link(src, tmp);
  try {
    await fsp.rename(tmp, dst);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

function checkLocation(modelPath: string, loc: string): void {
  if (path.isAbsolute(loc) || path.normalize(loc).split(path.sep).includes('..')) {
    throw new Error(`model ${modelPath}: external data location "${loc}" is absolute or leaves the model folder; onnxruntime refuses it: re-save the model with a relative location`);
  }
}

/**
 * Prepare a model for scoring: validate it, add rho_target_ids → rho_logprob (+ rho_entropy) and rho_vocab_size,
 * drop the original outputs, and cache the result under cacheDir (reused when present).
 */
export async function prepareModel(opts: PrepareOptions): Promise<PreparedModel> {
  const sourcePath = path.resolve(opts.path);
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(sourcePath);
  } catch (e) {
    throw new Error(`cannot read model file ${sourcePath}: ${(e as Error).message}. Check the model path (an .onnx file exported with optimum)`);
  }
  const model = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  let summary: ModelSummary;
  try {
    summary = summarizeModel(model);
  } catch (e) {
    throw new Error(`cannot parse ${sourcePath} as an ONNX model: ${(e as Error).message}`);
  }
  const a = analyze(sourcePath, summary);
  const sha256 = createHash('sha256').update(model).digest('hex');
  const modelDir = path.dirname(sourcePath);

  const locations = [...new Set(summary.externalData.map((x) => x.location))];
  const externalData: PreparedModel['externalData'] = [];
  for (const loc of locations) {
    checkLocation(sourcePath, loc);
    const p = path.join(modelDir, loc);
    try {
      const h = await cachedSha256(p, opts.cacheDir);
      externalData.push({ path: p, bytes: h.bytes, sha256: h.sha256 });
    } catch (e) {
      throw new Error(`model ${sourcePath}: cannot read its external data file ${p}: ${(e as Error).message}`);
    }
  }

  const tag = opts.entropy ? 'e' : 'n';
  let build: Uint8Array | null = null;
  const prepared = () => (build ??= editModel(model, buildScoringEdit(a, opts.entropy)));

  let preparedPath: string;
  if (locations.length === 0) {
    await fsp.mkdir(opts.cacheDir, { recursive: true });
    preparedPath = path.resolve(opts.cacheDir, `${sha256}-${tag}.onnx`);
    if (!(await exists(preparedPath))) await writeAtomic(preparedPath, prepared());
  } else {
    // External data must sit next to the prepared model under the same relative name. A folder per model keeps two
    // models whose data files share a name (model.onnx_data) apart.
    const dir = path.resolve(opts.cacheDir, sha256);
    preparedPath = path.join(dir, `${sha256}-${tag}.onnx`);
    try {
      await fsp.mkdir(dir, { recursive: true });
      for (const loc of locations) await ensureHardLink(path.join(modelDir, loc), path.join(dir, loc));
      if (!(await exists(preparedPath))) await writeAtomic(preparedPath, prepared());
    } catch (e) {
      if (!isLinkUnsupported(e)) throw e;
      // No hard links (other file system, no permission): write the prepared model next to the original instead.
      const base = path.basename(sourcePath).replace(/\.onnx$/, '');
      preparedPath = path.join(modelDir, `${base}.rho-${sha256.slice(0, 12)}-${tag}.onnx`);
      try {
        if (!(await exists(preparedPath))) await writeAtomic(preparedPath, prepared());
      } catch (e2) {
        throw new Error(
          `model ${sourcePath} keeps its weights in external data, which must sit next to the prepared model: ` +
            `hard-linking it into ${dir} failed (${(e as Error).message}) and writing ${preparedPath} next to the model failed (${(e2 as Error).message}). ` +
            'Put --cache-dir on the same file system as the model, or make the model folder writable.',
        );
      }
    }
  }

  return {
    name: opts.name,
    sourcePath,
    sha256,
    externalData,
    preparedPath,
    logitsType: a.logitsType,
    maxContext: await readMaxContext(sourcePath, a.inputIds),
    inputs: a.inputs,
    entropy: opts.entropy,
  };
}
