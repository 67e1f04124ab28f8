import test from 'ava';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { tableFromArrays, tableToIPC, vectorFromArray, Table, Int32, Utf8 } from 'apache-arrow';
import * as pq from 'parquet-wasm';
import { readShard } from '../../stages/read.js';
import type { ReadItem } from '../../schemas/types.js';
import { requires } from '../requirements.js';

const dir = mkdtempSync(join(tmpdir(), 'rho-read-'));
const withZstd = requires('zstd');
async function all(path: string, idField?: string): Promise<ReadItem[]> {
  const out: ReadItem[] = [];
  for await (const it of readShard(path, { textField: 'text', idField })) out.push(it);
  return out;
}
const rejects = (items: ReadItem[]) => items.flatMap((i) => (i.kind === 'reject' ? [i.reject] : []));
const docs = (items: ReadItem[]) => items.flatMap((i) => (i.kind === 'doc' ? [i.doc] : []));

const badLines = [
  '{"id":"a","text":"good one"}',
  '{"id":"b","text":5}',
  '{"id":"c"}',
  '{"id":"d","text":null}',
  'this is not json',
  '["an","array"]',
  '',
  '{"id":"e","text":"nul \\u0000 inside"}',
  '{"id":"f","text":""}',
].join('\n') + '\n';

test('JSONL: every record is a document or a reject naming file, row and field', async (t) => {
  const p = join(dir, 'bad.jsonl');
  const bytes = Buffer.concat([Buffer.from(badLines), Buffer.from([0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0x0a])]);
  writeFileSync(p, bytes);
  const items = await all(p, 'id');
  t.deepEqual(items.map((i) => (i.kind === 'doc' ? i.doc.row : i.reject.row)), [0, 1, 2, 3, 4, 5, 6, 7, 8], 'blank line has no row; rows are contiguous');
  t.deepEqual(docs(items).map((d) => [d.id, d.text]), [['a', 'good one'], ['e', 'nul \u0000 inside'], ['f', '']]);
  const r = rejects(items);
  t.deepEqual(r.map((x) => [x.row, x.field, x.id]), [[1, 'text', 'b'], [2, 'text', 'c'], [3, 'text', 'd'], [4, 'line', null], [5, 'line', null], [8, 'line', null]]);
  t.regex(r[0].reason, /line 2: text field "text" is number/);
  t.regex(r[1].reason, /is missing/);
  t.regex(r[2].reason, /is null/);
  t.regex(r[3].reason, /line 5: malformed JSON/);
  t.regex(r[4].reason, /expected a JSON object, got an array/);
  t.regex(r[5].reason, /line 10: invalid UTF-8/);
  for (const x of r) t.is(x.source, p);
});

test('JSONL: default ids are <source>#<row>; missing id field is a reject', async (t) => {
  const p = join(dir, 'ids.jsonl');
  writeFileSync(p, '{"text":"x"}\n{"text":"y","id":7}\n');
  t.deepEqual(docs(await all(p)).map((d) => d.id), [`${p}#0`, `${p}#1`]);
  const items = await all(p, 'id');
  t.is(rejects(items)[0].field, 'id');
  t.is(docs(items)[0].id, '7');
});

withZstd('gzip and zstd: every document read; a truncated stream keeps what was read and rejects the rest', async (t) => {
  const body = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ id: `d${i}`, text: `document number ${i} ${'x'.repeat(i % 50)}` })).join('\n') + '\n';
  const gz = join(dir, 'a.jsonl.gz');
  writeFileSync(gz, gzipSync(body));
  t.is(docs(await all(gz, 'id')).length, 2000);
  const full = gzipSync(body);
  const cut = join(dir, 'cut.jsonl.gz');
  writeFileSync(cut, full.subarray(0, Math.floor(full.length / 2)));
  const items = await all(cut, 'id');
  const r = rejects(items);
  t.is(r.length, 1);
  t.is(r[0].field, 'file');
  t.regex(r[0].reason, /truncated gzip/);
  t.true(docs(items).length > 100 && docs(items).length < 2000);
  t.is(r[0].row, docs(items).length, 'the reject takes the row where reading stopped');

  const plain = join(dir, 'z.jsonl');
  writeFileSync(plain, body);
  execFileSync('zstd', ['-q', '-f', plain, '-o', `${plain}.zst`]);
  t.is(docs(await all(`${plain}.zst`, 'id')).length, 2000);
  const zfull = (await import('node:fs')).readFileSync(`${plain}.zst`);
  const zcut = join(dir, 'cut.jsonl.zst');
  writeFileSync(zcut, zfull.subarray(0, Math.floor(zfull.length / 2)));
  const zr = rejects(await all(zcut, 'id'));
  t.is(zr.length, 1);
  t.regex(zr[0].reason, /zstd/);
});

// "Streamed" means memory does not grow with the shard: a child process reads a 256 MiB (decompressed) shard,
// compressed to a few MiB (ratio ~100-500:1, the hard case for a decoder that decodes whole reads), and its peak
// RSS (VmHWM) may exceed the same child's peak on a 1 MiB shard by at most RSS_BUDGET_MIB. A reader that
// decompressed the whole file, or kept the documents, would need > 256 MiB more. (Before this test, .zst peaked
// at 654 MiB: the decoder got whole 1 MiB reads.)
const STREAM_MIB = 256;
const RSS_BUDGET_MIB = 96;
withZstd(`gzip and zstd are streamed: a ${STREAM_MIB} MiB shard needs at most ${RSS_BUDGET_MIB} MiB more peak RSS than a 1 MiB one`, async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'rho-read-big-'));
  const line = (i: number) => JSON.stringify({ id: `d${i}`, text: `document ${i} ${'lorem ipsum dolor sit amet '.repeat(40)}` }) + '\n';
  const per = Buffer.byteLength(line(0)) + 4;
  /** A JSONL shard of `mib` MiB, compressed with gzip and zstd; the plain file is removed. Returns the doc count. */
  const shard = (name: string, mib: number) => {
    const plain = join(d, name);
    const n = Math.ceil((mib << 20) / per);
    const fd = openSync(plain, 'w');
    let chunk: string[] = [];
    for (let i = 0; i < n; i++) {
      chunk.push(line(i));
      if (chunk.length === 4096 || i === n - 1) { writeSync(fd, chunk.join('')); chunk = []; }
    }
    closeSync(fd);
    t.true(statSync(plain).size >= mib << 20);
    execFileSync('zstd', ['-q', '-1', '-f', plain, '-o', `${plain}.zst`]);
    execFileSync('gzip', ['-1', '-k', '-f', plain]);
    unlinkSync(plain);
    return n;
  };
  const n = shard('big.jsonl', STREAM_MIB);
  const nSmall = shard('small.jsonl', 1);
  const reader = pathToFileURL(join(fileURLToPath(new URL('../../stages/read.js', import.meta.url)))).href;
  const child = join(d, 'read-child.mjs');
  writeFileSync(child, `import { readShard } from ${JSON.stringify(reader)};
import { readFileSync } from 'node:fs';
let docs = 0, chars = 0, rejects = 0;
for await (const it of readShard(process.argv[2], { textField: 'text', idField: 'id' })) {
  if (it.kind === 'doc') { docs++; chars += it.doc.text.length; } else rejects++;
}
const hwm = Number(/VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
console.log(JSON.stringify({ docs, chars, rejects, peakRssMiB: hwm }));
`);
  const read = (f: string) => JSON.parse(execFileSync(process.execPath, [child, f], { encoding: 'utf8', maxBuffer: 1 << 20 })) as { docs: number; chars: number; rejects: number; peakRssMiB: number };
  for (const ext of ['gz', 'zst']) {
    const small = read(join(d, `small.jsonl.${ext}`));
    const big = read(join(d, `big.jsonl.${ext}`));
    t.log(`.${ext}: ${(statSync(join(d, `big.jsonl.${ext}`)).size / 2 ** 20).toFixed(1)} MiB compressed, ${big.docs} docs, ${(big.chars / 2 ** 20).toFixed(0)} Mi chars: peak RSS ${big.peakRssMiB.toFixed(0)} MiB (1 MiB shard: ${small.peakRssMiB.toFixed(0)} MiB)`);
    t.deepEqual([small.docs, small.rejects, big.docs, big.rejects], [nSmall, 0, n, 0], ext);
    t.true(big.peakRssMiB - small.peakRssMiB < RSS_BUDGET_MIB, `.${ext}: peak RSS ${big.peakRssMiB.toFixed(0)} MiB reading ${STREAM_MIB} MiB vs ${small.peakRssMiB.toFixed(0)} MiB reading 1 MiB (budget +${RSS_BUDGET_MIB} MiB)`);
  }
  rmSync(d, { recursive: true, force: true });
});

test('an empty file has no documents', async (t) => {
  const p = join(dir, 'empty.jsonl');
  writeFileSync(p, '');
  t.deepEqual(await all(p), []);
});

function parquet(path: string, table: Table): void {
  writeFileSync(path, pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(table, 'stream'))));
}

test('Parquet: text column missing or of the wrong type rejects every row (accounted), nulls reject that row', async (t) => {
  const ok = join(dir, 'ok.parquet');
  parquet(ok, new Table({ id: vectorFromArray(['a', 'b', 'c'], new Utf8()), text: vectorFromArray(['one', null, 'three'], new Utf8()) }));
  const items = await all(ok, 'id');
  t.deepEqual(docs(items).map((d) => [d.row, d.id, d.text]), [[0, 'a', 'one'], [2, 'c', 'three']]);
  t.deepEqual(rejects(items).map((r) => [r.row, r.id, r.field]), [[1, 'b', 'text']]);

  const missing = join(dir, 'missing.parquet');
  parquet(missing, tableFromArrays({ body: ['x', 'y'] }));
  const m = rejects(await all(missing));
  t.deepEqual(m.map((r) => r.row), [0, 1]);
  t.regex(m[0].reason, /column "text" is missing/);

  const wrong = join(dir, 'wrong.parquet');
  parquet(wrong, new Table({ text: vectorFromArray([1, 2, 3], new Int32()) }));
  const w = rejects(await all(wrong));
  t.is(w.length, 3);
  t.regex(w[0].reason, /column "text" has type Int32, expected utf8/);
});

test('Arrow IPC file and stream formats', async (t) => {
  const tbl = new Table({ id: vectorFromArray(['a', 'b'], new Utf8()), text: vectorFromArray(['one', 'two'], new Utf8()) });
  for (const [name, kind] of [['f.arrow', 'file'], ['s.arrows', 'stream']] as const) {
    const p = join(dir, name);
    writeFileSync(p, tableToIPC(tbl, kind));
    t.deepEqual(docs(await all(p, 'id')).map((d) => [d.id, d.text]), [['a', 'one'], ['b', 'two']]);
  }
});
