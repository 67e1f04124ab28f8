import test from 'ava';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { prepareModel } from '../../model/prepare.js';
import {
  DataType,
  editModel,
  encodeNode,
  encodeValueInfo,
  iterateFields,
  lenField,
  summarizeModel,
} from '../../model/onnx-wire.js';
import { cleanup, modelPath, tmpDir } from './_models.js';
import { requires } from '../requirements.js';

test.after.always(cleanup);

/** A minimal ModelProto (ir_version 8, opset 14) with one Identity node, built from our own encoder. */
function tinyModel(inputName: string, outputName: string): Uint8Array {
  const graph = Buffer.concat([
    lenField(1, encodeNode({ opType: 'Identity', name: 'id', inputs: [inputName], outputs: [outputName] })),
    lenField(2, new TextEncoder().encode('g')),
    lenField(11, encodeValueInfo(inputName, DataType.FLOAT, ['b', 't', 8])),
    lenField(12, encodeValueInfo(outputName, DataType.FLOAT, ['b', 't', 8])),
  ]);
  const opset = Buffer.concat([lenField(1, new Uint8Array(0)), Buffer.from([0x10, 14])]);
  return Buffer.concat([Buffer.from([0x08, 8]), lenField(7, graph), lenField(8, opset)]);
}

test('(h) wire editor: an empty edit reproduces the model byte for byte', async (t) => {
  for (const kind of ['llama', 'llama-kv', 'llama-ext'] as const) {
    const m = await modelPath(kind);
    const bytes = new Uint8Array(readFileSync(m.path));
    const out = editModel(bytes, {});
    t.is(out.length, bytes.length, kind);
    t.true(Buffer.from(out).equals(Buffer.from(bytes)), `${kind}: byte-identical`);
  }
  // Also on a model built here (always available).
  const tiny = tinyModel('input_ids', 'logits');
  t.true(Buffer.from(editModel(tiny, {})).equals(Buffer.from(tiny)));
});

test('(h) wire editor: dropping/adding only touches the graph; every other byte is kept', async (t) => {
  const m = await modelPath('llama');
  const bytes = new Uint8Array(readFileSync(m.path));
  const out = editModel(bytes, { dropOutput: (n) => n === 'logits', addOutputs: [encodeValueInfo('x', DataType.FLOAT, [1])] });
  const fieldsOf = (b: Uint8Array) => [...iterateFields(b)].map((f) => ({ f: f.field, bytes: Buffer.from(b.subarray(f.start, f.end)) }));
  const a = fieldsOf(bytes);
  const o = fieldsOf(out);
  t.deepEqual(o.map((x) => x.f), a.map((x) => x.f));
  for (let i = 0; i < a.length; i++) if (a[i]!.f !== 7) t.true(a[i]!.bytes.equals(o[i]!.bytes), `field ${a[i]!.f} unchanged`);
  // Graph: original fields in order minus the dropped output, then the added output.
  const g = (b: Uint8Array) => {
    const gf = [...iterateFields(b)].find((f) => f.field === 7)!;
    return [...iterateFields(b, gf.dataStart, gf.end)].map((f) => Buffer.from(b.subarray(f.start, f.end)));
  };
  const ga = g(bytes);
  const go = g(out);
  t.is(go.length, ga.length); // one dropped, one added
  const sa = summarizeModel(bytes);
  const so = summarizeModel(out);
  t.deepEqual(so.inputs, sa.inputs);
  t.deepEqual(so.outputs.map((x) => x.name), ['x']);
  t.is(so.opset, sa.opset);
});

test('(g) prepared model is cached, logits and present.* are no longer outputs', async (t) => {
  for (const kind of ['llama', 'llama-kv'] as const) {
    const m = await modelPath(kind);
    const cacheDir = tmpDir();
    const p1 = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: true });
    const st1 = await fsp.stat(p1.preparedPath);
    t.is(path.dirname(p1.preparedPath), path.resolve(cacheDir));
    t.regex(path.basename(p1.preparedPath), new RegExp(`^${p1.sha256}-e-p\\d+ce?\\d+l\\.onnx$`));
    await new Promise((r) => setTimeout(r, 20));
    const p2 = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: true });
    const st2 = await fsp.stat(p2.preparedPath);
    t.is(p2.preparedPath, p1.preparedPath);
    t.is(st2.ino, st1.ino, 'not rewritten (same inode)');
    t.is(st2.mtimeMs, st1.mtimeMs, 'not rewritten (same mtime)');
    const pn = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: false });
    t.not(pn.preparedPath, p1.preparedPath);
    t.regex(path.basename(pn.preparedPath), new RegExp(`^${p1.sha256}-n-p\\d+ce?\\d+l\\.onnx$`));
    t.is((await fsp.readdir(cacheDir)).filter((f) => f.includes('.tmp-')).length, 0, 'no temp files left');

    const s = await ort.InferenceSession.create(p1.preparedPath);
    t.deepEqual([...s.outputNames].sort(), ['rho_entropy', 'rho_logprob', 'rho_vocab_size'], kind);
    t.false(s.outputNames.includes('logits'));
    t.true(s.inputNames.includes('rho_target_ids'));
    await s.release();
    const sn = await ort.InferenceSession.create(pn.preparedPath);
    t.deepEqual([...sn.outputNames].sort(), ['rho_logprob', 'rho_vocab_size']);
    await sn.release();
    if (kind === 'llama-kv') {
      t.true(p1.inputs.past.length > 0);
      t.true(p1.inputs.past.every((x) => x.name.startsWith('past')));
    }
  }
});

test('prepare reads inputs, logits type and max context', async (t) => {
  const m = await modelPath('llama');
  const g = await modelPath('gpt2');
  const f = await modelPath('llama-fp16');
  const cacheDir = tmpDir();
  const pm = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: false });
  t.deepEqual(pm.inputs, { inputIds: 'input_ids', idsType: 'int64', maskType: 'int64', positionType: 'int64', attentionMask: 'attention_mask', positionIds: 'position_ids', useCacheBranch: null, past: [] });
  t.is(pm.logitsType, 'float32');
  t.regex(pm.sha256, /^[0-9a-f]{64}$/);
  t.deepEqual(pm.externalData, []);
  const hasCfg = await fsp.access(path.join(path.dirname(m.path), 'config.json')).then(() => true, () => false);
  if (hasCfg) t.true(typeof pm.maxContext === 'number' && pm.maxContext > 0);
  const pg = await prepareModel({ path: g.path, name: 'ref', cacheDir, entropy: false });
  t.is(pg.inputs.positionIds, null);
  t.is(pg.inputs.attentionMask, 'attention_mask');
  const pf = await prepareModel({ path: f.path, name: 'ref', cacheDir, entropy: false });
  t.is(pf.logitsType, 'float16');
});

test('(f) refuses a model without logits, without input_ids, or unreadable, before any work', async (t) => {
  const dir = tmpDir('rho-bad-');
  const cacheDir = path.join(dir, 'cache');
  const noLogits = path.join(dir, 'nologits.onnx');
  await fsp.writeFile(noLogits, tinyModel('input_ids', 'hidden'));
  const e1 = await t.throwsAsync(prepareModel({ path: noLogits, name: 'ref', cacheDir, entropy: false }));
  t.regex(e1!.message, /no output named "logits"/);
  t.regex(e1!.message, /export it with optimum/);
  t.regex(e1!.message, /name the LM head output "logits"/);
  t.regex(e1!.message, /hidden/);

  const noIds = path.join(dir, 'noids.onnx');
  await fsp.writeFile(noIds, tinyModel('tokens', 'logits'));
  const e2 = await t.throwsAsync(prepareModel({ path: noIds, name: 'ref', cacheDir, entropy: false }));
  t.regex(e2!.message, /no input named "input_ids"/);

  const e3 = await t.throwsAsync(prepareModel({ path: path.join(dir, 'missing.onnx'), name: 'ref', cacheDir, entropy: false }));
  t.regex(e3!.message, /cannot read model file .*missing\.onnx/);

  const junk = path.join(dir, 'junk.onnx');
  await fsp.writeFile(junk, Buffer.from('this is not a model at all'));
  const e4 = await t.throwsAsync(prepareModel({ path: junk, name: 'ref', cacheDir, entropy: false }));
  t.regex(e4!.message, /junk\.onnx/);

  // Nothing was written to the cache.
  t.false(await fsp.access(cacheDir).then(() => true, () => false));
});

test('(d) external data: hard-linked next to the prepared model, data sha256 recorded', async (t) => {
  const m = await modelPath('llama-ext');
  const cacheDir = tmpDir();
  const p = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: false });
  t.is(p.externalData.length, 1);
  const ext = p.externalData[0]!;
  t.regex(ext.sha256, /^[0-9a-f]{64}$/);
  const srcStat = await fsp.stat(ext.path);
  t.is(ext.bytes, srcStat.size);
  const linked = path.join(path.dirname(p.preparedPath), path.basename(ext.path));
  const lst = await fsp.stat(linked);
  t.is(lst.ino, srcStat.ino, 'hard link, same inode');
  t.true(p.preparedPath.startsWith(path.resolve(cacheDir)));
  const s = await ort.InferenceSession.create(p.preparedPath);
  t.true(s.outputNames.includes('rho_logprob'));
  await s.release();
  // Second prepare reuses everything.
  const p2 = await prepareModel({ path: m.path, name: 'ref', cacheDir, entropy: false });
  t.is(p2.preparedPath, p.preparedPath);
});

requires('python')('opset < 13 models (generated with torch) get axes as attributes and still load', async (t) => {
  const m = await modelPath('llama-op11');
  t.is(summarizeModel(new Uint8Array(readFileSync(m.path))).opset, 11);
  const p = await prepareModel({ path: m.path, name: 'ref', cacheDir: tmpDir(), entropy: true });
  const s = await ort.InferenceSession.create(p.preparedPath);
  t.deepEqual([...s.outputNames].sort(), ['rho_entropy', 'rho_logprob', 'rho_vocab_size']);
  await s.release();
});

test('(d) external data across file systems: falls back to writing the prepared model next to the original', async (t) => {
  const m = await modelPath('llama-ext');
  const shm = '/dev/shm';
  const fsOf = async (p: string) => (await fsp.stat(p)).dev;
  if (!(await fsp.access(shm).then(() => true, () => false)) || (await fsOf(shm)) === (await fsOf(path.dirname(m.path)))) {
    t.fail('no second file system at /dev/shm to force EXDEV (a tmpfs there is standard on Linux): the cross-device path is NOT tested');
    return;
  }
  // Work on a copy so the fixture folder is not written to.
  const dir = tmpDir('rho-ext-copy-');
  for (const f of await fsp.readdir(path.dirname(m.path))) await fsp.copyFile(path.join(path.dirname(m.path), f), path.join(dir, f));
  const cacheDir = await fsp.mkdtemp(path.join(shm, 'rho-cache-'));
  try {
    const p = await prepareModel({ path: path.join(dir, 'model.onnx'), name: 'ref', cacheDir, entropy: true });
    t.is(path.dirname(p.preparedPath), dir);
    t.regex(path.basename(p.preparedPath), new RegExp(`^model\\.rho-${p.sha256.slice(0, 12)}-e-p\\d+ce?\\d+l\\.onnx$`));
    const s = await ort.InferenceSession.create(p.preparedPath);
    t.true(s.outputNames.includes('rho_entropy'));
    await s.release();
  } finally {
    await fsp.rm(cacheDir, { recursive: true, force: true });
  }
});
