// The package as a user gets it: `npm pack`, installed into a separate project from the tarball, then
// `import { score } from 'rho'` with a file input and with a document source gives the rows `rho score` gives.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, RHO, CACHE, TOKENIZER, modelPath, shardPath, tmp, readRows } from '../helpers.js';

const run = promisify(execFile);

/** Rows as plain values (Arrow vectors to arrays), so that deepEqual compares values, not vector objects. */
const plain = (rows: Record<string, unknown>[]) =>
  rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v !== null && typeof v === 'object' && Symbol.iterator in v ? [...(v as Iterable<unknown>)] : v])));
const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', RHO_CACHE_DIR: CACHE, npm_config_audit: 'false', npm_config_fund: 'false' };

test('npm pack → npm install ./rho-*.tgz → import { score } from "rho": file input and document source give the CLI\'s rows', async (t) => {
  t.timeout(15 * 60_000);
  const work = tmp('rho-pack-');
  // dist/ is built by `npm test` (tsc) before ava runs; --ignore-scripts so packing does not rebuild it under running tests.
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT, env });
  const tgz = readdirSync(work).find((n) => /^rho-.*\.tgz$/.test(n));
  t.truthy(tgz, 'npm pack wrote rho-<version>.tgz');
  const { stdout: listing } = await run('tar', ['tzf', join(work, tgz!)]);
  const files = listing.split('\n').filter(Boolean);
  for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/stages/score-worker.js', 'package/bin/rho', 'package/package.json']) t.true(files.includes(f), `tarball has ${f}`);
  t.false(files.some((f) => /^package\/(fixtures|test|dist\/test|dist\/bench)\//.test(f)), 'no fixtures or tests in the tarball');

  const proj = join(work, 'project');
  await run('mkdir', ['-p', proj]);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'rho-consumer', private: true, type: 'module' }));
  try {
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(work, tgz!)], { cwd: proj, env, maxBuffer: 1 << 26 });
  } catch (e) {
    t.fail(`npm install of the tarball failed (needs the npm registry or a warm npm cache; ONNXRUNTIME_NODE_INSTALL=skip): ${(e as { stderr?: string }).stderr ?? e}`);
    return;
  }
  // The probe reads the JSONL itself for its document source, so the source owes nothing to rho's reader.
  const probe = `
import { readFileSync } from 'node:fs';
import { score } from 'rho';
const [model, tokenizer, shard, outFile, outSource] = process.argv.slice(2);
const common = { models: [{ name: 'ref', path: model }], tokenizer, idField: 'id', context: 128, stride: 64, progress: false };
const lines = readFileSync(shard, 'utf8').split('\\n').filter((l) => l.trim() !== '');
const source = { name: 'clean-source', async *documents() { for (const l of lines) { const r = JSON.parse(l); yield { id: r.id, text: r.text }; } } };
const a = await score({ ...common, inputs: [shard], output: outFile });
const b = await score({ ...common, inputs: [source], output: outSource });
console.log(JSON.stringify({ a, b }));
`;
  writeFileSync(join(proj, 'probe.mjs'), probe);
  // The declarations type-check from the consumer's side (NodeNext resolution through "exports").
  writeFileSync(join(proj, 'typed.ts'), `import { score, type ScoreOptions, type ScoreSummary, type DocumentSource } from 'rho';\nconst src: DocumentSource = { name: 'x', async *documents() { yield { text: 'a' }; } };\nconst o: ScoreOptions = { models: ['m.onnx'], tokenizer: 't.json', inputs: ['a.jsonl', src], output: 'o', context: 128, stride: 64 };\nexport const p: Promise<ScoreSummary> = score(o);\n`);
  await run(join(ROOT, 'node_modules', '.bin', 'tsc'), ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'typed.ts'], { cwd: proj });

  const outFile = join(work, 'api-file');
  const outSource = join(work, 'api-source');
  const { stdout } = await run('node', ['probe.mjs', modelPath('llama'), TOKENIZER, shardPath('clean.jsonl'), outFile, outSource], { cwd: proj, env, maxBuffer: 1 << 26 });
  const { a, b } = JSON.parse(stdout) as { a: { totals: { scored: number } }; b: { totals: { scored: number }; shards: { source: string }[] } };

  const cli = join(work, 'cli');
  const r = await run(RHO, ['score', '--model', `ref=${modelPath('llama')}`, '--tokenizer', TOKENIZER, '--input', shardPath('clean.jsonl'), '--id-field', 'id', '--context', '128', '--stride', '64', '--no-progress', '--json', '--output', cli], { cwd: ROOT, env });
  const cliSummary = JSON.parse(r.stdout) as { totals: unknown };
  t.deepEqual(a.totals, cliSummary.totals, 'the summary is the one rho score --json prints');
  const rowsCli = plain(readRows(cli));
  t.true(rowsCli.length > 0);
  t.deepEqual(plain(readRows(outFile)), rowsCli, 'file input: the same rows as the CLI');
  t.deepEqual(b.shards.map((s) => s.source), ['clean-source']);
  t.is(b.totals.scored, rowsCli.length);
  t.deepEqual(plain(readRows(outSource)), rowsCli.map((row) => ({ ...row, source: 'clean-source' })), 'document source: the same rows, source = its name, row = index');
  t.true(readFileSync(join(outSource, 'manifest.json'), 'utf8').includes('"stages"'), 'per-stage stats in the manifest');
});
