// Test helpers for the model tests: locate fixture models, else generate tiny ones with /usr/bin/python3 (torch + onnx),
// and a reference implementation of the scoring maths (run the ORIGINAL model, log-softmax in float64 in JS).

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ort from 'onnxruntime-node';
import type { PreparedModel } from '../../model/prepare.js';
import { missing } from '../requirements.js';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const FIXTURE_MODELS = path.join(REPO, 'fixtures', 'models');

export type Kind = 'llama' | 'gpt2' | 'llama-fp16' | 'llama-ext' | 'llama-kv' | 'llama-op11' | 'llama-relu';

const MAKE_PY = String.raw`import sys, os, torch, onnx, numpy as np
from onnx import helper, TensorProto
out = sys.argv[1]
torch.manual_seed(0)
V, D, H, HD, NPOS = 97, 32, 2, 16, 64

class Tiny(torch.nn.Module):
    def __init__(self, kv=False, pos_input=True):
        super().__init__()
        self.kv, self.pos_input = kv, pos_input
        self.emb = torch.nn.Embedding(V, D); self.pos = torch.nn.Embedding(NPOS, D)
        self.qkv = torch.nn.Linear(D, 3 * D); self.o = torch.nn.Linear(D, D)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.GELU(), torch.nn.Linear(64, D))
        self.head = torch.nn.Linear(D, V)
    def forward(self, input_ids, attention_mask, position_ids=None, pk=None, pv=None):
        B, T = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(T).unsqueeze(0).expand(B, T)
        x = self.emb(input_ids) + self.pos(position_ids)
        q, k, v = self.qkv(x).split(D, dim=-1)
        q = q.view(B, T, H, HD).transpose(1, 2); k = k.view(B, T, H, HD).transpose(1, 2); v = v.view(B, T, H, HD).transpose(1, 2)
        if pk is not None:
            k = torch.cat([pk, k], dim=2); v = torch.cat([pv, v], dim=2)
        S = k.shape[2]; P = S - T
        s = q @ k.transpose(-1, -2) / (HD ** 0.5)
        causal = (torch.arange(T).unsqueeze(1) + P) >= torch.arange(S).unsqueeze(0)
        m = causal.unsqueeze(0).unsqueeze(0) & (attention_mask[:, None, None, :] > 0)
        s = s.masked_fill(~m, -1e4)
        a = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(a); x = x + self.mlp(x)
        logits = self.head(x)
        if pk is not None:
            return logits, k, v
        return logits

def export(m, path, args, inames, onames, dyn, opset=14):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(m, args, path, input_names=inames, output_names=onames, dynamic_axes=dyn, opset_version=opset)

ids = torch.randint(0, V, (2, 5)); am = torch.ones(2, 5, dtype=torch.long); pid = torch.arange(5).unsqueeze(0).repeat(2, 1)
bt = {0: 'batch_size', 1: 'sequence_length'}
llama = Tiny().eval()
export(llama, f'{out}/llama/model.onnx', (ids, am, pid), ['input_ids', 'attention_mask', 'position_ids'], ['logits'],
       {'input_ids': bt, 'attention_mask': bt, 'position_ids': bt, 'logits': bt})
export(llama, f'{out}/llama-op11/model.onnx', (ids, am, pid), ['input_ids', 'attention_mask', 'position_ids'], ['logits'],
       {'input_ids': bt, 'attention_mask': bt, 'position_ids': bt, 'logits': bt}, opset=11)
export(llama, f'{out}/nologits/model.onnx', (ids, am, pid), ['input_ids', 'attention_mask', 'position_ids'], ['output'],
       {'input_ids': bt, 'attention_mask': bt, 'position_ids': bt, 'output': bt})
gpt2 = Tiny(pos_input=False).eval()
export(gpt2, f'{out}/gpt2/model.onnx', (ids, am), ['input_ids', 'attention_mask'], ['logits'],
       {'input_ids': bt, 'attention_mask': bt, 'logits': bt})
import json
json.dump({'n_positions': NPOS, 'vocab_size': V}, open(f'{out}/gpt2/config.json', 'w'))
json.dump({'max_position_embeddings': NPOS, 'vocab_size': V}, open(f'{out}/llama/config.json', 'w'))
kvm = Tiny(kv=True).eval()
pk = torch.zeros(2, H, 1, HD); am2 = torch.ones(2, 6, dtype=torch.long)
export(kvm, f'{out}/llama-kv/model.onnx', (ids, am2, pid, pk, pk.clone()),
       ['input_ids', 'attention_mask', 'position_ids', 'past_key_values.0.key', 'past_key_values.0.value'],
       ['logits', 'present.0.key', 'present.0.value'],
       {'input_ids': bt, 'attention_mask': {0: 'batch_size', 1: 'total_sequence_length'}, 'position_ids': bt, 'logits': bt,
        'past_key_values.0.key': {0: 'batch_size', 2: 'past_sequence_length'}, 'past_key_values.0.value': {0: 'batch_size', 2: 'past_sequence_length'},
        'present.0.key': {0: 'batch_size', 2: 'total_sequence_length'}, 'present.0.value': {0: 'batch_size', 2: 'total_sequence_length'}})
# fp16 logits
m = onnx.load(f'{out}/llama/model.onnx')
for n in m.graph.node:
    n.output[:] = ['logits_f32' if o == 'logits' else o for o in n.output]
m.graph.node.append(helper.make_node('Cast', ['logits_f32'], ['logits'], to=TensorProto.FLOAT16))
m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
os.makedirs(f'{out}/llama-fp16', exist_ok=True)
onnx.save(m, f'{out}/llama-fp16/model.onnx')
# a head rho cannot slice: Relu between the projection and logits (not an elementwise step with a scalar constant)
m = onnx.load(f'{out}/llama/model.onnx')
for n in m.graph.node:
    n.output[:] = ['logits_pre' if o == 'logits' else o for o in n.output]
m.graph.node.append(helper.make_node('Relu', ['logits_pre'], ['logits'], name='head_relu'))
os.makedirs(f'{out}/llama-relu', exist_ok=True)
onnx.save(m, f'{out}/llama-relu/model.onnx')
m = onnx.load(f'{out}/llama/model.onnx')
os.makedirs(f'{out}/llama-ext', exist_ok=True)
onnx.save_model(m, f'{out}/llama-ext/model.onnx', save_as_external_data=True, all_tensors_to_one_file=True, location='model.onnx_data', size_threshold=0)
print('ok')
`;

let generated: Promise<{ dir: string } | { error: string }> | null = null;

/** Generate the models that are not committed (llama-op11, nologits) once per process, about 2 s. */
function generate(): Promise<{ dir: string } | { error: string }> {
  generated ??= (async () => {
    const noPython = missing('python');
    if (noPython) return { error: noPython };
    const dir = tmpDir('rho-model-test-');
    writeFileSync(path.join(dir, 'make.py'), MAKE_PY);
    try {
      await promisify(execFile)('/usr/bin/python3', [path.join(dir, 'make.py'), dir], { timeout: 120_000 });
      return { dir };
    } catch (e) {
      return { error: `/usr/bin/python3 make.py failed: ${(e as Error).message}` };
    }
  })();
  return generated;
}

/** Where a model of this kind is: the committed fixture if present, else a generated one; an error naming what is missing otherwise. */
export async function modelPath(kind: Kind): Promise<{ path: string; source: 'fixture' | 'generated' }> {
  const fx = path.join(FIXTURE_MODELS, kind, 'model.onnx');
  if (existsSync(fx)) return { path: fx, source: 'fixture' };
  const g = await generate();
  if ('error' in g) throw new Error(`no ${kind} model: fixtures/models/${kind} is not committed and it could not be generated: ${g.error}`);
  const p = path.join(g.dir, kind, 'model.onnx');
  if (!existsSync(p)) throw new Error(`no ${kind} model: make.py did not write ${p}`);
  return { path: p, source: 'generated' };
}

const created: string[] = [];

export function tmpDir(prefix = 'rho-cache-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(d);
  return d;
}

/** Remove every temp folder this process made (generated models, caches). */
export function cleanup(): void {
  for (const d of created.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Deterministic pseudo-random batch, right-padded with 0. */
export function makeBatch(lengths: number[], vocab: number, seed = 1) {
  const rows = lengths.length;
  const width = Math.max(...lengths);
  const tokens = new Int32Array(rows * width);
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let b = 0; b < rows; b++) for (let t = 0; t < lengths[b]!; t++) tokens[b * width + t] = 1 + Math.floor(rnd() * (vocab - 1));
  return { rows, width, tokens, lengths: Int32Array.from(lengths), windows: [] };
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Run the ORIGINAL model on the batch (independent feed code) and return its logits as float64 [B,T,V]. */
export async function referenceLogits(
  modelFile: string,
  inputs: PreparedModel['inputs'],
  batch: { rows: number; width: number; tokens: Int32Array; lengths: Int32Array },
): Promise<{ logits: Float64Array; vocab: number }> {
  const { rows: B, width: T } = batch;
  const s = await ort.InferenceSession.create(modelFile);
  try {
    const ids = BigInt64Array.from(batch.tokens, (x) => BigInt(x));
    const mask = new BigInt64Array(B * T);
    const pos = new BigInt64Array(B * T);
    for (let b = 0; b < B; b++) for (let t = 0; t < batch.lengths[b]!; t++) { mask[b * T + t] = 1n; pos[b * T + t] = BigInt(t); }
    const feeds: Record<string, ort.Tensor> = { input_ids: new ort.Tensor('int64', ids, [B, T]) };
    if (inputs.attentionMask) feeds[inputs.attentionMask] = new ort.Tensor('int64', mask, [B, T]);
    if (inputs.positionIds) feeds[inputs.positionIds] = new ort.Tensor('int64', pos, [B, T]);
    for (const p of inputs.past) {
      const dims = p.dims.map((d, i) => (i === 0 ? B : typeof d === 'number' ? d : 0));
      feeds[p.name] = p.type === 'float16' ? new ort.Tensor('float16', new Uint16Array(0), dims) : new ort.Tensor('float32', new Float32Array(0), dims);
    }
    const out = await s.run(feeds, ['logits']);
    const lg = out['logits']!;
    const vocab = lg.dims[2]!;
    const logits = new Float64Array(B * T * vocab);
    if (lg.type === 'float16') {
      const d = lg.data as Uint16Array;
      for (let i = 0; i < d.length; i++) logits[i] = halfToFloat(d[i]!);
    } else logits.set(lg.data as Float32Array);
    return { logits, vocab };
  } finally {
    await s.release();
  }
}

/** log-softmax and entropy in float64 of logits[b,t,:]. */
export function lsmAt(logits: Float64Array, vocab: number, row: number, T: number, t: number): { lsm: Float64Array; entropy: number } {
  const o = (row * T + t) * vocab;
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[o + v]!);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[o + v]! - max);
  const lse = max + Math.log(sum);
  const lsm = new Float64Array(vocab);
  let entropy = 0;
  for (let v = 0; v < vocab; v++) {
    lsm[v] = logits[o + v]! - lse;
    entropy -= Math.exp(lsm[v]!) * lsm[v]!;
  }
  return { lsm, entropy };
}
