// One source of truth for provenance: the flat `rho.*` keys, the combined `rho` object, manifest.json and the export
// header agree — in the score dir, after select (full and compact) and after export. Expected values are built
// here from the flat keys, independently of schemas/contract.ts.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { score, tmp, shardPath, modelPath, dataFiles, readTable, TOKENIZER } from '../helpers.js';
import { runSelect } from '../../pipeline/jobs/select.js';
import { runExport } from '../../pipeline/jobs/export.js';

const dir = tmp('rho-prov-');
const scores = join(dir, 'scores');
const full = join(dir, 'full');
const compact = join(dir, 'compact');
const mmFull = join(dir, 'mm-full');
const mmCompact = join(dir, 'mm-compact');
// Paths as a user types them: relative to the working directory.
const modelGiven = relative(process.cwd(), modelPath('llama'));
const tokGiven = relative(process.cwd(), TOKENIZER);

test.before(async () => {
  await score({ inputs: [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz')], output: scores, unitDocs: 12, models: [{ name: 'ref', path: modelGiven }], tokenizer: tokGiven, scoreDtype: 'float16' });
  const s = { input: scores, ratio: 0.5, by: 'ref_loss' as const, scope: 'global' as const, batchTokens: 1, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: false, progress: false };
  await runSelect({ ...s, output: full });
  await runSelect({ ...s, output: compact, compact: true });
  await runExport({ input: full, output: mmFull, scoreDtype: 'float32', overwrite: false, progress: false });
  await runExport({ input: scores, selection: compact, output: mmCompact, scoreDtype: 'float32', overwrite: false, progress: false });
});

const PER_FILE = ['rho.unit', 'rho.select.score_file'];
type Obj = Record<string, unknown>;

/** The combined object as the contract describes it, computed from flat keys. */
function expectedCombined(flat: Record<string, string>): Obj {
  const out: Obj = {};
  const sel: Obj = {};
  for (const [k, v] of Object.entries(flat)) {
    if (!k.startsWith('rho.')) continue;
    let val: unknown;
    try { val = JSON.parse(v); } catch { val = v; }
    if (k.startsWith('rho.select.')) sel[k.slice('rho.select.'.length)] = val;
    else out[k.slice(4)] = val;
  }
  if (Object.keys(sel).length) out.select = sel;
  return out;
}

const flatOf = (md: Map<string, string>) => Object.fromEntries([...md].filter(([k]) => k.startsWith('rho.')));
const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8')) as Obj;

/** Set-level flat keys of a dir from its files: per-file keys dropped, inputs unioned. */
function setFlat(d: string): Record<string, string> {
  const files = dataFiles(d).map((f) => flatOf(readTable(f).schema.metadata));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(files[0])) if (!PER_FILE.includes(k)) out[k] = v;
  const inputs = new Map<string, unknown>();
  for (const f of files) for (const s of JSON.parse(f['rho.inputs']) as { source: string }[]) inputs.set(s.source, s);
  out['rho.inputs'] = JSON.stringify([...inputs.values()]);
  return out;
}

for (const [name, d] of [['score', scores], ['select (full)', full], ['select (compact)', compact]] as const) {
  test(`${name}: each file's combined rho object agrees with its flat keys`, (t) => {
    for (const f of dataFiles(d)) {
      const md = readTable(f).schema.metadata;
      const flat = flatOf(md);
      t.truthy(md.get('rho'), `${f}: the combined key is there`);
      t.deepEqual(JSON.parse(md.get('rho')!), expectedCombined(flat), f);
    }
  });

  test(`${name}: manifest.json agrees with the files (top-level fields and its flat provenance)`, (t) => {
    const m = readJson(join(d, 'manifest.json'));
    const flat = setFlat(d);
    const { rho: _r, ...flatNoRho } = flat as Record<string, string>;
    void _r;
    t.deepEqual(m.provenance, flatNoRho);
    const combined = expectedCombined(flatNoRho);
    for (const [k, v] of Object.entries(combined)) {
      if (k === 'schema_version') t.is(m.schema_version, v);
      else if (k === 'version') t.deepEqual(m.rho_version, v);
      else t.deepEqual(m[k], v, `manifest field ${k}`);
    }
    t.is((JSON.parse(flat['rho.inputs']) as unknown[]).length, 2, 'both input shards');
  });
}

for (const [name, mm, sel] of [['export of full copy', mmFull, full], ['export of scores + compact selection', mmCompact, compact]] as const) {
  test(`${name}: header.json provenance agrees with the selection dir's manifest`, (t) => {
    const h = readJson(join(mm, 'header.json'));
    const p = h.provenance as Record<string, string>;
    const m = readJson(join(sel, 'manifest.json'));
    const { rho, ...flat } = p;
    t.deepEqual(flat, m.provenance);
    t.deepEqual(JSON.parse(rho), expectedCombined(flat));
    t.is((JSON.parse(rho) as { inputs: unknown[] }).inputs.length, 2, 'the combined object lists every input shard');
    t.is((JSON.parse(rho) as { select: { ratio: number } }).select.ratio, 0.5);
    t.is((JSON.parse(rho) as { score_dtype: string }).score_dtype, 'float16');
  });
}

test('paths are recorded as given and resolved', (t) => {
  const m = readJson(join(scores, 'manifest.json')) as { models: { path: string; resolved_path: string }[]; tokenizer: { path: string; resolved_path: string } };
  t.is(m.models[0].path, modelGiven);
  t.false(isAbsolute(m.models[0].path));
  t.is(m.models[0].resolved_path, modelPath('llama'));
  t.is(m.tokenizer.path, tokGiven);
  t.is(m.tokenizer.resolved_path, TOKENIZER);
  const c = readJson(join(compact, 'manifest.json')) as { scores: { path: string; resolved_path: string }; select: { scores: { path: string } } };
  t.is(c.scores.path, scores);
  t.is(c.select.scores.path, scores);
});
