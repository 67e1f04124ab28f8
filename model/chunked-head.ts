// The chunked scoring head: recognise the LM head of a causal LM graph (projection onto the vocabulary, then an
// elementwise tail up to `logits`) and replace it, together with the log-softmax, by a computation over vocabulary
// slices, so that no [B, T, V] tensor exists in the prepared graph.
//
// Per slice k of the vocabulary: z_k = tail(h · W_k + b_k) as float32, m_k = max z_k, s_k = Σ exp(z_k - m_k) and, for
// the entropy, q_k = Σ exp(z_k - m_k)(z_k - m_k). Combined: M = max m_k, S = Σ s_k e^{m_k - M}, log Z = M + log S,
// H = log S - Σ_k e^{m_k - M}(q_k + (m_k - M) s_k) / S. The target's logit comes from the target's own weight row
// (Gather on the weight), through the same tail. Slices run inside one ONNX Loop (default), whose body the runtime
// cannot constant-fold, so weights are sliced at run time and never copied whole; or unrolled (K copies).

import { DataType, type AttrSpec, type GraphNode, type InitializerInfo, type NodeSpec, type ValueInfo, encodeGraph, encodeNode, encodeValueInfo } from './onnx-wire.js';

/** A node of the graph being prepared: an original node (dropped by index) or one inlined from an If branch. */
export interface WorkNode extends GraphNode {
  inlined: boolean;
}

/** One elementwise step between the projection and `logits`. */
export interface TailOp {
  opType: 'Cast' | 'Tanh' | 'Mul' | 'Div' | 'Add' | 'Sub';
  /** Cast target type. */
  to?: number;
  /** The constant operand of a binary op, and whether it comes first (c - z, c / z). */
  constant?: string;
  constantFirst?: boolean;
}

export interface HeadPlan {
  /** Input of the projection: [..., D]. */
  hidden: string;
  /** The weight as the graph holds it: 'rows' = [V, D] (tied embedding, Gemm transB), 'cols' = [D, V]. */
  weight: string;
  layout: 'rows' | 'cols';
  bias: string | null;
  vocab: number;
  hiddenSize: number;
  /** Element type of the projection (weight and hidden). */
  projType: number;
  tail: TailOp[];
  /** Nodes the chunked head makes dead (projection, bias, tail, the weight's Transpose). */
  drop: WorkNode[];
  /** Human-readable description, e.g. "MatMul(h, Transpose(embed.weight)) → Cast". */
  description: string;
}

const prod = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

class GraphIndex {
  producer = new Map<string, WorkNode>();
  consumers = new Map<string, WorkNode[]>();
  constructor(
    readonly nodes: WorkNode[],
    readonly inits: Map<string, InitializerInfo>,
    readonly inputs: ValueInfo[],
  ) {
    for (const n of nodes) {
      for (const o of n.outputs) if (o) this.producer.set(o, n);
      for (const i of n.inputs) if (i) (this.consumers.get(i) ?? this.consumers.set(i, []).get(i)!).push(n);
    }
  }

  /** Dims of a constant-ish value: an initializer, or Cast / Identity / Transpose(2-D) of one. */
  dims(name: string): number[] | null {
    const init = this.inits.get(name);
    if (init) return init.dims;
    const p = this.producer.get(name);
    if (!p) return null;
    if (p.opType === 'Cast' || p.opType === 'Identity') return this.dims(p.inputs[0]!);
    if (p.opType === 'Constant') return p.attrs.get('value')?.t?.dims ?? (p.attrs.has('value_float') ? [] : null);
    if (p.opType === 'Transpose') {
      const d = this.dims(p.inputs[0]!);
      const perm = p.attrs.get('perm')?.ints;
      if (d && d.length === 2 && (!perm || (perm[0] === 1 && perm[1] === 0))) return [d[1]!, d[0]!];
    }
    return null;
  }

  /** Element type of a value when it can be told from initializers, Casts and graph inputs; 0 if unknown. */
  elemType(name: string, depth = 0): number {
    const init = this.inits.get(name);
    if (init) return init.dataType;
    const gi = this.inputs.find((i) => i.name === name);
    if (gi) return gi.elemType;
    const p = this.producer.get(name);
    if (!p || depth > 64) return 0;
    if (p.opType === 'Cast') return p.attrs.get('to')?.i ?? 0;
    if (p.opType === 'Constant') return p.attrs.get('value')?.t?.dataType ?? (p.attrs.has('value_float') ? DataType.FLOAT : 0);
    if (['Identity', 'Transpose', 'MatMul', 'Gemm', 'Add', 'Sub', 'Mul', 'Div', 'Tanh', 'Reshape', 'Neg', 'Relu'].includes(p.opType)) {
      for (const i of p.inputs) {
        const t = i ? this.elemType(i, depth + 1) : 0;
        if (t) return t;
      }
    }
    return 0;
  }

  isScalarConstant(name: string): boolean {
    const d = this.dims(name);
    return d !== null && prod(d) === 1 && this.isConstant(name);
  }

  isConstant(name: string): boolean {
    if (this.inits.has(name)) return true;
    const p = this.producer.get(name);
    if (!p) return false;
    if (p.opType === 'Constant') return true;
    if (p.opType === 'Cast' || p.opType === 'Identity') return this.isConstant(p.inputs[0]!);
    return false;
  }
}

/** Find the LM head that ends in `logits`; a reason string when it is not one rho can slice. */
export function findHead(nodes: WorkNode[], inits: Map<string, InitializerInfo>, inputs: ValueInfo[], logits: string): HeadPlan | { reason: string } {
  const g = new GraphIndex(nodes, inits, inputs);
  const tail: TailOp[] = [];
  const chain: WorkNode[] = [];
  const desc: string[] = [];
  let cur = logits;
  let bias: string | null = null;
  let proj: WorkNode | null = null;
  for (let steps = 0; steps < 32 && !proj; steps++) {
    const p = g.producer.get(cur);
    if (!p) return { reason: `"${cur}" is not produced by a node` };
    if (p.domain && p.domain !== 'ai.onnx') return { reason: `${p.opType} (domain ${p.domain}) before ${logits}` };
    chain.push(p);
    switch (p.opType) {
      case 'Identity':
      case 'Reshape':
        // Shape-only steps: the chunked head works on [N, D] rows and reshapes its results to the target's shape.
        if (p.opType === 'Reshape') {
          desc.push('Reshape');
        }
        cur = p.inputs[0]!;
        continue;
      case 'Cast':
      case 'Tanh':
        tail.unshift(p.opType === 'Cast' ? { opType: 'Cast', to: p.attrs.get('to')?.i ?? 0 } : { opType: 'Tanh' });
        desc.push(p.opType);
        cur = p.inputs[0]!;
        continue;
      case 'Mul':
      case 'Div':
      case 'Add':
      case 'Sub': {
        const [a, b] = p.inputs as [string, string];
        if (p.opType === 'Add' && !bias && tail.length === 0) {
          // A bias vector [V] added to the projection's output (either operand order).
          const isProj = (x: string) => ['MatMul', 'Gemm'].includes(g.producer.get(x)?.opType ?? '');
          const isVec = (x: string) => g.isConstant(x) && (g.dims(x)?.length === 1 || (g.dims(x)?.length ?? 0) > 1 && g.dims(x)!.slice(0, -1).every((d) => d === 1));
          const pick = isProj(a) && isVec(b) ? [a, b] : isProj(b) && isVec(a) ? [b, a] : null;
          if (pick && g.dims(pick[1]!)!.length === 1) {
            bias = pick[1]!;
            desc.push('Add(bias)');
            cur = pick[0]!;
            continue;
          }
        }
        if (g.isScalarConstant(b)) {
          tail.unshift({ opType: p.opType, constant: b, constantFirst: false });
          cur = a;
        } else if (g.isScalarConstant(a)) {
          tail.unshift({ opType: p.opType, constant: a, constantFirst: true });
          cur = b;
        } else return { reason: `${p.opType} "${p.name}" before ${logits} has no scalar constant operand` };
        desc.push(p.opType);
        continue;
      }
      case 'MatMul':
      case 'Gemm':
        proj = p;
        break;
      default:
        return { reason: `${p.opType} "${p.name}" between the head and ${logits} is not an elementwise step rho can slice` };
    }
  }
  if (!proj) return { reason: `no MatMul/Gemm found within 32 steps before ${logits}` };
  const hidden = proj.inputs[0]!;
  let wValue = proj.inputs[1]!;
  let layout: 'rows' | 'cols';
  let transposeNode: WorkNode | null = null;
  if (proj.opType === 'Gemm') {
    const alpha = proj.attrs.get('alpha')?.f ?? 1;
    const beta = proj.attrs.get('beta')?.f ?? 1;
    if (alpha !== 1 || (beta !== 1 && proj.inputs[2])) return { reason: `Gemm "${proj.name}" has alpha/beta != 1` };
    if ((proj.attrs.get('transA')?.i ?? 0) !== 0) return { reason: `Gemm "${proj.name}" has transA` };
    layout = (proj.attrs.get('transB')?.i ?? 0) === 1 ? 'rows' : 'cols';
    if (proj.inputs[2]) {
      if (bias) return { reason: 'two biases' };
      bias = proj.inputs[2];
      if (!g.isConstant(bias) || g.dims(bias)?.length !== 1) return { reason: `Gemm "${proj.name}" bias is not a constant vector` };
    }
  } else {
    const tp = g.producer.get(wValue);
    const perm = tp?.attrs.get('perm')?.ints;
    if (tp && tp.opType === 'Transpose' && (!perm || (perm.length === 2 && perm[0] === 1 && perm[1] === 0)) && g.dims(tp.inputs[0]!)?.length === 2) {
      transposeNode = tp;
      wValue = tp.inputs[0]!;
      layout = 'rows';
    } else layout = 'cols';
  }
  const wd = g.dims(wValue);
  if (!wd || wd.length !== 2) return { reason: `the head weight "${wValue}" is not a 2-D initializer (or a Cast/Transpose of one)` };
  const [vocab, hiddenSize] = layout === 'rows' ? [wd[0]!, wd[1]!] : [wd[1]!, wd[0]!];
  if (bias && g.dims(bias)![0] !== vocab) return { reason: `bias "${bias}" has ${g.dims(bias)![0]} entries, the vocabulary ${vocab}` };
  const projType = g.elemType(wValue);
  if (projType !== DataType.FLOAT && projType !== DataType.FLOAT16 && projType !== DataType.BFLOAT16) {
    return { reason: `the head weight "${wValue}" has element type ${projType || 'unknown'} (need float32/float16/bfloat16)` };
  }
  // Drop what only the head used.
  const drop = [...chain];
  if (transposeNode && (g.consumers.get(transposeNode.outputs[0]!) ?? []).every((c) => c === proj)) drop.push(transposeNode);
  const dropSet = new Set(drop);
  for (const n of drop) {
    for (const o of n.outputs) {
      if (o === logits) continue;
      if ((g.consumers.get(o) ?? []).some((c) => !dropSet.has(c))) return { reason: `an intermediate of the head (${o}) is used elsewhere in the graph` };
    }
  }
  const wDesc = transposeNode ? `Transpose(${wValue})` : wValue;
  const description = `${proj.opType}(${hidden}, ${wDesc}${proj.opType === 'Gemm' ? `, transB=${layout === 'rows' ? 1 : 0}` : ''})${desc.reverse().map((d) => ` → ${d}`).join('')} → ${logits}`;
  return { hidden, weight: wValue, layout, bias, vocab, hiddenSize, projType, tail, drop, description };
}

export interface ChunkOptions {
  opset: number;
  entropy: boolean;
  /**
   * Vocabulary entries per slice, fixed; or null (Loop mode only): chosen at run time from the number of token rows N
   * so that one [N, slice] float32 tensor holds at most sliceElements values (slice clamped to [minSlice, V]).
   */
  sliceVocab: number | null;
  sliceElements: number;
  minSlice: number;
  mode: 'loop' | 'unrolled';
  /** Per-slice log-sum-exp: a LogSoftmax per slice (default, faster on CPU) or ReduceMax / Exp / ReduceSum. */
  lseBy?: 'logsoftmax' | 'reduce';
  /** Graph names. */
  target: string;
  logprob: string;
  entropyOut: string;
  vocabOut: string;
}

/** Nodes computing logprob (+ entropy) and the vocabulary size from the head plan. */
export function buildChunkedHead(plan: HeadPlan, o: ChunkOptions): NodeSpec[] {
  const p = 'rho_ch_';
  const nodes: NodeSpec[] = [];
  const c64 = (name: string, value: number[], dims: number[] = [value.length]): NodeSpec => ({
    opType: 'Constant', name, inputs: [], outputs: [name], attributes: [{ name: 'value', kind: 'tensorInt64', value, dims }],
  });
  // Reductions take axes as an input from opset 13 (ReduceSum) / 18 (ReduceMax); before that, as an attribute.
  const reduce = (out: NodeSpec[], op: 'ReduceSum' | 'ReduceMax', name: string, input: string, axis: number, output: string, axesConst: string) => {
    const asInput = op === 'ReduceSum' ? o.opset >= 13 : o.opset >= 18;
    const keep: AttrSpec = { name: 'keepdims', kind: 'int', value: 1 };
    out.push(asInput
      ? { opType: op, name, inputs: [input, axesConst], outputs: [output], attributes: [keep] }
      : { opType: op, name, inputs: [input], outputs: [output], attributes: [{ name: 'axes', kind: 'ints', value: [axis] }, keep] });
  };
  const castTo = (out: NodeSpec[], name: string, input: string, to: number): string => {
    out.push({ opType: 'Cast', name, inputs: [input], outputs: [name], attributes: [{ name: 'to', kind: 'int', value: to }] });
    return name;
  };
  /** Re-emit the tail on `input`; returns the float32 result. */
  const applyTail = (out: NodeSpec[], prefix: string, input: string): string => {
    let cur = input;
    let type = plan.projType;
    plan.tail.forEach((t, i) => {
      const name = `${prefix}tail${i}`;
      if (t.opType === 'Cast') {
        castTo(out, name, cur, t.to!);
        type = t.to!;
      } else if (t.opType === 'Tanh') out.push({ opType: 'Tanh', name, inputs: [cur], outputs: [name] });
      else out.push({ opType: t.opType, name, inputs: t.constantFirst ? [t.constant!, cur] : [cur, t.constant!], outputs: [name] });
      cur = name;
    });
    if (type !== DataType.FLOAT) cur = castTo(out, `${prefix}tail_f32`, cur, DataType.FLOAT);
    return cur;
  };

  // Rows of the hidden state, and the flattened targets.
  nodes.push(c64(`${p}hd_shape`, [-1, plan.hiddenSize]));
  nodes.push({ opType: 'Reshape', name: `${p}h2`, inputs: [plan.hidden, `${p}hd_shape`], outputs: [`${p}h2`] });
  nodes.push(c64(`${p}flat`, [-1]));
  nodes.push({ opType: 'Reshape', name: `${p}tflat`, inputs: [o.target, `${p}flat`], outputs: [`${p}tflat`] });
  nodes.push({ opType: 'Shape', name: `${p}tshape`, inputs: [o.target], outputs: [`${p}tshape`] });
  nodes.push(c64(`${p}ax1`, [1]));
  nodes.push(c64(`${p}ax0`, [0]));

  // The target's logit from its own weight row: dot(h, W[t]) (+ b[t]), accumulated in float32 and rounded to the
  // projection's type like the projection's own output, then the tail.
  if (plan.layout === 'rows') {
    nodes.push({ opType: 'Gather', name: `${p}wt`, inputs: [plan.weight, `${p}tflat`], outputs: [`${p}wt`], attributes: [{ name: 'axis', kind: 'int', value: 0 }] });
  } else {
    nodes.push({ opType: 'Gather', name: `${p}wtc`, inputs: [plan.weight, `${p}tflat`], outputs: [`${p}wtc`], attributes: [{ name: 'axis', kind: 'int', value: 1 }] });
    nodes.push({ opType: 'Transpose', name: `${p}wt`, inputs: [`${p}wtc`], outputs: [`${p}wt`], attributes: [{ name: 'perm', kind: 'ints', value: [1, 0] }] });
  }
  let hF = `${p}h2`;
  let wF = `${p}wt`;
  if (plan.projType !== DataType.FLOAT) {
    hF = castTo(nodes, `${p}h2_f32`, hF, DataType.FLOAT);
    wF = castTo(nodes, `${p}wt_f32`, wF, DataType.FLOAT);
  }
  nodes.push({ opType: 'Mul', name: `${p}hw`, inputs: [hF, wF], outputs: [`${p}hw`] });
  reduce(nodes, 'ReduceSum', `${p}zt_dot`, `${p}hw`, 1, `${p}zt_dot`, `${p}ax1`);
  let zt = `${p}zt_dot`;
  if (plan.projType !== DataType.FLOAT) zt = castTo(nodes, `${p}zt_proj`, zt, plan.projType);
  if (plan.bias) {
    nodes.push({ opType: 'Gather', name: `${p}bt`, inputs: [plan.bias, `${p}tflat`], outputs: [`${p}bt`], attributes: [{ name: 'axis', kind: 'int', value: 0 }] });
    nodes.push({ opType: 'Unsqueeze', name: `${p}bt_u`, inputs: o.opset >= 13 ? [`${p}bt`, `${p}ax1`] : [`${p}bt`], outputs: [`${p}bt_u`], attributes: o.opset >= 13 ? [] : [{ name: 'axes', kind: 'ints', value: [1] }] });
    nodes.push({ opType: 'Add', name: `${p}zt_b`, inputs: [zt, `${p}bt_u`], outputs: [`${p}zt_b`] });
    zt = `${p}zt_b`;
  }
  zt = applyTail(nodes, `${p}zt_`, zt); // [N, 1] float32

  /** One slice [start, end) of the vocabulary: m, s (and q) as [N, 1]. */
  const lseBy = o.lseBy ?? 'logsoftmax';
  /** One slice [start, end) of the vocabulary: m, s (and q) as [N, 1]; s null when every slice's sum is 1. */
  const slice = (out: NodeSpec[], q: string, start: string, end: string, ax0: string, ax1: string): { m: string; s: string | null; q: string | null } => {
    out.push({ opType: 'Slice', name: `${q}w`, inputs: [plan.weight, start, end, plan.layout === 'rows' ? ax0 : ax1], outputs: [`${q}w`] });
    const gemmIn = [`${p}h2`, `${q}w`];
    if (plan.bias) {
      out.push({ opType: 'Slice', name: `${q}b`, inputs: [plan.bias, start, end, ax0], outputs: [`${q}b`] });
      gemmIn.push(`${q}b`);
    }
    out.push({ opType: 'Gemm', name: `${q}z`, inputs: gemmIn, outputs: [`${q}z`], attributes: [{ name: 'transB', kind: 'int', value: plan.layout === 'rows' ? 1 : 0 }] });
    const z = applyTail(out, q, `${q}z`);
    if (lseBy === 'logsoftmax') {
      // One fused LogSoftmax per slice (the runtime's vectorised kernel): lse_k = z[:, 0] - lsm[:, 0]; the slice's
      // own sum is then 1 and q_k = Σ e^lsm · lsm.
      out.push({ opType: 'LogSoftmax', name: `${q}lsm`, inputs: [z], outputs: [`${q}lsm`], attributes: [{ name: 'axis', kind: 'int', value: -1 }] });
      out.push({ opType: 'Slice', name: `${q}z0`, inputs: [z, ax0, ax1, ax1], outputs: [`${q}z0`] });
      out.push({ opType: 'Slice', name: `${q}l0`, inputs: [`${q}lsm`, ax0, ax1, ax1], outputs: [`${q}l0`] });
      out.push({ opType: 'Sub', name: `${q}m`, inputs: [`${q}z0`, `${q}l0`], outputs: [`${q}m`] });
      let ql: string | null = null;
      if (o.entropy) {
        out.push({ opType: 'Exp', name: `${q}p`, inputs: [`${q}lsm`], outputs: [`${q}p`] });
        out.push({ opType: 'Mul', name: `${q}plp`, inputs: [`${q}p`, `${q}lsm`], outputs: [`${q}plp`] });
        reduce(out, 'ReduceSum', `${q}q`, `${q}plp`, 1, `${q}q`, ax1);
        ql = `${q}q`;
      }
      return { m: `${q}m`, s: null, q: ql };
    }
    reduce(out, 'ReduceMax', `${q}m`, z, 1, `${q}m`, ax1);
    out.push({ opType: 'Sub', name: `${q}d`, inputs: [z, `${q}m`], outputs: [`${q}d`] });
    out.push({ opType: 'Exp', name: `${q}ex`, inputs: [`${q}d`], outputs: [`${q}ex`] });
    reduce(out, 'ReduceSum', `${q}s`, `${q}ex`, 1, `${q}s`, ax1);
    let qs: string | null = null;
    if (o.entropy) {
      out.push({ opType: 'Mul', name: `${q}exd`, inputs: [`${q}ex`, `${q}d`], outputs: [`${q}exd`] });
      reduce(out, 'ReduceSum', `${q}q`, `${q}exd`, 1, `${q}q`, ax1);
      qs = `${q}q`;
    }
    return { m: `${q}m`, s: `${q}s`, q: qs };
  };

  if (o.sliceVocab === null && o.mode === 'unrolled') throw new Error('unrolled vocabulary slices need a fixed slice size');
  const K = o.sliceVocab === null ? Infinity : Math.ceil(plan.vocab / o.sliceVocab);
  let mAll: string;
  let sAll: string | null;
  let qAll: string | null = null;
  let axis: number;
  let axisConst: string;
  if (o.mode === 'unrolled' || K === 1) {
    const ms: string[] = [];
    const ss: string[] = [];
    const qs: string[] = [];
    const sv = o.sliceVocab!;
    for (let k = 0; k < K; k++) {
      const q = `${p}u${k}_`;
      nodes.push(c64(`${q}start`, [k * sv]));
      nodes.push(c64(`${q}end`, [Math.min(plan.vocab, (k + 1) * sv)]));
      const r = slice(nodes, q, `${q}start`, `${q}end`, `${p}ax0`, `${p}ax1`);
      ms.push(r.m);
      if (r.s) ss.push(r.s);
      if (r.q) qs.push(r.q);
    }
    const cat = (name: string, xs: string[]) => {
      nodes.push({ opType: 'Concat', name, inputs: xs, outputs: [name], attributes: [{ name: 'axis', kind: 'int', value: 1 }] });
      return name;
    };
    mAll = cat(`${p}m_all`, ms);
    sAll = ss.length ? cat(`${p}s_all`, ss) : null;
    if (o.entropy) qAll = cat(`${p}q_all`, qs);
    axis = 1;
    axisConst = `${p}ax1`;
  } else {
    const b = `${p}lb_`;
    // Slice size and trip count: fixed, or from N at run time (vs = clamp(sliceElements / N, minSlice, V),
    // K = ceil(V / vs)), so the head's memory does not grow with the batch either.
    if (o.sliceVocab !== null || o.opset < 12) {
      // Fixed (also below opset 12, where Max/Min take no integers).
      const sv = o.sliceVocab ?? o.minSlice * 8;
      nodes.push(c64(`${p}vs`, [sv]));
      nodes.push(c64(`${p}trips`, [Math.ceil(plan.vocab / sv)], []));
    } else {
      nodes.push({ opType: 'Shape', name: `${p}h2_shape`, inputs: [`${p}h2`], outputs: [`${p}h2_shape`] });
      nodes.push({ opType: 'Slice', name: `${p}n`, inputs: [`${p}h2_shape`, `${p}ax0`, `${p}ax1`, `${p}ax0`], outputs: [`${p}n`] });
      nodes.push(c64(`${p}one`, [1]));
      nodes.push({ opType: 'Max', name: `${p}n1`, inputs: [`${p}n`, `${p}one`], outputs: [`${p}n1`] });
      nodes.push(c64(`${p}elems`, [o.sliceElements]));
      nodes.push({ opType: 'Div', name: `${p}vs_raw`, inputs: [`${p}elems`, `${p}n1`], outputs: [`${p}vs_raw`] });
      nodes.push(c64(`${p}vs_min`, [Math.min(o.minSlice, plan.vocab)]));
      nodes.push(c64(`${p}vs_max`, [plan.vocab]));
      nodes.push({ opType: 'Max', name: `${p}vs_lo`, inputs: [`${p}vs_raw`, `${p}vs_min`], outputs: [`${p}vs_lo`] });
      nodes.push({ opType: 'Min', name: `${p}vs`, inputs: [`${p}vs_lo`, `${p}vs_max`], outputs: [`${p}vs`] });
      nodes.push(c64(`${p}vocab_m1`, [plan.vocab - 1]));
      nodes.push({ opType: 'Add', name: `${p}k_num`, inputs: [`${p}vocab_m1`, `${p}vs`], outputs: [`${p}k_num`] });
      nodes.push({ opType: 'Div', name: `${p}k1`, inputs: [`${p}k_num`, `${p}vs`], outputs: [`${p}k1`] });
      nodes.push(c64(`${p}scalar`, [], [0]));
      nodes.push({ opType: 'Reshape', name: `${p}trips`, inputs: [`${p}k1`, `${p}scalar`], outputs: [`${p}trips`] });
    }
    const body: NodeSpec[] = [];
    body.push(c64(`${b}ax0`, [0]));
    body.push(c64(`${b}ax1`, [1]));
    body.push({ opType: 'Mul', name: `${b}start`, inputs: [`${b}iter`, `${p}vs`], outputs: [`${b}start`] });
    body.push({ opType: 'Add', name: `${b}end`, inputs: [`${b}start`, `${p}vs`], outputs: [`${b}end`] });
    const r = slice(body, `${b}k_`, `${b}start`, `${b}end`, `${b}ax0`, `${b}ax1`);
    body.push({ opType: 'Identity', name: `${b}cond_out`, inputs: [`${b}cond`], outputs: [`${b}cond_out`] });
    const outs = [r.m, ...(r.s ? [r.s] : []), ...(r.q ? [r.q] : [])];
    const graph = encodeGraph({
      name: 'rho_vocab_slices',
      nodes: pruneConstants(body, outs).map(encodeNode),
      inputs: [encodeValueInfo(`${b}iter`, DataType.INT64, []), encodeValueInfo(`${b}cond`, DataType.BOOL, [])],
      outputs: [encodeValueInfo(`${b}cond_out`, DataType.BOOL, []), ...outs.map((x) => encodeValueInfo(x, DataType.FLOAT, null))],
    });
    mAll = `${p}m_all`;
    sAll = r.s ? `${p}s_all` : null;
    const loopOuts = [mAll, ...(sAll ? [sAll] : [])];
    if (o.entropy) loopOuts.push((qAll = `${p}q_all`));
    nodes.push({ opType: 'Loop', name: `${p}loop`, inputs: [`${p}trips`, ''], outputs: loopOuts, attributes: [{ name: 'body', kind: 'graph', value: graph }] });
    axis = 0; // scan outputs: [K, N, 1]
    axisConst = `${p}ax0`;
  }

  // Combine the slices.
  reduce(nodes, 'ReduceMax', `${p}M`, mAll, axis, `${p}M`, axisConst);
  nodes.push({ opType: 'Sub', name: `${p}dm`, inputs: [mAll, `${p}M`], outputs: [`${p}dm`] });
  nodes.push({ opType: 'Exp', name: `${p}w`, inputs: [`${p}dm`], outputs: [`${p}w`] });
  if (sAll) nodes.push({ opType: 'Mul', name: `${p}sw`, inputs: [sAll, `${p}w`], outputs: [`${p}sw`] });
  reduce(nodes, 'ReduceSum', `${p}S`, sAll ? `${p}sw` : `${p}w`, axis, `${p}S`, axisConst);
  nodes.push({ opType: 'Log', name: `${p}logS`, inputs: [`${p}S`], outputs: [`${p}logS`] });
  nodes.push({ opType: 'Add', name: `${p}lse`, inputs: [`${p}M`, `${p}logS`], outputs: [`${p}lse`] });
  nodes.push({ opType: 'Reshape', name: `${p}lse_n`, inputs: [`${p}lse`, `${p}flat`], outputs: [`${p}lse_n`] });
  nodes.push({ opType: 'Reshape', name: `${p}zt_n`, inputs: [zt, `${p}flat`], outputs: [`${p}zt_n`] });
  nodes.push({ opType: 'Sub', name: `${p}lp`, inputs: [`${p}zt_n`, `${p}lse_n`], outputs: [`${p}lp`] });
  nodes.push({ opType: 'Reshape', name: `${p}lp_out`, inputs: [`${p}lp`, `${p}tshape`], outputs: [o.logprob] });
  if (o.entropy && qAll) {
    if (sAll) nodes.push({ opType: 'Mul', name: `${p}dms`, inputs: [`${p}dm`, sAll], outputs: [`${p}dms`] });
    nodes.push({ opType: 'Add', name: `${p}qc`, inputs: [qAll, sAll ? `${p}dms` : `${p}dm`], outputs: [`${p}qc`] });
    nodes.push({ opType: 'Mul', name: `${p}qw`, inputs: [`${p}qc`, `${p}w`], outputs: [`${p}qw`] });
    reduce(nodes, 'ReduceSum', `${p}Q`, `${p}qw`, axis, `${p}Q`, axisConst);
    nodes.push({ opType: 'Div', name: `${p}QS`, inputs: [`${p}Q`, `${p}S`], outputs: [`${p}QS`] });
    nodes.push({ opType: 'Sub', name: `${p}H`, inputs: [`${p}logS`, `${p}QS`], outputs: [`${p}H`] });
    nodes.push({ opType: 'Reshape', name: `${p}H_out`, inputs: [`${p}H`, `${p}tshape`], outputs: [o.entropyOut] });
  }
  nodes.push(c64(o.vocabOut, [plan.vocab]));
  // The Loop body reads rho_ch_vs from the outer scope (invisible in the node inputs here).
  return pruneConstants(nodes, [o.vocabOut, `${p}vs`]);
}

/** Drop Constant nodes nothing reads (the runtime warns about each). */
function pruneConstants(nodes: NodeSpec[], keep: string[]): NodeSpec[] {
  const used = new Set(keep);
  for (const n of nodes) for (const i of n.inputs) used.add(i);
  return nodes.filter((n) => n.opType !== 'Constant' || n.outputs.some((x) => used.has(x)));
}
