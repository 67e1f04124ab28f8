// Bookkeeping that grows with a rank's share, not with the dir: request counts of a rank's start and end on a
// 3,000-unit dir (rank 3 of 10), and the manifest of a sharded run equal to a single runner's.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { LocalStore } from '../../pipeline/io/local.js';
import { ownerOf } from '../../pipeline/run/rank.js';
import { unitName, dataPath, LAYOUT, type CompletionRecord } from '../../schemas/layout.js';
import { summaryPath } from '../../pipeline/run/records.js';
import type { Manifest } from '../../pipeline/run/manifest.js';
import { CountingStore } from './_counting.js';
import { RHO, CACHE, ROOT, score, shardPath, tmp } from '../helpers.js';

const WORLD = 10;
const RANK = 3;
const UNITS = 3000;

function rho(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(RHO, args, { cwd: ROOT, env: { ...process.env, RHO_CACHE_DIR: CACHE } }, (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
  });
}

test('rank 3 of 10 on a 3,000-unit dir reads only the records of its own units, at start and at end', async (t) => {
  const dir = tmp('rho-bk-');
  const input = join(dir, 'in.jsonl');
  writeFileSync(input, Array.from({ length: UNITS }, (_, i) => JSON.stringify({ id: `d${i}`, text: `doc ${i}` })).join('\n') + '\n');
  const out = join(dir, 'out');
  const names = Array.from({ length: UNITS }, (_, p) => unitName({ source: input, part: p }));
  const own = new Set(names.filter((u) => ownerOf(u, WORLD) === RANK));
  t.true(own.size > 250 && own.size < 350, `rank ${RANK} owns ${own.size}`);

  // Rank 3 scores its share for real (one-document units: the worst case for bookkeeping).
  const first = await score({ inputs: [input], output: out, unitDocs: 1, rank: RANK, worldSize: WORLD });
  t.is(first.run.units_written, own.size);
  t.is(first.scope, 'rank');
  t.false(existsSync(join(out, LAYOUT.manifest)), 'not the last rank: no manifest.json');

  // The other 2,700 units done by other ranks: records written as rho writes them (no scoring needed).
  const configText = readFileSync(join(out, LAYOUT.config), 'utf8');
  const configSha = createHash('sha256').update(configText.replace(/\n$/, '')).digest('hex');
  for (const [part, u] of names.entries()) {
    if (own.has(u)) continue;
    const rec: CompletionRecord = {
      unit: u, source: input, part, first_row: part, docs_in: 1, scored: 1, rejected: 0, tokens: 3, scored_tokens: 2,
      file: dataPath({ source: input, part }, 'parquet'), bytes: 1000, sha256: '0'.repeat(64), rejects_file: null, config_sha256: configSha,
    };
    const p = join(out, LAYOUT.doneDir, `${u}.json`);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, JSON.stringify(rec, null, 2) + '\n');
  }

  const recordReads = (s: CountingStore) => s.calls.filter((c) => c.op === 'read' && c.rel.startsWith(`${LAYOUT.doneDir}/`)).map((c) => c.rel.slice(LAYOUT.doneDir.length + 1, -5));

  // Rerun without its summary (a rank that died before its end): reads exactly its own records, nothing else.
  const { rmSync } = await import('node:fs');
  rmSync(join(out, summaryPath(WORLD, RANK)));
  let store = new CountingStore(new LocalStore(out));
  let again = await score({ inputs: [input], output: out, unitDocs: 1, rank: RANK, worldSize: WORLD, store });
  t.is(again.run.units_written, 0);
  t.is(again.run.units_skipped, own.size);
  let reads = recordReads(store);
  t.log(`rerun without summary: ${reads.length} record reads (owns ${own.size} of ${UNITS}), ${store.count('list')} listings, ${store.calls.length} store calls in all`);
  t.is(reads.length, own.size);
  t.true(reads.every((u) => own.has(u)), 'a record of another rank was read');
  t.is(store.count('read', '_rho/ranks/'), 1, 'its own summary only');
  t.true(store.calls.length <= own.size + 20, `${store.calls.length} calls`);

  // Rerun with its summary: no record read at all; start + end is a handful of calls.
  store = new CountingStore(new LocalStore(out));
  again = await score({ inputs: [input], output: out, unitDocs: 1, rank: RANK, worldSize: WORLD, store });
  t.is(again.run.units_skipped, own.size);
  reads = recordReads(store);
  t.log(`rerun with summary: ${reads.length} record reads, ${store.calls.length} store calls in all: ${JSON.stringify(Object.fromEntries(['read', 'list', 'write', 'create', 'exists'].map((op) => [op, store.count(op as 'read')])))}`);
  t.is(reads.length, 0);
  t.true(store.calls.length <= 20, `${store.calls.length} calls`);
});

const INPUTS = [shardPath('clean.jsonl'), shardPath('mixed.parquet'), shardPath('noisy.jsonl.gz')];
const stripRun = (m: Manifest) => ({ ...m, run: undefined });

test('ranks 0..2 of 3: the last one writes the same manifest as a single runner; rho manifest rebuilds it; rho verify passes', async (t) => {
  const single = tmp('rho-bk-single-');
  await score({ inputs: INPUTS, output: single, unitDocs: 3 });
  const want = JSON.parse(readFileSync(join(single, LAYOUT.manifest), 'utf8')) as Manifest;

  const sharded = tmp('rho-bk-sharded-');
  const r0 = await score({ inputs: INPUTS, output: sharded, unitDocs: 3, rank: 0, worldSize: 3 });
  const r2 = await score({ inputs: INPUTS, output: sharded, unitDocs: 3, rank: 2, worldSize: 3 });
  t.is(r0.scope, 'rank');
  t.is(r2.scope, 'rank');
  t.false(existsSync(join(sharded, LAYOUT.manifest)), 'two of three ranks done: no manifest yet');
  // Before any manifest, status takes the input list from the ranks' run info.
  const st = await rho(['status', sharded, '--json']);
  t.is(st.code, 0, st.stderr);
  t.is(JSON.parse(st.stdout).inputs_from, 'summaries');
  t.false(JSON.parse(st.stdout).complete);

  const r1 = await score({ inputs: INPUTS, output: sharded, unitDocs: 3, rank: 1, worldSize: 3 });
  t.is(r1.scope, 'dir', 'rank 1 finished last');
  const got = JSON.parse(readFileSync(join(sharded, LAYOUT.manifest), 'utf8')) as Manifest;
  t.deepEqual(stripRun(got), stripRun(want));
  t.true(r0.run.units_written + r1.run.units_written + r2.run.units_written === want.totals.units_done);

  // Independent totals: DuckDB over the Parquet files.
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const [[rows, tokens]] = (await (await con.run(`SELECT count(*), sum(len(token_ids)) FROM read_parquet('${sharded}/**/*.parquet')`)).getRows()) as [bigint, bigint][];
  t.is(Number(rows), got.totals.scored);
  t.is(Number(tokens), got.totals.tokens);

  // By hand: the same manifest again from summaries and records.
  writeFileSync(join(sharded, LAYOUT.manifest), '{}');
  const m = await rho(['manifest', sharded, '--json']);
  t.is(m.code, 0, m.stderr);
  t.deepEqual(stripRun(JSON.parse(readFileSync(join(sharded, LAYOUT.manifest), 'utf8')) as Manifest), stripRun(want));
  t.is(JSON.parse(m.stdout).read.summaries_read, 3);
  t.is(JSON.parse(m.stdout).read.records_read, 0, 'every record came from a summary');

  const v = await rho(['verify', sharded]);
  t.is(v.code, 0, v.stdout + v.stderr);
  const s = await rho(['status', sharded, '--json']);
  t.true(JSON.parse(s.stdout).complete);
});

test('rho manifest on a dir no rank finished: exit 2 naming what is missing', async (t) => {
  const dir = tmp('rho-bk-none-');
  mkdirSync(join(dir, '_rho'), { recursive: true });
  writeFileSync(join(dir, LAYOUT.config), '{}\n');
  const r = await rho(['manifest', dir]);
  t.is(r.code, 2);
  t.regex(r.stderr, /no rank has finished yet/);
});

test('rho launch slurm follow-up step: rho manifest OUTPUT after every array task ended (afterany), a command bash parses', async (t) => {
  const { manifestStepArgs } = await import('../../pipeline/launch/slurm.js');
  const args = manifestStepArgs({ jobName: 'j', output: '/logs/%A_%a.log', partition: 'gpu', sbatch: ['--account=lm'], setup: ['module load x'], rhoCommand: 'rho',
    scoreArgs: ['--model', 'm.onnx', '--output', 's3://b/o u t', '--s3-endpoint=http://e:1'] }, '1234');
  t.true(args.includes('--dependency=afterany:1234'));
  t.true(args.includes('--partition=gpu') && args.includes('--account=lm'));
  t.true(args.includes('--output=/logs/%j_manifest.log'));
  const wrap = args.find((a) => a.startsWith('--wrap='))!.slice('--wrap='.length);
  t.is(wrap, "module load x && rho manifest 's3://b/o u t' --s3-endpoint http://e:1");
  const { spawnSync } = await import('node:child_process');
  t.is(spawnSync('bash', ['-n', '-c', wrap]).status, 0);
});
