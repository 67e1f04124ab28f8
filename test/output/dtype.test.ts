// Compact lake output: Parquet encodings as written (DuckDB parquet_metadata), --score-dtype float16/bfloat16 read
// back as floats by DuckDB and polars within the stated error bound, row groups bounded by bytes.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import pl from 'nodejs-polars';
import { score, tmp, shardPath, dataFiles, readTable } from '../helpers.js';
import { SCORE_DTYPE_ERROR, bfloat16Round, float16Bits, float16Table, type ScoreDtype } from '../../schemas/score-dtype.js';
import { encodeTable, decodeTable } from '../../stages/write.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';

let db: DuckDBConnection;
const dirs = new Map<ScoreDtype, string>();
test.before(async () => {
  db = await (await DuckDBInstance.create(':memory:')).connect();
  for (const d of ['float32', 'float16', 'bfloat16'] as const) {
    const out = tmp(`rho-dtype-${d}-`);
    await score({ inputs: [shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz')], output: out, entropy: true, scoreDtype: d });
    dirs.set(d, out);
  }
});

async function duck(sql: string): Promise<Record<string, unknown>[]> {
  return (await db.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

const glob = (d: ScoreDtype) => `'${dirs.get(d)}/*/*.parquet'`;

test('no dictionary encoding anywhere; loss_mean byte-stream-split; list leaves PLAIN (parquet_metadata)', async (t) => {
  const rows = await duck(`select path_in_schema p, encodings e, type from parquet_metadata(${glob('float32')})`);
  t.true(rows.length > 0);
  for (const r of rows) {
    t.false(String(r.e).includes('DICTIONARY'), `${String(r.p)}: ${String(r.e)}`);
    if (String(r.p) === 'ref_loss_mean') t.true(String(r.e).includes('BYTE_STREAM_SPLIT'), String(r.e));
    if (String(r.p).startsWith('ref_logprob')) t.is(String(r.type), 'FLOAT');
  }
  const half = await duck(`select distinct type from parquet_metadata(${glob('float16')}) where path_in_schema like 'ref_logprob%'`);
  t.deepEqual(half.map((r) => String(r.type)), ['FIXED_LEN_BYTE_ARRAY']);
});

test('default float32 output keeps the contract types', async (t) => {
  const file = dataFiles(dirs.get('float32')!)[0];
  const schema = readTable(file).schema;
  t.is(String(schema.fields.find((f) => f.name === 'ref_logprob')!.type), 'List<Float32>');
  t.is(String(schema.fields.find((f) => f.name === 'ref_entropy')!.type), 'List<Float32>');
  t.is(String(schema.fields.find((f) => f.name === 'token_ids')!.type), 'List<Int32>');
  t.is(schema.metadata.get('rho.score_dtype'), 'float32');
});

for (const d of ['float16', 'bfloat16'] as const) {
  test(`${d}: DuckDB reads floats within the stated bound of the float32 run, nulls in the same places`, async (t) => {
    const { rel, abs } = SCORE_DTYPE_ERROR[d];
    const q = await duck(`
      with a as (select source, row, unnest(ref_logprob) x, unnest(ref_entropy) ex, generate_subscripts(ref_logprob, 1) i from ${glob('float32')}),
           b as (select source, row, unnest(ref_logprob) y, unnest(ref_entropy) ey, generate_subscripts(ref_logprob, 1) i from ${glob(d)})
      select count(*)::int n,
             sum(case when (x is null) <> (y is null) then 1 else 0 end)::int null_mismatch,
             max(abs(y - x) - (${rel} * abs(x) + ${abs}))::double worst_excess,
             max(abs(ey - ex) - (${rel} * abs(ex) + ${abs}))::double worst_excess_entropy,
             max(abs(y - x))::double max_abs_err,
             any_value(typeof(y)) ty
      from a join b using (source, row, i)`);
    const r = q[0];
    t.true(Number(r.n) > 20000, `tokens compared: ${String(r.n)}`);
    t.is(r.null_mismatch, 0);
    t.is(r.ty, 'FLOAT');
    t.true(Number(r.worst_excess) <= 0, `worst excess over the bound ${String(r.worst_excess)}`);
    t.true(Number(r.worst_excess_entropy) <= 0, `entropy: worst excess over the bound ${String(r.worst_excess_entropy)}`);
    t.true(Number(r.max_abs_err) > 0, 'rounding happened (the dtype is really stored)');
    t.log(`${d}: max |error| ${Number(r.max_abs_err).toExponential(3)} over ${String(r.n)} tokens`);
  });

  test(`${d}: polars reads a float list and the values agree with DuckDB`, async (t) => {
    const file = dataFiles(dirs.get(d)!)[0];
    const df = pl.readParquet(file);
    if (d === 'float16') {
      // polars reads Parquet FLOAT16 as its Float16 dtype; nodejs-polars 0.25 cannot even name that dtype in JS.
      const e = t.throws(() => df.select(pl.col('ref_logprob')).schema);
      t.regex(String(e?.message), /Float16/);
    } else t.regex(String(df.select(pl.col('ref_logprob')).schema.ref_logprob), /Float32/);
    // nodejs-polars cannot hand Float16 values to JS: cast to Float32 (exact) first.
    const sum = df.select(pl.col('ref_logprob').cast(pl.List(pl.Float64)).explode().sum().alias('s')).getColumn('s').get(0) as number;
    const want = (await duck(`select sum(list_sum(ref_logprob))::double s from '${file}'`))[0].s as number;
    t.true(Math.abs(sum - want) <= 1e-9 * Math.abs(want) + 1e-6, `${sum} vs ${want}`);
  });

  test(`${d}: rho verify accepts the output and provenance records the dtype`, async (t) => {
    const rep = await verifyOutput(dirs.get(d)!, { inputs: false, progress: false });
    t.deepEqual(rep.errors, []);
    t.true(rep.ok);
    const md = readTable(dataFiles(dirs.get(d)!)[0]).schema.metadata;
    t.is(md.get('rho.score_dtype'), d);
    t.is((JSON.parse(md.get('rho')!) as { score_dtype: string }).score_dtype, d);
    const cfg = JSON.parse(readFileSync(`${dirs.get(d)!}/_rho/config.json`, 'utf8')) as { score_dtype?: string };
    t.is(cfg.score_dtype, d, 'the dtype is part of the run identity');
  });
}

test('float16 and bfloat16 rounding: independent checks of the bound on edge values', (t) => {
  const table = float16Table();
  const vals = [0, -0, 1e-9, -3e-5, 6.1e-5, -0.1, -1 / 3, -2.5, -10.37, -12.7, -31.999, -65504, -70000, 1234.5678];
  for (const x of vals) {
    const h = table[float16Bits(x)];
    const { rel, abs } = SCORE_DTYPE_ERROR.float16;
    if (Math.abs(x) <= 65504) t.true(Math.abs(h - x) <= rel * Math.abs(x) + abs, `float16 ${x} -> ${h}`);
    else t.is(h, -Infinity);
    const b = bfloat16Round(x);
    t.true(Math.abs(b - x) <= SCORE_DTYPE_ERROR.bfloat16.rel * Math.abs(x), `bfloat16 ${x} -> ${b}`);
    const u = new Uint32Array(new Float32Array([b]).buffer)[0];
    t.is(u & 0xffff, 0, 'bfloat16 keeps only the high 16 bits');
  }
  t.true(Number.isNaN(bfloat16Round(NaN)));
});

test('float32 config identity has no score_dtype key (dirs scored before the option stay resumable)', (t) => {
  const cfg = JSON.parse(readFileSync(`${dirs.get('float32')!}/_rho/config.json`, 'utf8')) as Record<string, unknown>;
  t.false('score_dtype' in cfg);
});

test('row groups are cut by bytes as well as rows, and read back identical', async (t) => {
  const file = dataFiles(dirs.get('float32')!).find((f) => f.includes('noisy'))!;
  const table = readTable(file);
  const bytes = encodeTable(table, 'parquet', { rowGroupBytes: 32 * 1024 });
  const out = `${tmp('rho-rg-')}/rg.parquet`;
  (await import('node:fs')).writeFileSync(out, bytes);
  const groups = await duck(`select row_group_id, any_value(row_group_num_rows)::int n from parquet_metadata('${out}') group by 1 order by 1`);
  t.true(groups.length > 3, `row groups: ${groups.length}`);
  const same = await duck(`select count(*)::int n from (select * from '${out}' except select * from '${file}')`);
  t.is(same[0].n, 0);
  const back = decodeTable(bytes, 'parquet');
  t.is(back.numRows, table.numRows);
  const rows = (x: typeof table) => x.toArray().map((r) => JSON.stringify(r.toJSON(), (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v && typeof v === 'object' && Symbol.iterator in v ? [...(v as Iterable<unknown>)] : v)));
  t.deepEqual(rows(back), rows(table));
});

for (const d of ['float16', 'bfloat16'] as const) {
  test(`${d}: stats, report, select and export read it, and agree with the float32 run within the bound`, async (t) => {
    const { computeStats } = await import('../../inspect/stats.js');
    const { makeReport } = await import('../../inspect/report.js');
    const { runSelect } = await import('../../pipeline/jobs/select.js');
    const { runExport } = await import('../../pipeline/jobs/export.js');
    const a = await computeStats(dirs.get('float32')!);
    const b = await computeStats(dirs.get(d)!);
    const ma = a.groups[0].metrics[Object.keys(a.groups[0].metrics)[0]];
    const mb = b.groups[0].metrics[Object.keys(b.groups[0].metrics)[0]];
    t.is(mb.count, ma.count);
    const { rel, abs } = SCORE_DTYPE_ERROR[d];
    t.true(Math.abs(mb.mean! - ma.mean!) <= rel * Math.abs(ma.mean!) + abs + 1e-9, `mean ${mb.mean} vs ${ma.mean}`);
    const rep = await makeReport(dirs.get(d)!, {});
    t.true(rep.html.length > 1000);
    const sel = `${tmp('rho-dtype-sel-')}/sel`;
    const r = await runSelect({ input: dirs.get(d)!, output: sel, ratio: 0.6, by: 'ref_loss', scope: 'global', batchTokens: 1, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: false, progress: false });
    t.true(Math.abs(r.totals.fraction - 0.6) < 0.01);
    const mm = `${tmp('rho-dtype-mm-')}/mm`;
    const ex = await runExport({ input: dirs.get(d)!, output: mm, scoreDtype: 'float32', overwrite: false, progress: false });
    // The exported float32 values are the stored ones exactly (float16 → float32 is exact).
    const got = new Float32Array(readFileSync(`${mm}/ref_logprob.bin`).buffer.slice(0));
    const want: number[] = [];
    for (const f of dataFiles(dirs.get(d)!)) for (const row of readTable(f).toArray()) for (const v of row.ref_logprob) want.push(v === null ? NaN : Number(v));
    t.is(got.length, ex.header.n_tokens);
    t.deepEqual(Array.from(got, (x) => (Number.isNaN(x) ? 'nan' : x)), want.map((x) => (Number.isNaN(x) ? 'nan' : x)));
  });
}
