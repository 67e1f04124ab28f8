import test, { type ExecutionContext } from 'ava';
import { prepareModel, type PreparedModel } from '../../model/prepare.js';
import { OnnxScorer as Scorer, alignScores } from '../../stages/score.js';
import type { Batch } from '../../schemas/types.js';
import { lsmAt, makeBatch, modelPath, referenceLogits, tmpDir, cleanup, type Kind } from './_models.js';
import { requires } from '../requirements.js';

test.after.always(cleanup);

const cacheDir = tmpDir();

async function prep(t: ExecutionContext, kind: Kind, name: string, entropy: boolean): Promise<PreparedModel> {
  const m = await modelPath(kind);
  t.log(`${kind}: ${m.source} ${m.path}`);
  return prepareModel({ path: m.path, name, cacheDir, entropy });
}

/** Compare a scored batch to the float64 JS reference computed from the original model's logits. */
async function compare(p: PreparedModel, batch: Batch, logprob: Float32Array, entropy?: Float32Array) {
  const { logits, vocab } = await referenceLogits(p.sourcePath, p.inputs, batch);
  let maxLp = 0;
  let maxEnt = 0;
  let nanOk = true;
  for (let b = 0; b < batch.rows; b++) {
    const len = batch.lengths[b]!;
    for (let t = 0; t < batch.width; t++) {
      const i = b * batch.width + t;
      if (t === 0 || t >= len) {
        nanOk &&= Number.isNaN(logprob[i]!) && (!entropy || Number.isNaN(entropy[i]!));
        continue;
      }
      const r = lsmAt(logits, vocab, b, batch.width, t - 1);
      maxLp = Math.max(maxLp, Math.abs(logprob[i]! - r.lsm[batch.tokens[i]!]!));
      if (entropy) maxEnt = Math.max(maxEnt, Math.abs(entropy[i]! - r.entropy));
    }
  }
  return { maxLp, maxEnt, nanOk };
}

test('alignScores shifts by one and blanks position 0 and padding', (t) => {
  const raw = Float32Array.of(10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32, 33);
  const out = alignScores(raw, 3, 4, Int32Array.of(4, 2, 1));
  const s = [...out].map((x) => (Number.isNaN(x) ? null : x));
  t.deepEqual(s, [null, 10, 11, 12, null, 20, null, null, null, null, null, null]);
});

test('(a)(b) llama: logprob and entropy match JS log-softmax of raw logits; padding does not change real rows', async (t) => {
  const p = await prep(t, 'llama', 'ref', true);
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2, intraOpThreads: 1 });
  try {
    const V = s.vocabSizes.get('ref')!;
    t.true(V > 2);
    const lengths = [9, 3, 6, 1];
    const batch = makeBatch(lengths, V, 7);
    const tokensBefore = batch.tokens.slice();
    const r = (await s.score(batch)).get('ref')!;
    t.deepEqual(batch.tokens, tokensBefore, 'caller batch untouched');
    const c = await compare(p, batch, r.logprob, r.entropy);
    t.log(`llama padded batch: max |logprob - ref| = ${c.maxLp.toExponential(2)}, max |entropy - ref| = ${c.maxEnt.toExponential(2)}`);
    t.true(c.maxLp < 1e-4, `logprob diff ${c.maxLp}`);
    t.true(c.maxEnt < 1e-4, `entropy diff ${c.maxEnt}`);
    t.true(c.nanOk, 'position 0 and padding are NaN');
    // Each row alone, unpadded, gives the same values as inside the padded batch.
    let maxPad = 0;
    for (let b = 0; b < lengths.length; b++) {
      const len = lengths[b]!;
      const row = { rows: 1, width: len, tokens: batch.tokens.slice(b * batch.width, b * batch.width + len), lengths: Int32Array.of(len), windows: [] };
      const rr = (await s.score(row)).get('ref')!;
      for (let t2 = 1; t2 < len; t2++) {
        maxPad = Math.max(maxPad, Math.abs(rr.logprob[t2]! - r.logprob[b * batch.width + t2]!), Math.abs(rr.entropy![t2]! - r.entropy![b * batch.width + t2]!));
      }
    }
    t.log(`padding effect on real rows: max diff = ${maxPad.toExponential(2)}`);
    t.true(maxPad < 1e-5, `padding changed real rows by ${maxPad}`);
  } finally {
    await s.close();
  }
});

// llama-op11 is not committed: it is generated with torch (test/model/_models.ts).
requires('python')('gpt2-style (no position_ids) and opset-11 models match the JS reference', async (t) => {
  for (const kind of ['gpt2', 'llama-op11'] as const) {
    const p = await prep(t, kind, 'ref', true);
    const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
    try {
      const batch = makeBatch([5, 8, 2], s.vocabSizes.get('ref')!, 3);
      const r = (await s.score(batch)).get('ref')!;
      const c = await compare(p, batch, r.logprob, r.entropy);
      t.log(`${kind}: max logprob diff ${c.maxLp.toExponential(2)}, entropy ${c.maxEnt.toExponential(2)}`);
      t.true(c.maxLp < 1e-4 && c.maxEnt < 1e-4 && c.nanOk, kind);
    } finally {
      await s.close();
    }
  }
});

test('(c) fp16 logits: float32 logprob matches fp32 JS log-softmax of the fp16 logits', async (t) => {
  const p = await prep(t, 'llama-fp16', 'ref', true);
  t.is(p.logitsType, 'float16');
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
  try {
    const batch = makeBatch([7, 4], s.vocabSizes.get('ref')!, 11);
    const r = (await s.score(batch)).get('ref')!;
    t.true(r.logprob instanceof Float32Array);
    const c = await compare(p, batch, r.logprob, r.entropy);
    t.log(`llama-fp16: max logprob diff ${c.maxLp.toExponential(2)}, entropy ${c.maxEnt.toExponential(2)}`);
    t.true(c.maxLp < 1e-3 && c.maxEnt < 1e-3 && c.nanOk);
  } finally {
    await s.close();
  }
});

test('(d)(e) external-data model matches the plain llama; KV-style model runs with an empty past; several models per batch', async (t) => {
  const plain = await prep(t, 'llama', 'plain', false);
  const ext = await prep(t, 'llama-ext', 'ext', false);
  const kv = await prep(t, 'llama-kv', 'kv', true);
  const models = [plain, ext, kv];
  const s = await Scorer.open({ models, device: 'cpu', tokenizerVocabSize: 2 });
  try {
    const V = Math.min(...s.vocabSizes.values());
    const batch = makeBatch([6, 10, 3], V, 5);
    // Two requests in flight at once: both queue in the worker and resolve.
    const [r, r2] = await Promise.all([s.score(batch), s.score(batch)]);
    t.deepEqual(r2.get(models[0]!.name)!.logprob, r.get(models[0]!.name)!.logprob);
    for (const m of models) {
      const c = await compare(m, batch, r.get(m.name)!.logprob, r.get(m.name)!.entropy);
      t.log(`${m.name}: max logprob diff ${c.maxLp.toExponential(2)}, entropy ${c.maxEnt.toExponential(2)}`);
      t.true(c.maxLp < 1e-4 && c.maxEnt < 1e-4 && c.nanOk, m.name);
    }
    if (plain.sha256 !== ext.sha256) {
      const a = r.get('plain')!.logprob;
      const b = r.get('ext')!.logprob;
      let d = 0;
      for (let i = 0; i < a.length; i++) if (!Number.isNaN(a[i]!)) d = Math.max(d, Math.abs(a[i]! - b[i]!));
      t.log(`external data vs plain: max diff ${d.toExponential(2)}`);
      t.true(d < 1e-5);
    }
    t.truthy(r.get('kv')!.entropy);
  } finally {
    await s.close();
  }
});

test('(f) a tokenizer vocabulary larger than the model is refused, naming both numbers and the model path', async (t) => {
  const p = await prep(t, 'llama', 'ref', false);
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
  const V = s.vocabSizes.get('ref')!;
  await s.close();
  // Equal is fine.
  const ok = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: V });
  await ok.close();
  const e = await t.throwsAsync(Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: V + 1 }));
  t.true(e!.message.includes(String(V + 1)), e!.message);
  t.true(e!.message.includes(`${V} logits`), e!.message);
  t.true(e!.message.includes(p.sourcePath), e!.message);
});

test('(i) --device cuda on a CPU-only install fails with the reinstall message', async (t) => {
  const p = await prep(t, 'llama', 'ref', false);
  const e = await t.throwsAsync(Scorer.open({ models: [p], device: 'cuda', deviceId: 0, tokenizerVocabSize: 2 }));
  t.log(e!.message.slice(0, 200));
  t.true(
    e!.message.includes(
      'onnxruntime-node was installed without the CUDA provider: reinstall with ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci (needs CUDA 12 + cuDNN 9)',
    ),
  );
});

test('a failing batch rejects its promise (no hang) and the scorer keeps working', async (t) => {
  const p = await prep(t, 'llama', 'ref', false);
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
  try {
    const V = s.vocabSizes.get('ref')!;
    const good = makeBatch([4, 2], V, 2);
    const bad = makeBatch([4, 2], V, 2);
    bad.tokens[1] = V + 1000; // out of the embedding table: onnxruntime fails inside Gather
    const pGood1 = s.score(good);
    const pBad = s.score(bad);
    const pGood2 = s.score(good);
    const e = await t.throwsAsync(pBad);
    t.log(e!.message.slice(0, 200));
    t.truthy(e!.message);
    const [g1, g2] = await Promise.all([pGood1, pGood2]);
    t.deepEqual(g1.get('ref')!.logprob, g2.get('ref')!.logprob);
    await t.throwsAsync(s.score({ ...good, lengths: Int32Array.of(4) }), { message: /lengths/ });
  } finally {
    await s.close();
  }
  await t.throwsAsync(s.score(makeBatch([2], 10)), { message: /closed/ });
});

test('--device cpu: every node of the probe ran on the CPU provider, and the count is reported', async (t) => {
  const p = await prep(t, 'llama', 'ref', false);
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
  try {
    const used = s.nodeProviders.get('ref')!;
    t.log(`nodes per provider: ${JSON.stringify(used)}`);
    t.deepEqual(Object.keys(used), ['CPUExecutionProvider']);
    t.true(used['CPUExecutionProvider']! > 10, 'the profile saw the graph\'s nodes');
  } finally {
    await s.close();
  }
});

test('--device webgpu either runs nodes on the WebGPU provider or is refused clearly (never a silent CPU fallback)', async (t) => {
  const p = await prep(t, 'llama', 'ref', false);
  let s: Scorer | null = null;
  try {
    s = await Scorer.open({ models: [p], device: 'webgpu', tokenizerVocabSize: 2 });
  } catch (e) {
    const msg = (e as Error).message;
    t.log(`refused: ${msg.slice(0, 200)}`);
    // Either the provider could not start (no Vulkan / adapter), or it started and placed nothing on the GPU.
    t.regex(msg, /needs a Vulkan loader \(libvulkan1\)|refusing a silent CPU fallback/);
    return;
  }
  try {
    const used = s.nodeProviders.get('ref')!;
    t.log(`webgpu session opened; nodes per provider: ${JSON.stringify(used)}`);
    const gpu = Object.entries(used).filter(([k]) => /webgpu/i.test(k)).reduce((a, [, n]) => a + n, 0);
    t.true(gpu > 0, `no node ran on the WebGPU provider: ${JSON.stringify(used)}`);
  } finally {
    await s.close();
  }
});

test('a head rho cannot slice falls back to the full head, says so once on stderr, and still matches the reference', async (t) => {
  const m = await modelPath('llama-relu');
  if (!m) return t.fail('no llama-relu model: /usr/bin/python3 with torch + onnx is needed to generate it (apt-get install -y python3-torch python3-onnx)');
  const writes: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    writes.push(String(chunk));
    return (orig as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
  let p: PreparedModel;
  try {
    p = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: true });
    await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: true });
  } finally {
    process.stderr.write = orig;
  }
  t.is(p.head.kind, 'full');
  t.regex(p.head.kind === 'full' ? p.head.reason : '', /Relu "head_relu"/);
  const notes = writes.filter((w) => w.includes('LM head not recognised'));
  t.is(notes.length, 1, 'said once');
  t.regex(notes[0]!, /scoring with the model's full head/);
  const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: 2 });
  try {
    const batch = makeBatch([6, 3], s.vocabSizes.get('ref')!, 9);
    const r = (await s.score(batch)).get('ref')!;
    const c = await compare(p, batch, r.logprob, r.entropy);
    t.true(c.maxLp < 1e-4 && c.maxEnt < 1e-4 && c.nanOk);
  } finally {
    await s.close();
  }
});
