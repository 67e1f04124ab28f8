// Corrupt columnar inputs are accounted, not fatal: flipped bytes in a Parquet data page, a truncated
// Parquet file (footer gone), a truncated Arrow file. Each becomes rejects naming the file, the rows and the
// decoder's message; the good shards are scored; the exit code follows --max-reject-ratio; verify passes.
import test from 'ava';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Table, tableFromArrays, tableToIPC } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { CACHE, TOKENIZER, modelPath, readRows, tmp, runRho } from '../helpers.js';
import { EXIT } from '../../schemas/errors.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';
import { readShard } from '../../stages/read.js';
import { LAYOUT } from '../../schemas/layout.js';

const rho = runRho;

const dir = tmp('rho-corrupt-');
const N = 300;
const table = tableFromArrays({
  id: Array.from({ length: N }, (_, i) => `r${i}`),
  text: Array.from({ length: N }, (_, i) => `row ${i} has some words${' and more'.repeat(i % 5)}.`),
});
// Three row groups of 100 rows, uncompressed so that flipped bytes land in a data page's values.
const pqBytes = pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, 'stream')),
  new pq.WriterPropertiesBuilder().setMaxRowGroupSize(100).setCompression(pq.Compression.UNCOMPRESSED).build());
const flipped = new Uint8Array(pqBytes);
const mid = Math.floor(pqBytes.length / 2);
for (let i = 0; i < 40; i++) flipped[mid + i] ^= 0xff;
const arrowBytes = tableToIPC(new Table([...table.slice(0, 100).batches, ...table.slice(100, 200).batches, ...table.slice(200).batches]), 'file');

const paths = {
  good: join(dir, 'good.jsonl'),
  flipped: join(dir, 'flipped.parquet'),
  truncPq: join(dir, 'truncated.parquet'),
  truncArrow: join(dir, 'truncated.arrow'),
  goodArrow: join(dir, 'z-good.arrow'),
};
writeFileSync(paths.good, Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `g${i}`, text: `good document ${i}` })).join('\n') + '\n');
writeFileSync(paths.flipped, flipped);
writeFileSync(paths.truncPq, pqBytes.subarray(0, Math.floor(pqBytes.length / 2)));
writeFileSync(paths.truncArrow, arrowBytes.subarray(0, Math.floor(arrowBytes.length / 2)));
writeFileSync(paths.goodArrow, arrowBytes);

async function read(path: string) {
  const out = { docs: 0, rejects: [] as { row: number; field: string; reason: string }[] };
  for await (const it of readShard(path, { textField: 'text', idField: 'id' })) {
    if (it.kind === 'doc') out.docs++;
    else out.rejects.push(it.reject);
  }
  return out;
}

test('reader: an undecodable Parquet row group is rejected row by row (rows from the footer), the other row groups are read', async (t) => {
  const r = await read(paths.flipped);
  t.is(r.docs + r.rejects.length, N, 'every row of the footer is accounted for');
  t.true(r.rejects.length >= 100 && r.rejects.length % 100 === 0, `whole row groups rejected (${r.rejects.length})`);
  t.true(r.docs >= 100);
  const first = r.rejects[0];
  t.is(first.field, 'file');
  t.regex(first.reason, /row group \d \(rows \d+\.\.\d+\) could not be decoded/);
  t.regex(first.reason, /unreachable|error/i, 'the decoder\'s message');
  // The process (and its own parquet-wasm, which writes our outputs) is unharmed: a good file reads in full.
  t.is((await read(paths.goodArrow)).docs, N);
});

test('reader: a Parquet or Arrow file without its footer is one reject naming the file; rows unknown', async (t) => {
  for (const p of [paths.truncPq, paths.truncArrow]) {
    const r = await read(p);
    t.is(r.docs, 0);
    t.is(r.rejects.length, 1);
    t.is(r.rejects[0].row, 0);
    t.regex(r.rejects[0].reason, /not a readable (Parquet|Arrow IPC) file \(.+\); no row of it could be read/);
  }
});

test('score: corrupt shards are rejects, the good ones are scored, the exit code follows --max-reject-ratio, verify passes', async (t) => {
  const inputs = Object.values(paths).flatMap((p) => ['--input', p]);
  const args = (out: string, ratio: string) => ['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER, ...inputs, '--output', out,
    '--id-field', 'id', '--context', '16', '--cache-dir', CACHE, '--no-progress', '--json', '--max-reject-ratio', ratio];
  const out = join(dir, 'out');
  const strict = await rho(args(out, '0.01'));
  t.is(strict.code, EXIT.tooManyRejects, strict.stderr);
  const summary = JSON.parse(strict.stdout) as { totals: { docs_in: number; scored: number; rejected: number } };
  const flippedRead = await read(paths.flipped);
  t.is(summary.totals.scored, 20 + N + flippedRead.docs, 'good JSONL + good Arrow + readable row groups');
  t.is(summary.totals.rejected, flippedRead.rejects.length + 2);
  t.is(summary.totals.docs_in, summary.totals.scored + summary.totals.rejected);
  const rejectFiles = readdirSync(join(out, LAYOUT.rejectsDir), { recursive: true }).map(String).filter((f) => f.endsWith('.jsonl'));
  const rejected = rejectFiles.flatMap((f) => readFileSync(join(out, LAYOUT.rejectsDir, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { source: string }));
  t.deepEqual([...new Set(rejected.map((r) => r.source))].sort(), [paths.flipped, paths.truncPq, paths.truncArrow].sort());
  t.is(new Set(readRows(out).map((r) => r.source)).size, 3, 'good JSONL, good Arrow and the flipped Parquet have scored rows');
  const v = await verifyOutput(out, { inputs: true });
  t.deepEqual(v.errors, []);
  // A rerun is complete already; a lenient ratio gives exit 0.
  const lenient = await rho(args(out, '1'));
  t.is(lenient.code, 0, lenient.stderr);
  t.regex(lenient.stdout, /"units_written":0/);
  const cli = await rho(['verify', out, '--no-progress']);
  t.is(cli.code, 0, cli.stdout + cli.stderr);
});
