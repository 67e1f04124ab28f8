// Memory bounded by what is in flight, not by the unit: a unit's documents leave the ordering stage as soon as
// every earlier row has come, and its Parquet file is written row group by row group (streamed into the staged
// file), so a unit of 10·N documents needs no more memory than a unit of N. Measured in the child process:
// /usr/bin/time's max RSS of `rho score` with the JS heap capped (--max-old-space-size), so that V8's lazy
// collection does not hide what is really held (and one malloc arena, so that fragmentation does not either).
// Before this change (the unit buffered whole, encoded in one piece) the 20,000-document unit died of heap
// exhaustion under the same cap (SIGABRT, exit 134; 30,000 documents under a 32 MB cap too); after it,
// 2,000 → 20,000 documents: 186 → 193 MB (3,000 → 30,000 under 32 MB: 190 → 195 MB). The values are checked against the independent oracle
// (fixtures/reference/expected.json: PyTorch log_softmax, window rule in Python) with DuckDB.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { CACHE, FIX, RHO, ROOT, TOKENIZER, modelPath, shardPath, tmp, runRho } from '../helpers.js';

interface ExpectedDoc { id: string; token_ids: number[]; logprob: (number | null)[] }
interface ExpectedConfig { model: string; shard: string; context: number; stride: number; docs: ExpectedDoc[] }
const CONFIG = (JSON.parse(readFileSync(join(FIX, 'reference', 'expected.json'), 'utf8')) as { configs: ExpectedConfig[] }).configs
  .find((c) => c.model === 'llama' && c.shard === 'clean.jsonl' && c.context === 256 && c.stride === 256)!;
// Two short fixture documents (20 and 26 tokens), cycled: many rows, few tokens to score on this machine.
const ORIGINALS = ['clean-003', 'clean-004'];
const TEXT = new Map(readFileSync(shardPath('clean.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; text: string }).map((d) => [d.id, d.text]));
const N = 2000;
const HEAP_MB = 24;
const TOL = 1e-4;

function shard(docs: number): string {
  const file = join(tmp('rho-unit-mem-in-'), `u${docs}.jsonl`);
  const lines: string[] = [];
  for (let i = 0; i < docs; i++) {
    const id = ORIGINALS[i % ORIGINALS.length];
    lines.push(JSON.stringify({ id: `${id}~${i}`, text: TEXT.get(id) }));
  }
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

/** Score one shard as one unit under /usr/bin/time; max RSS in MB. */
function scoreOneUnit(input: string, out: string, docs: number): Promise<{ code: number | null; rssMb: number; stderr: string }> {
  const argv = [
    '-f', 'maxrss_kb=%M', RHO, 'score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, '--input', input, '--output', out,
    '--id-field', 'id', '--context', '256', '--stride', '256', '--unit-docs', String(docs), '--no-progress',
  ];
  return new Promise((resolve) => {
    execFile('/usr/bin/time', argv, { cwd: ROOT, env: { ...process.env, RHO_CACHE_DIR: CACHE, NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}`, MALLOC_ARENA_MAX: '1' }, maxBuffer: 64 << 20 }, (err, _stdout, stderr) => {
      const m = /maxrss_kb=(\d+)/.exec(stderr);
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, rssMb: m ? Number(m[1]) / 1024 : NaN, stderr });
    });
  });
}

test(`a unit of ${10 * N} documents needs no more memory than one of ${N}, and its values equal the oracle`, async (t) => {
  if (!existsSync('/usr/bin/time')) return t.fail('/usr/bin/time is needed to measure peak RSS: apt-get install time');
  t.timeout(300_000);
  const small = await scoreOneUnit(shard(N), tmp('rho-unit-mem-'), N);
  t.is(small.code, 0, small.stderr.slice(-2000));
  const outBig = tmp('rho-unit-mem-');
  const big = await scoreOneUnit(shard(10 * N), outBig, 10 * N);
  t.is(big.code, 0, `the ${10 * N}-document unit failed under a ${HEAP_MB} MB heap: ${big.stderr.slice(-2000)}`);
  t.log(`max RSS: ${N} documents ${small.rssMb.toFixed(0)} MB, ${10 * N} documents ${big.rssMb.toFixed(0)} MB (JS heap capped at ${HEAP_MB} MB)`);
  // Measured on the 2-core dev machine: +5..10 MB in four runs (the heap filling up to its cap, code, allocator).
  t.true(big.rssMb - small.rssMb < 20, `peak RSS grew by ${(big.rssMb - small.rssMb).toFixed(0)} MB from ${N} to ${10 * N} documents in one unit`);

  const con = await (await DuckDBInstance.create(':memory:')).connect();
  const files = `read_parquet('${outBig}/**/*.parquet')`;
  const [[rows, files_, groups]] = (await (await con.run(`SELECT count(*), count(DISTINCT filename), (SELECT count(DISTINCT row_group_id) FROM parquet_metadata('${outBig}/**/*.parquet')) FROM read_parquet('${outBig}/**/*.parquet', filename = true)`)).getRows()) as [bigint, bigint, bigint][];
  t.is(Number(rows), 10 * N);
  t.is(Number(files_), 1, 'one unit, one file');
  t.true(Number(groups) > 1, `${groups} row groups: the file was written in pieces`);
  // The oracle's values per original document and position.
  const expected = ORIGINALS.map((id) => CONFIG.docs.find((d) => d.id === id)!);
  await con.run(`CREATE TABLE want(oid VARCHAR, i INTEGER, lp DOUBLE)`);
  await con.run(`INSERT INTO want VALUES ${expected.flatMap((d) => d.logprob.map((v, i) => `('${d.id}', ${i}, ${v === null ? 'NULL' : v})`)).join(', ')}`);
  await con.run(`CREATE TABLE ids(oid VARCHAR, ids INTEGER[])`);
  await con.run(`INSERT INTO ids VALUES ${expected.map((d) => `('${d.id}', [${d.token_ids.join(',')}])`).join(', ')}`);
  const [[badIds]] = (await (await con.run(`SELECT count(*) FROM ${files} p JOIN ids ON split_part(p.id, '~', 1) = ids.oid WHERE p.token_ids <> ids.ids OR p."row" <> CAST(split_part(p.id, '~', 2) AS BIGINT)`)).getRows()) as [bigint][];
  t.is(Number(badIds), 0, 'token ids or rows differ from the oracle');
  const [[compared, maxDiff, nullMismatch]] = (await (await con.run(`
    WITH got AS (SELECT split_part(id, '~', 1) AS oid, generate_subscripts(ref_logprob, 1) - 1 AS i, unnest(ref_logprob) AS lp FROM ${files})
    SELECT count(*), max(abs(got.lp - want.lp)), count(*) FILTER (WHERE (got.lp IS NULL) <> (want.lp IS NULL))
    FROM got JOIN want USING (oid, i)`)).getRows()) as [bigint, number, bigint][];
  const tokens = expected.reduce((a, d) => a + d.token_ids.length, 0) * (10 * N / ORIGINALS.length);
  t.is(Number(compared), tokens, 'every token compared');
  t.is(Number(nullMismatch), 0, 'null positions (window rule) differ from the oracle');
  t.true(maxDiff <= TOL, `max |diff| ${maxDiff} > ${TOL}`);
  t.log(`${compared} tokens compared with the oracle, max |diff| ${Number(maxDiff).toExponential(2)}`);
  const v = await runRho(['verify', outBig, '--no-progress']);
  t.is(v.code, 0, v.stdout + v.stderr);
});
