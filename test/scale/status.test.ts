// rho status over a real output dir scored by some ranks only, with claims of live and dead runners.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, statSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { runStatus } from '../../pipeline/launch/status.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { RHO, score, shardPath, tmp } from '../helpers.js';

const INPUTS = [shardPath('clean.jsonl'), shardPath('mixed.parquet')];
const UNIT_DOCS = 3;

function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => { for (const n of readdirSync(d)) { const p = join(d, n); if (statSync(p).isDirectory()) walk(p); else out.push(p); } };
  walk(dir);
  return out;
}

async function expectedUnits(): Promise<number> {
  // Rows counted independently of rho: non-blank JSONL lines, and DuckDB's count of the Parquet file.
  const jsonlRows = readFileSync(INPUTS[0], 'utf8').split('\n').filter((l) => l.trim() !== '').length;
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const pqRows = Number((await (await con.run(`SELECT count(*) FROM read_parquet('${INPUTS[1]}')`)).getRows())[0][0]);
  return Math.ceil(jsonlRows / UNIT_DOCS) + Math.ceil(pqRows / UNIT_DOCS);
}

function rhoStatus(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(RHO, ['status', ...args], (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
  });
}

test('status of a run where only rank 0 of 3 ran: done/missing counts, tokens, ranks with work; then claims; then complete', async (t) => {
  const out = tmp('rho-status-');
  await score({ inputs: INPUTS, output: out, unitDocs: UNIT_DOCS, rank: 0, worldSize: 3 });
  const total = await expectedUnits();
  const doneFiles = files(join(out, '_rho', 'done')).filter((f) => f.endsWith('.json'));
  t.true(doneFiles.length > 0 && doneFiles.length < total, `rank 0 did ${doneFiles.length} of ${total}`);

  const store = new LocalStore(out);
  let s = await runStatus(store, { inputs: INPUTS, worldSize: 3 });
  t.is(s.units.total, total);
  t.is(s.units.done, doneFiles.length);
  t.is(s.units.missing, total - doneFiles.length);
  t.deepEqual(s.ranks_with_work, [1, 2]);
  t.false(s.complete);
  t.true(s.pending.every((u) => u.owner !== 0));
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const tokens = Number((await (await con.run(`SELECT sum(len(token_ids)) FROM read_parquet('${out}/**/*.parquet')`)).getRows())[0][0]);
  t.is(s.tokens, tokens);

  // A runner of rank 1 died holding one unit (lease expired); a rank-2 runner is working on another.
  const [dead, live] = [s.pending.find((u) => u.owner === 1)!, s.pending.find((u) => u.owner === 2)!];
  const claim = (unit: string, body: object) => {
    const p = join(out, '_rho', 'claims', `${unit}.g0.json`);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, JSON.stringify({ unit, gen: 0, runner: 'node-a:123:ab', host: 'node-a', pid: 123, ...body }));
  };
  claim(dead.unit, { rank: 1, expires_at: Date.now() - 60_000, state: 'working' });
  claim(live.unit, { rank: 2, expires_at: Date.now() + 600_000, state: 'working' });
  s = await runStatus(store, { inputs: INPUTS, worldSize: 3 });
  t.is(s.units.failed, 1);
  t.is(s.units.claimed, 1);
  t.is(s.units.missing, total - doneFiles.length - 2);
  t.is(s.pending.find((u) => u.unit === dead.unit)!.state, 'failed');
  t.regex(s.pending.find((u) => u.unit === dead.unit)!.claim!.error!, /lease expired/);

  // The CLI: same numbers as JSON; human text names the states.
  const cli = await rhoStatus([out, '--input', ...INPUTS, '--world-size', '3', '--json']);
  t.is(cli.code, 0, cli.stderr);
  const j = JSON.parse(cli.stdout);
  t.deepEqual(j.units, s.units);
  const text = await rhoStatus([out, '--input', ...INPUTS, '--world-size', '3']);
  t.regex(text.stdout, new RegExp(`${s.units.done}/${total} done, 1 claimed \\(running\\), 1 failed or abandoned`));
  t.regex(text.stdout, /ranks with work left: 1,2/);

  // Ranks 1 and 2 finish the rest (the live claim belongs to nobody real: drop it, as its lease would end).
  rmSync(join(out, '_rho', 'claims'), { recursive: true });
  await score({ inputs: INPUTS, output: out, unitDocs: UNIT_DOCS, rank: 1, worldSize: 3 });
  await score({ inputs: INPUTS, output: out, unitDocs: UNIT_DOCS, rank: 2, worldSize: 3 });
  // Without --input: the input list comes from manifest.json.
  s = await runStatus(store, { worldSize: 3 });
  t.is(s.inputs_from, 'manifest');
  t.is(s.units.done, total);
  t.true(s.complete);
  t.deepEqual(s.ranks_with_work, []);
});

test('status of a folder that is not a rho output exits 2 with a clear message', async (t) => {
  const r = await rhoStatus([tmp('rho-status-empty-')]);
  t.is(r.code, 2);
  t.regex(r.stderr, /is not a rho output \(no _rho\/config\.json\)/);
});
