// The streaming writer (stages/write.ts streamWriteStage): a unit's Parquet file leaves the writer row group by
// row group, before the unit's last document has come in, and the file is byte-identical to the whole-unit
// encoding (encodeTable over cutRowGroups) — same row-group cuts, same footer, metadata made final (row count)
// and sorted at the end. Read back by DuckDB and polars: every value of every row equals the documents given.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import pl from 'nodejs-polars';
import { streamWriteStage, encodeTable, scoredTable, ROW_GROUP_ROWS, type WriteStageOptions } from '../../stages/write.js';
import { compose } from '../../stages/stage.js';
import type { EncodedFlow, OrderedFlow, ScoredDocument, UnitRef } from '../../schemas/types.js';
import type { ScoreDtype } from '../../schemas/score-dtype.js';
import { tmp } from '../helpers.js';

/** A seeded generator (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const unit: UnitRef = { name: 'k/part-00000', source: 'data/a.jsonl', part: 0, firstRow: 0, key: 'k' };

function docs(n: number, maxLen: number, models: string[], opts: { entropy: boolean; projected?: Set<string> }, seed = 1): ScoredDocument[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, row) => {
    const len = 1 + Math.floor(r() * maxLen);
    const tokenIds = Int32Array.from({ length: len }, () => Math.floor(r() * 1000));
    const scores = new Map<string, { logprob: Float32Array; entropy?: Float32Array; nativeSum?: number }>();
    for (const m of models) {
      // Position 0 has no context (null); a projected model has NaN (null) where nothing was projected.
      const logprob = Float32Array.from({ length: len }, (_, i) => (i === 0 || (opts.projected?.has(m) && r() < 0.2) ? NaN : -r() * 10));
      const entropy = opts.entropy ? Float32Array.from({ length: len }, (_, i) => (i === 0 ? NaN : r() * 5)) : undefined;
      scores.set(m, { logprob, entropy, nativeSum: opts.projected?.has(m) ? (r() < 0.1 ? NaN : -r() * 100) : undefined });
    }
    return { source: unit.source, row, id: `doc-${row}-é`, text: '', docSeq: row, tokenIds, scores };
  });
}

const metadata = (u: UnitRef, records: number) => new Map([['rho.z', 'last'], ['rho.unit', JSON.stringify({ source: u.source, part: u.part, first_row: u.firstRow, rows: records })], ['rho.a', 'first']]);

async function stream(all: ScoredDocument[], rejectRows: Set<number>, opts: WriteStageOptions & { rowGroupBytes: number }) {
  let fed = 0;
  const firstDataAfter: number[] = [];
  const records = all.length + rejectRows.size;
  async function* input(): AsyncGenerator<OrderedFlow<ScoredDocument>> {
    let d = 0;
    for (let row = 0; row < records; row++) {
      if (rejectRows.has(row)) yield { kind: 'reject', unit, reject: { source: unit.source, row, id: null, field: 'text', reason: 'test' } };
      else { fed++; yield { kind: 'doc', unit, doc: { ...all[d++], row } }; }
    }
    yield { kind: 'end', unit, records };
  }
  const out: EncodedFlow[] = [];
  const c = compose<EncodedFlow>(input(), [streamWriteStage(opts)], { rank: 0, worldSize: 1, crashPoint: () => undefined });
  for await (const it of c.output) {
    if (it.kind === 'data' && firstDataAfter.length === 0) firstDataAfter.push(fed);
    out.push(it);
  }
  const pieces = out.filter((x) => x.kind === 'data').map((x) => (x as { bytes: Uint8Array }).bytes);
  const bytes = new Uint8Array(pieces.reduce((a, b) => a + b.length, 0));
  let at = 0;
  for (const p of pieces) { bytes.set(p, at); at += p.length; }
  // The documents as written (rows renumbered around the rejects), for the whole-unit encoding.
  const written: ScoredDocument[] = [];
  for (let row = 0, d = 0; row < records; row++) if (!rejectRows.has(row)) written.push({ ...all[d++], row });
  return { bytes, pieces: pieces.length, firstDataAfter: firstDataAfter[0], last: out.at(-1)!, written, records };
}

const cases: { name: string; models: string[]; entropy: boolean; dtype: ScoreDtype; projected?: Set<string>; n: number; maxLen: number; groupBytes: number }[] = [
  { name: 'one model, float32, cut by bytes', models: ['ref'], entropy: false, dtype: 'float32', n: 600, maxLen: 300, groupBytes: 50_000 },
  { name: 'two models with entropy, float16, cut by bytes', models: ['ref', 'base'], entropy: true, dtype: 'float16', n: 400, maxLen: 200, groupBytes: 80_000 },
  { name: 'a projected model (own tokenizer), bfloat16', models: ['ref', 'other'], entropy: false, dtype: 'bfloat16', projected: new Set(['other']), n: 300, maxLen: 150, groupBytes: 30_000 },
  { name: 'short documents, cut by rows (ROW_GROUP_ROWS)', models: ['ref'], entropy: false, dtype: 'float32', n: ROW_GROUP_ROWS * 2 + 17, maxLen: 4, groupBytes: 64 << 20 },
];

for (const c of cases) {
  test(`streamed file = whole-unit encoding, byte for byte, and read back by DuckDB and polars: ${c.name}`, async (t) => {
    const opts = { models: c.models, entropy: c.entropy, scoreDtype: c.dtype, spec: { contextTokens: 4096, strideTokens: 4096 }, format: 'parquet' as const, metadata, projected: c.projected, rowGroupBytes: c.groupBytes };
    const all = docs(c.n, c.maxLen, c.models, { entropy: c.entropy, projected: c.projected });
    const rejectRows = new Set([3, 250, c.n - 5]);
    const s = await stream(all, rejectRows, opts);
    // Streamed: the first bytes came out while most documents were still to come.
    t.true(s.pieces > 2, `${s.pieces} pieces`);
    t.true(s.firstDataAfter < c.n / 2, `first bytes after ${s.firstDataAfter} of ${c.n} documents`);
    t.like(s.last, { kind: 'unit', records: s.records, scored: c.n });
    t.is((s.last as { rejects: unknown[] }).rejects.length, rejectRows.size);
    // The whole-unit encoding of the same rows, same metadata (its row count includes the rejects).
    const whole = encodeTable(scoredTable(s.written, c.models, c.entropy, opts.spec, metadata(unit, s.records), c.dtype, c.projected ?? new Set()), 'parquet', { rowGroupBytes: c.groupBytes });
    t.is(s.bytes.length, whole.length);
    t.true(Buffer.from(s.bytes).equals(Buffer.from(whole)), 'bytes differ from the whole-unit encoding');

    const dir = tmp('rho-stream-write-');
    const file = join(dir, 'unit.parquet');
    writeFileSync(file, s.bytes);
    const con = await (await DuckDBInstance.create(':memory:')).connect();
    const [[groups]] = (await (await con.run(`SELECT count(DISTINCT row_group_id) FROM parquet_metadata('${file}')`)).getRows()) as [bigint][];
    t.true(Number(groups) > 2, `${groups} row groups`);
    const [[kv]] = (await (await con.run(`SELECT decode(value) FROM parquet_kv_metadata('${file}') WHERE decode(key) = 'rho.unit'`)).getRows()) as [string][];
    t.is(JSON.parse(kv).rows, s.records, 'the footer holds the final row count');
    const rows = (await (await con.run(`SELECT id, "row", token_ids, ${c.models[0]}_logprob FROM read_parquet('${file}') ORDER BY "row"`)).getRows()) as [string, bigint, { items: number[] }, { items: (number | null)[] }][];
    t.is(rows.length, c.n);
    let bad = 0;
    const tol = c.dtype === 'float32' ? 0 : c.dtype === 'float16' ? 1e-2 : 5e-2; // relative: half-precision storage
    rows.forEach(([id, row, ids, lp], i) => {
      const d = s.written[i];
      if (id !== d.id || Number(row) !== d.row || ids.items.join() !== [...d.tokenIds].join()) bad++;
      const want = d.scores.get(c.models[0])!.logprob;
      lp.items.forEach((v, j) => {
        if (Number.isNaN(want[j]) ? v !== null : v === null || Math.abs(v - want[j]) > tol * Math.abs(want[j]) + 1e-6) bad++;
      });
    });
    t.is(bad, 0, 'values read back by DuckDB differ from the documents');
    const df = pl.readParquet(file);
    t.is(df.height, c.n);
    t.deepEqual(df.getColumn('id').toArray(), s.written.map((d) => d.id));
  });
}

test('an abandoned unit is dropped: its partial bytes end, and it gives no `unit`', async (t) => {
  const opts = { models: ['ref'], entropy: false, spec: { contextTokens: 4096, strideTokens: 4096 }, format: 'parquet' as const, metadata, rowGroupBytes: 20_000 };
  const all = docs(300, 200, ['ref'], { entropy: false });
  async function* input(): AsyncGenerator<OrderedFlow<ScoredDocument>> {
    for (const d of all) yield { kind: 'doc', unit, doc: d };
    yield { kind: 'abandon', unit };
  }
  const out: EncodedFlow[] = [];
  for await (const it of compose<EncodedFlow>(input(), [streamWriteStage(opts)], { rank: 0, worldSize: 1, crashPoint: () => undefined }).output) out.push(it);
  t.true(out.filter((x) => x.kind === 'data').length > 0);
  t.is(out.at(-1)!.kind, 'abandon');
  t.false(out.some((x) => x.kind === 'unit'));
});
