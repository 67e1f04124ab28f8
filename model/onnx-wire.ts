// A small protobuf wire-format editor for ONNX models.
//
// The model is never decoded as a whole: fields are walked as (field number, wire type, byte slice), every byte we do
// not touch is copied as is, and only ModelProto.graph is re-emitted (original graph fields in order, minus the
// graph.output entries we drop, plus appended nodes / inputs / outputs). The few messages we need to read or write are
// described by our own minimal schema (field numbers from the ONNX IR specification), used through protobufjs.

import protobuf from 'protobufjs';

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;

/** One top-level field of an encoded message. */
export interface WireField {
  field: number;
  wireType: number;
  /** Offset of the tag (start of the whole field). */
  start: number;
  /** Offset just past the field. */
  end: number;
  /** For length-delimited fields: the payload [dataStart, end). For others: the value bytes. */
  dataStart: number;
}

function readVarint(buf: Uint8Array, pos: number): { value: number; pos: number } {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error('protobuf: truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return { value, pos };
    mul *= 128;
  }
  throw new Error('protobuf: varint too long');
}

function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** Iterate the top-level fields of an encoded message without decoding payloads. */
export function* iterateFields(buf: Uint8Array, begin = 0, finish = buf.length): Generator<WireField> {
  let pos = begin;
  while (pos < finish) {
    const start = pos;
    const tag = readVarint(buf, pos);
    pos = tag.pos;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value & 7;
    let dataStart = pos;
    switch (wireType) {
      case WIRE_VARINT:
        pos = readVarint(buf, pos).pos;
        break;
      case WIRE_I64:
        pos += 8;
        break;
      case WIRE_I32:
        pos += 4;
        break;
      case WIRE_LEN: {
        const len = readVarint(buf, pos);
        dataStart = len.pos;
        pos = len.pos + len.value;
        break;
      }
      default:
        throw new Error(`protobuf: unsupported wire type ${wireType} at byte ${start}`);
    }
    if (pos > finish) throw new Error(`protobuf: field ${field} at byte ${start} runs past the end of its message`);
    yield { field, wireType, start, end: pos, dataStart };
  }
}

/** Encode a length-delimited field (tag + length + payload). */
export function lenField(field: number, payload: Uint8Array): Uint8Array {
  const tag = encodeVarint(field * 8 + WIRE_LEN);
  const len = encodeVarint(payload.length);
  const out = new Uint8Array(tag.length + len.length + payload.length);
  out.set(tag, 0);
  out.set(len, tag.length);
  out.set(payload, tag.length + len.length);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---- minimal schema (ONNX IR field numbers), only what rho reads or writes ----

export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, INTS: 7 } as const;

const root = protobuf.Root.fromJSON({
  nested: {
    rho: {
      nested: {
        OperatorSetId: { fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } } },
        StringStringEntry: { fields: { key: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
        Tensor: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            dataType: { type: 'int32', id: 2 },
            floatData: { rule: 'repeated', type: 'float', id: 4 },
            int64Data: { rule: 'repeated', type: 'int64', id: 7 },
            name: { type: 'string', id: 8 },
            rawData: { type: 'bytes', id: 9 },
            externalData: { rule: 'repeated', type: 'StringStringEntry', id: 13 },
            dataLocation: { type: 'int32', id: 14 },
          },
        },
        Attribute: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            t: { type: 'Tensor', id: 5 },
            // GraphProto on the wire; kept as bytes (never decoded as a whole: a subgraph can hold a whole model).
            g: { type: 'bytes', id: 6 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 },
          },
        },
        Node: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            opType: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'Attribute', id: 5 },
            domain: { type: 'string', id: 7 },
          },
        },
        Dimension: { fields: { dimValue: { type: 'int64', id: 1 }, dimParam: { type: 'string', id: 2 } } },
        Shape: { fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } } },
        TensorType: { fields: { elemType: { type: 'int32', id: 1 }, shape: { type: 'Shape', id: 2 } } },
        Type: { fields: { tensorType: { type: 'TensorType', id: 1 } } },
        ValueInfo: { fields: { name: { type: 'string', id: 1 }, type: { type: 'Type', id: 2 } } },
      },
    },
  },
});

const T = {
  OperatorSetId: root.lookupType('rho.OperatorSetId'),
  Tensor: root.lookupType('rho.Tensor'),
  Node: root.lookupType('rho.Node'),
  ValueInfo: root.lookupType('rho.ValueInfo'),
};

/** ModelProto / GraphProto field numbers used here. */
export const MODEL_GRAPH = 7;
export const MODEL_OPSET_IMPORT = 8;
export const GRAPH_NODE = 1;
export const GRAPH_INITIALIZER = 5;
export const GRAPH_INPUT = 11;
export const GRAPH_OUTPUT = 12;
export const GRAPH_VALUE_INFO = 13;

const toNum = (v: unknown): number =>
  typeof v === 'number' ? v : v && typeof (v as { toNumber?: unknown }).toNumber === 'function' ? (v as { toNumber(): number }).toNumber() : Number(v);

export interface ValueInfo {
  name: string;
  /** ONNX TensorProto.DataType, 0 when the value has no tensor type. */
  elemType: number;
  /** Per dimension: a number (dim_value), a string (dim_param), or '?' when neither is set. null when no shape. */
  dims: (number | string)[] | null;
}

export interface ExternalRef {
  tensor: string;
  location: string;
}

/** What rho needs to know about a model, read without decoding nodes or initializer payloads. */
export interface ModelSummary {
  /** Opset of the default domain ('' or 'ai.onnx'); null if the model declares none. */
  opset: number | null;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializerNames: Set<string>;
  externalData: ExternalRef[];
}

function findGraph(model: Uint8Array): WireField {
  let graph: WireField | null = null;
  for (const f of iterateFields(model)) if (f.field === MODEL_GRAPH && f.wireType === WIRE_LEN) graph = f;
  if (!graph) throw new Error('not an ONNX model: no graph (ModelProto field 7) found');
  return graph;
}

function decodeValueInfo(bytes: Uint8Array): ValueInfo {
  const m = T.ValueInfo.toObject(T.ValueInfo.decode(bytes), { longs: Number, defaults: false }) as {
    name?: string;
    type?: { tensorType?: { elemType?: number; shape?: { dim?: { dimValue?: number; dimParam?: string }[] } } };
  };
  const tt = m.type?.tensorType;
  const dims = tt?.shape
    ? (tt.shape.dim ?? []).map((d) => (d.dimValue !== undefined ? toNum(d.dimValue) : d.dimParam !== undefined && d.dimParam !== '' ? d.dimParam : '?'))
    : null;
  return { name: m.name ?? '', elemType: tt?.elemType ?? 0, dims };
}

/** Read opset, graph inputs/outputs and external-data locations; initializer payloads are skipped, never decoded. */
export function summarizeModel(model: Uint8Array): ModelSummary {
  let opset: number | null = null;
  for (const f of iterateFields(model)) {
    if (f.field !== MODEL_OPSET_IMPORT || f.wireType !== WIRE_LEN) continue;
    const o = T.OperatorSetId.toObject(T.OperatorSetId.decode(model.subarray(f.dataStart, f.end)), { longs: Number }) as {
      domain?: string;
      version?: number;
    };
    if (!o.domain || o.domain === 'ai.onnx') opset = toNum(o.version ?? 0);
  }
  const g = findGraph(model);
  const inputs: ValueInfo[] = [];
  const outputs: ValueInfo[] = [];
  const initializerNames = new Set<string>();
  const externalData: ExternalRef[] = [];
  for (const f of iterateFields(model, g.dataStart, g.end)) {
    if (f.wireType !== WIRE_LEN) continue;
    if (f.field === GRAPH_INPUT) inputs.push(decodeValueInfo(model.subarray(f.dataStart, f.end)));
    else if (f.field === GRAPH_OUTPUT) outputs.push(decodeValueInfo(model.subarray(f.dataStart, f.end)));
    else if (f.field === GRAPH_INITIALIZER) {
      // Walk the TensorProto's fields; only name (8), external_data (13) and data_location (14) are looked at.
      let name = '';
      let external = false;
      let location: string | null = null;
      for (const tf of iterateFields(model, f.dataStart, f.end)) {
        if (tf.field === 8 && tf.wireType === WIRE_LEN) name = Buffer.from(model.subarray(tf.dataStart, tf.end)).toString('utf8');
        else if (tf.field === 14 && tf.wireType === WIRE_VARINT) external = readVarint(model, tf.dataStart).value === 1;
        else if (tf.field === 13 && tf.wireType === WIRE_LEN) {
          let key = '';
          let value = '';
          for (const ef of iterateFields(model, tf.dataStart, tf.end)) {
            const s = Buffer.from(model.subarray(ef.dataStart, ef.end)).toString('utf8');
            if (ef.field === 1) key = s;
            else if (ef.field === 2) value = s;
          }
          if (key === 'location') location = value;
        }
      }
      initializerNames.add(name);
      if (external) {
        if (location === null) throw new Error(`initializer ${name} is marked external but has no location`);
        externalData.push({ tensor: name, location });
      }
    }
  }
  return { opset, inputs, outputs, initializerNames, externalData };
}

// ---- encoding new messages ----

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  attributes?: AttrSpec[];
}

export type AttrSpec =
  | { name: string; kind: 'int'; value: number }
  | { name: string; kind: 'float'; value: number }
  | { name: string; kind: 'ints'; value: number[] }
  | { name: string; kind: 'tensorInt64'; value: number[]; dims: number[] }
  | { name: string; kind: 'graph'; value: Uint8Array };

function int64Raw(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigInt64LE(BigInt(v), i * 8));
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export function encodeNode(n: NodeSpec): Uint8Array {
  const attribute = (n.attributes ?? []).map((a) => {
    switch (a.kind) {
      case 'int':
        return { name: a.name, type: AttrType.INT, i: a.value };
      case 'float':
        return { name: a.name, type: AttrType.FLOAT, f: a.value };
      case 'graph':
        return { name: a.name, type: AttrType.GRAPH, g: a.value };
      case 'ints':
        return { name: a.name, type: AttrType.INTS, ints: a.value };
      case 'tensorInt64':
        return { name: a.name, type: AttrType.TENSOR, t: { dims: a.dims, dataType: DataType.INT64, rawData: int64Raw(a.value) } };
    }
  });
  const msg = T.Node.fromObject({ input: n.inputs, output: n.outputs, name: n.name, opType: n.opType, attribute });
  return T.Node.encode(msg).finish();
}

/** A ValueInfoProto; dims null leaves the shape unset (rank unknown). */
export function encodeValueInfo(name: string, elemType: number, dims: (number | string)[] | null): Uint8Array {
  const tensorType = dims === null ? { elemType } : { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } };
  const msg = T.ValueInfo.fromObject({ name, type: { tensorType } });
  return T.ValueInfo.encode(msg).finish();
}

/** A GraphProto (for Loop / If bodies) from encoded nodes, inputs and outputs. */
export function encodeGraph(g: { name: string; nodes: Uint8Array[]; inputs: Uint8Array[]; outputs: Uint8Array[] }): Uint8Array {
  return concat([
    ...g.nodes.map((n) => lenField(GRAPH_NODE, n)),
    lenField(2, new TextEncoder().encode(g.name)),
    ...g.inputs.map((i) => lenField(GRAPH_INPUT, i)),
    ...g.outputs.map((o) => lenField(GRAPH_OUTPUT, o)),
  ]);
}

// ---- decoding a graph's nodes (for head recognition) ----

export interface DecodedAttr {
  name: string;
  type: number;
  i?: number;
  f?: number;
  ints?: number[];
  /** Tensor attribute: dims and data type only (payload not copied). */
  t?: { dims: number[]; dataType: number; int64?: number[] };
  g?: Uint8Array;
}

export interface GraphNode {
  /** Position among the graph's node fields (what GraphEdit.dropNodes refers to). */
  index: number;
  opType: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, DecodedAttr>;
  /** The encoded NodeProto. */
  bytes: Uint8Array;
}

export interface InitializerInfo {
  name: string;
  dims: number[];
  dataType: number;
  /** The encoded TensorProto. */
  bytes: Uint8Array;
}

export interface DecodedGraph {
  nodes: GraphNode[];
  initializers: Map<string, InitializerInfo>;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

function decodeNode(bytes: Uint8Array, index: number): GraphNode {
  const m = T.Node.decode(bytes) as unknown as {
    input: string[];
    output: string[];
    name?: string;
    opType?: string;
    domain?: string;
    attribute: { name: string; type: number; i?: unknown; f?: number; ints?: unknown[]; t?: { dims?: unknown[]; dataType?: number; rawData?: Uint8Array; int64Data?: unknown[] }; g?: Uint8Array }[];
  };
  const attrs = new Map<string, DecodedAttr>();
  for (const a of m.attribute ?? []) {
    const d: DecodedAttr = { name: a.name, type: a.type };
    if (a.i !== undefined && a.i !== null) d.i = toNum(a.i);
    if (a.f !== undefined && a.f !== null) d.f = a.f;
    if (a.ints && a.ints.length) d.ints = a.ints.map(toNum);
    if (a.t) {
      d.t = { dims: (a.t.dims ?? []).map(toNum), dataType: a.t.dataType ?? 0 };
      if (d.t.dataType === DataType.INT64) {
        if (a.t.int64Data && a.t.int64Data.length) d.t.int64 = a.t.int64Data.map(toNum);
        else if (a.t.rawData && a.t.rawData.length % 8 === 0 && a.t.rawData.length <= 64) {
          const dv = new DataView(a.t.rawData.buffer, a.t.rawData.byteOffset, a.t.rawData.length);
          d.t.int64 = Array.from({ length: a.t.rawData.length / 8 }, (_, k) => Number(dv.getBigInt64(k * 8, true)));
        }
      }
    }
    if (a.g) d.g = a.g;
    attrs.set(a.name, d);
  }
  return { index, opType: m.opType ?? '', domain: m.domain ?? '', name: m.name ?? '', inputs: m.input ?? [], outputs: m.output ?? [], attrs, bytes };
}

function decodeInitializer(buf: Uint8Array, start: number, end: number): InitializerInfo {
  let name = '';
  let dataType = 0;
  const dims: number[] = [];
  for (const f of iterateFields(buf, start, end)) {
    if (f.field === 1 && f.wireType === WIRE_VARINT) dims.push(readVarint(buf, f.dataStart).value);
    else if (f.field === 1 && f.wireType === WIRE_LEN) {
      let p = f.dataStart;
      while (p < f.end) {
        const v = readVarint(buf, p);
        dims.push(v.value);
        p = v.pos;
      }
    } else if (f.field === 2 && f.wireType === WIRE_VARINT) dataType = readVarint(buf, f.dataStart).value;
    else if (f.field === 8 && f.wireType === WIRE_LEN) name = Buffer.from(buf.subarray(f.dataStart, f.end)).toString('utf8');
  }
  return { name, dims, dataType, bytes: buf.subarray(start, end) };
}

/** Decode a GraphProto's nodes (attributes light), initializer shapes, inputs and outputs. Payloads are not copied. */
export function decodeGraph(buf: Uint8Array, start = 0, end = buf.length): DecodedGraph {
  const nodes: GraphNode[] = [];
  const initializers = new Map<string, InitializerInfo>();
  const inputs: ValueInfo[] = [];
  const outputs: ValueInfo[] = [];
  let index = 0;
  for (const f of iterateFields(buf, start, end)) {
    if (f.wireType !== WIRE_LEN) continue;
    if (f.field === GRAPH_NODE) nodes.push(decodeNode(buf.subarray(f.dataStart, f.end), index++));
    else if (f.field === GRAPH_INITIALIZER) {
      const init = decodeInitializer(buf, f.dataStart, f.end);
      initializers.set(init.name, init);
    } else if (f.field === GRAPH_INPUT) inputs.push(decodeValueInfo(buf.subarray(f.dataStart, f.end)));
    else if (f.field === GRAPH_OUTPUT) outputs.push(decodeValueInfo(buf.subarray(f.dataStart, f.end)));
  }
  return { nodes, initializers, inputs, outputs };
}

/** The main graph of a model, decoded. */
export function decodeModelGraph(model: Uint8Array): DecodedGraph {
  const g = findGraph(model);
  return decodeGraph(model, g.dataStart, g.end);
}

export interface GraphEdit {
  /** graph.output entries whose name makes this return true are dropped. */
  dropOutput?: (name: string) => boolean;
  /** graph.input entries whose name makes this return true are dropped. */
  dropInput?: (name: string) => boolean;
  /** Indices (GraphNode.index) of graph.node entries to drop. */
  dropNodes?: Set<number>;
  /** Encoded TensorProtos appended as graph.initializer. */
  addInitializers?: Uint8Array[];
  addNodes?: Uint8Array[];
  addInputs?: Uint8Array[];
  addOutputs?: Uint8Array[];
}

/**
 * Rebuild a model with its graph edited. Every byte outside ModelProto.graph is kept as is; inside the graph, all
 * fields are kept in order except dropped outputs, and new nodes, inputs and outputs are appended (repeated fields may
 * be interleaved in protobuf, so parsers see them appended to their lists). An empty edit reproduces the input exactly.
 */
export function editModel(model: Uint8Array, edit: GraphEdit): Uint8Array {
  const g = findGraph(model);
  const parts: Uint8Array[] = [];
  let copyFrom = g.dataStart;
  let nodeIndex = 0;
  for (const f of iterateFields(model, g.dataStart, g.end)) {
    if (f.wireType !== WIRE_LEN) continue;
    let drop = false;
    if (f.field === GRAPH_OUTPUT && edit.dropOutput) drop = edit.dropOutput(decodeValueInfo(model.subarray(f.dataStart, f.end)).name);
    else if (f.field === GRAPH_INPUT && edit.dropInput) drop = edit.dropInput(decodeValueInfo(model.subarray(f.dataStart, f.end)).name);
    else if (f.field === GRAPH_NODE) drop = edit.dropNodes?.has(nodeIndex++) ?? false;
    if (drop) {
      if (f.start > copyFrom) parts.push(model.subarray(copyFrom, f.start));
      copyFrom = f.end;
    }
  }
  if (g.end > copyFrom) parts.push(model.subarray(copyFrom, g.end));
  for (const i of edit.addInitializers ?? []) parts.push(lenField(GRAPH_INITIALIZER, i));
  for (const n of edit.addNodes ?? []) parts.push(lenField(GRAPH_NODE, n));
  for (const i of edit.addInputs ?? []) parts.push(lenField(GRAPH_INPUT, i));
  for (const o of edit.addOutputs ?? []) parts.push(lenField(GRAPH_OUTPUT, o));
  const graph = concat(parts);
  // Re-emit the graph field with its new length; if the original graph's tag/length encoding is reproduced exactly
  // (same length, minimal varint), the output is byte-identical for an empty edit.
  const header = model.subarray(g.start, g.dataStart);
  let graphField: Uint8Array;
  if (graph.length === g.end - g.dataStart) graphField = concat([header, graph]);
  else graphField = lenField(MODEL_GRAPH, graph);
  return concat([model.subarray(0, g.start), graphField, model.subarray(g.end)]);
}
