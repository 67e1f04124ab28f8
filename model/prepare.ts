// Model preparation: add per-token log-prob (and optionally entropy) outputs to an ONNX causal LM, so that only [B,T]
// floats leave the runtime. The prepared model is cached by the sha256 of the .onnx file.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { buildChunkedHead, findHead, type HeadPlan, type WorkNode } from './chunked-head.js';
import {
  DataType,
  decodeGraph,
  decodeModelGraph,
  editModel,
  encodeNode,
  encodeValueInfo,
  summarizeModel,
  type GraphEdit,
  type InitializerInfo,
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
  /**
   * The longest window the model takes: the smallest of config.json's max_position_embeddings / n_positions /
   * max_seq_len, the rows of a learned position table indexed by position_ids, and a static sequence dim; else null.
   */
  maxContext: number | null;
  /** Where maxContext comes from, in words ("config.json max_position_embeddings", "position table ..."). */
  maxContextSource: string | null;
  /** Model dimensions read from the graph (and config.json), for the memory budget; null where unknown. */
  dims: { vocab: number | null; hidden: number | null; layers: number | null; heads: number | null };
  /** How the scores are computed: over vocabulary slices (no [B,T,V] tensor), or the model's own full head. */
  head:
    | { kind: 'chunked'; sliceVocab: number | null; sliceElements: number; mode: 'loop' | 'unrolled'; description: string }
    | { kind: 'full'; reason: string };
  inputs: {
    inputIds: string;
    /** Element type of input_ids (and of attention_mask / position_ids where present) as the model declares it. */
    idsType: 'int64' | 'int32';
    maskType: 'int64' | 'int32';
    positionType: 'int64' | 'int32';
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
  /** 'chunked' (default): vocabulary slices where the head is recognisable; 'full': the model's own head. */
  head?: 'chunked' | 'full';
  /** Vocabulary entries per slice, fixed. Default: chosen at run time so [tokens, slice] stays within DEFAULT_SLICE_ELEMENTS. */
  sliceVocab?: number;
  /** Values per [tokens, slice] tensor when the slice is chosen at run time (default DEFAULT_SLICE_ELEMENTS). */
  sliceElements?: number;
  /** Slices inside one Loop node (default) or unrolled. */
  sliceMode?: 'loop' | 'unrolled';
}

/**
 * The chunked head's slice is chosen at run time so that one [tokens, slice] float32 tensor holds at most this many
 * values (64 MiB): about three such tensors are live at once, whatever the vocabulary and the batch.
 */
export const DEFAULT_SLICE_ELEMENTS = 16 * 1024 * 1024;
/** ...but never fewer than this many vocabulary entries per slice (per-slice overhead), nor more than V. */
export const MIN_SLICE_VOCAB = 1024;
/** Fixed slice size of the unrolled variant when none is given. */
export const DEFAULT_SLICE_VOCAB = 8192;
/** Bumped whenever the prepared graph changes, so cached prepared models of older rho versions are not reused. */
const PREPARE_VERSION = 2;

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

async function readConfig(modelPath: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await fsp.readFile(path.join(path.dirname(modelPath), 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return null; // no or unreadable config.json
  }
}

function readMaxContext(cfg: Record<string, unknown> | null, inputIds: ValueInfo, positionTable: number | null): { value: number | null; source: string | null } {
  const found: { value: number; source: string }[] = [];
  for (const k of ['max_position_embeddings', 'n_positions', 'max_seq_len']) {
    const v = cfg?.[k];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) {
      found.push({ value: v, source: `config.json ${k}` });
      break;
    }
  }
  if (positionTable !== null) found.push({ value: positionTable, source: `the model's learned position table (${positionTable} rows)` });
  const d = inputIds.dims?.[1];
  if (typeof d === 'number' && d > 0) found.push({ value: d, source: `the model's static sequence length` });
  if (!found.length) return { value: null, source: null };
  return found.reduce((a, b) => (b.value < a.value ? b : a));
}

function configInt(cfg: Record<string, unknown> | null, keys: string[]): number | null {
  for (const k of keys) {
    const v = cfg?.[k];
    if (typeof v === 'number' && Number.isInteger(v) && v > 0) return v;
  }
  return null;
}

/** Rows of a learned position table: a Gather on a 2-D constant indexed by position_ids (through Cast/Identity). */
function findPositionTable(nodes: WorkNode[], inits: Map<string, InitializerInfo>, positionIds: string | null): number | null {
  if (!positionIds) return null;
  const derived = new Set([positionIds]);
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of nodes) {
      if ((n.opType === 'Cast' || n.opType === 'Identity') && derived.has(n.inputs[0]!) && !derived.has(n.outputs[0]!)) {
        derived.add(n.outputs[0]!);
        changed = true;
      }
    }
  }
  const producer = new Map<string, WorkNode>();
  for (const n of nodes) for (const o of n.outputs) producer.set(o, n);
  const dimsOf = (name: string): number[] | null => {
    const i = inits.get(name);
    if (i) return i.dims;
    const p = producer.get(name);
    return p && (p.opType === 'Cast' || p.opType === 'Identity') ? dimsOf(p.inputs[0]!) : null;
  };
  let rows: number | null = null;
  for (const n of nodes) {
    if (n.opType !== 'Gather' || !derived.has(n.inputs[1]!) || (n.attrs.get('axis')?.i ?? 0) !== 0) continue;
    const d = dimsOf(n.inputs[0]!);
    if (d && d.length === 2) rows = rows === null ? d[0]! : Math.min(rows, d[0]!);
  }
  return rows;
}

function elemTypeName(t: number): 'float32' | 'float16' | 'bfloat16' | null {
  return t === DataType.FLOAT ? 'float32' : t === DataType.FLOAT16 ? 'float16' : t === DataType.BFLOAT16 ? 'bfloat16' : null;
}

interface Analysis {
  modelPath: string;
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
  const intType = (name: string, what: string): 'int64' | 'int32' => {
    const t = byName.get(name)?.elemType;
    if (t === undefined || t === 0 || t === DataType.INT64) return 'int64';
    if (t === DataType.INT32) return 'int32';
    throw new Error(`model ${modelPath}: ${what} ${name} has element type ${t}; rho feeds int64 or int32`);
  };
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
    modelPath,
    summary,
    logits,
    logitsType,
    inputIds,
    opset,
    inputs: {
      inputIds: 'input_ids',
      idsType: intType('input_ids', 'input'),
      maskType: byName.has('attention_mask') ? intType('attention_mask', 'input') : 'int64',
      positionType: byName.has('position_ids') ? intType('position_ids', 'input') : 'int64',
      attentionMask: byName.has('attention_mask') ? 'attention_mask' : null,
      positionIds: byName.has('position_ids') ? 'position_ids' : null,
      useCacheBranch: byName.has('use_cache_branch') ? 'use_cache_branch' : null,
      past,
    },
  };
}

/** The full head: log-softmax over the model's own [B, T, V] logits, then the target's entry (and the entropy). */
function buildFullHead(a: { opset: number; logitsType: PreparedModel['logitsType'] }, entropy: boolean): NodeSpec[] {
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
  return nodes;
}

/** The input and outputs the prepared graph adds (every original output is dropped). */
function scoringIO(a: { inputIds: ValueInfo }, entropy: boolean) {
  const d0 = a.inputIds.dims?.[0];
  const d1 = a.inputIds.dims?.[1];
  const bt: (number | string)[] = [
    d0 !== undefined && d0 !== '?' ? d0 : 'rho_batch',
    d1 !== undefined && d1 !== '?' ? d1 : 'rho_sequence',
  ];
  const outputs = [encodeValueInfo(RHO_LOGPROB, DataType.FLOAT, bt)];
  if (entropy) outputs.push(encodeValueInfo(RHO_ENTROPY, DataType.FLOAT, bt));
  outputs.push(encodeValueInfo(RHO_VOCAB, DataType.INT64, [1]));
  return { addInputs: [encodeValueInfo(RHO_TARGET, DataType.INT64, bt)], addOutputs: outputs };
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

  const cfg = await readConfig(sourcePath);
  const plan = planPreparation(model, a, opts);
  if (plan.head.kind === 'full' && opts.head !== 'full' && !fallbackNoted.has(sha256)) {
    fallbackNoted.add(sha256);
    process.stderr.write(`rho: model ${opts.name} (${sourcePath}): LM head not recognised (${plan.head.reason}); scoring with the model's full head, whose memory grows with the vocabulary\n`);
  }
  const headTag = plan.head.kind === 'chunked' ? `c${plan.head.sliceVocab ?? `e${plan.head.sliceElements}`}${plan.head.mode === 'loop' ? 'l' : 'u'}` : 'full';
  const tag = `${opts.entropy ? 'e' : 'n'}-p${PREPARE_VERSION}${headTag}`;
  let build: Uint8Array | null = null;
  const prepared = () => (build ??= editModel(model, plan.edit));
  const mc = readMaxContext(cfg, a.inputIds, plan.positionTable);

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
    maxContext: mc.value,
    maxContextSource: mc.source,
    dims: {
      vocab: plan.vocab ?? configInt(cfg, ['vocab_size', 'n_vocab', 'padded_vocab_size']),
      hidden: plan.hidden ?? configInt(cfg, ['hidden_size', 'n_embd', 'd_model']),
      layers: configInt(cfg, ['num_hidden_layers', 'n_layer', 'num_layers']),
      heads: configInt(cfg, ['num_attention_heads', 'n_head']),
    },
    head: plan.head,
    inputs: plan.inputs,
    entropy: opts.entropy,
  };
}

const fallbackNoted = new Set<string>();

interface Plan {
  edit: GraphEdit;
  head: PreparedModel['head'];
  inputs: PreparedModel['inputs'];
  vocab: number | null;
  hidden: number | null;
  positionTable: number | null;
}

/**
 * Decide the graph edit: inline optimum's merged-decoder If (rho always takes the no-past branch), then replace the
 * head by the chunked head where it is recognisable, else append the full-head scoring nodes.
 */
function planPreparation(model: Uint8Array, a: Analysis, opts: PrepareOptions): Plan {
  const g = decodeModelGraph(model);
  let work: WorkNode[] = g.nodes.map((n) => ({ ...n, inlined: false }));
  const inits = new Map(g.initializers);
  const addInitializers: Uint8Array[] = [];
  const dropNodes = new Set<number>();
  let inputs = a.inputs;
  let dropInput: ((name: string) => boolean) | undefined;
  const ifNode = a.inputs.useCacheBranch
    ? work.find((n) => n.opType === 'If' && n.inputs[0] === a.inputs.useCacheBranch && n.outputs.includes(LOGITS))
    : undefined;
  const elseBranch = ifNode?.attrs.get('else_branch')?.g;
  if (ifNode && elseBranch) {
    // optimum's merged decoder: then = with past, else = without. rho feeds no past, so the prepared graph is the else
    // branch alone: its nodes and initializers move into the main graph, and use_cache_branch / past_* stop being inputs.
    const sub = decodeGraph(elseBranch);
    if (sub.outputs.length !== ifNode.outputs.length) {
      throw new Error(`model ${a.modelPath}: the If node "${ifNode.name}" has ${ifNode.outputs.length} outputs but its else branch ${sub.outputs.length}`);
    }
    dropNodes.add(ifNode.index);
    work = work.filter((n) => n !== ifNode);
    for (const n of sub.nodes) work.push({ ...n, inlined: true });
    ifNode.outputs.forEach((o, i) => {
      const so = sub.outputs[i]!.name;
      if (o && so !== o) {
        const spec: NodeSpec = { opType: 'Identity', name: `rho_inline_${i}`, inputs: [so], outputs: [o] };
        work.push({ index: -1, opType: 'Identity', domain: '', name: spec.name, inputs: spec.inputs, outputs: spec.outputs, attrs: new Map(), bytes: encodeNode(spec), inlined: true });
      }
    });
    for (const [name, init] of sub.initializers) {
      inits.set(name, init);
      addInitializers.push(init.bytes);
    }
    const gone = new Set([a.inputs.useCacheBranch!, ...a.inputs.past.map((x) => x.name)]);
    dropInput = (name) => gone.has(name);
    inputs = { ...inputs, useCacheBranch: null, past: [] };
  }
  const positionTable = findPositionTable(work, inits, inputs.positionIds);
  const found = opts.head === 'full' ? { reason: 'full head requested' } : findHead(work, inits, a.summary.inputs, LOGITS);
  const io = scoringIO(a, opts.entropy);
  const base = { dropOutput: () => true, dropInput, addInitializers, addInputs: io.addInputs, addOutputs: io.addOutputs };
  if ('reason' in found) {
    const nodes = [...work.filter((n) => n.inlined).map((n) => n.bytes), ...buildFullHead(a, opts.entropy).map(encodeNode)];
    return { edit: { ...base, dropNodes, addNodes: nodes }, head: { kind: 'full', reason: found.reason }, inputs, vocab: null, hidden: null, positionTable };
  }
  const plan: HeadPlan = found;
  const mode = opts.sliceMode ?? 'loop';
  const sliceVocab = opts.sliceVocab ?? (mode === 'unrolled' ? DEFAULT_SLICE_VOCAB : null);
  if (sliceVocab !== null && (!Number.isInteger(sliceVocab) || sliceVocab < 1)) throw new Error(`slice size must be a positive integer (got ${sliceVocab})`);
  const sliceElements = opts.sliceElements ?? DEFAULT_SLICE_ELEMENTS;
  const dropped = new Set(plan.drop);
  for (const n of plan.drop) if (!n.inlined) dropNodes.add(n.index);
  const head = buildChunkedHead(plan, { opset: a.opset, entropy: opts.entropy, sliceVocab, sliceElements, minSlice: MIN_SLICE_VOCAB, mode, target: RHO_TARGET, logprob: RHO_LOGPROB, entropyOut: RHO_ENTROPY, vocabOut: RHO_VOCAB });
  const nodes = [...work.filter((n) => n.inlined && !dropped.has(n)).map((n) => n.bytes), ...head.map(encodeNode)];
  return {
    edit: { ...base, dropNodes, addNodes: nodes },
    head: { kind: 'chunked', sliceVocab, sliceElements, mode, description: plan.description },
    inputs,
    vocab: plan.vocab,
    hidden: plan.hiddenSize,
    positionTable,
  };
}
