// `rho stats`: human table, --by groups, sketch quantiles past the exact budget, bad input (exit 2).
import test from 'ava';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeStats, type Stats } from '../../inspect/stats.js';
import { decodeTable, encodeTable } from '../../stages/write.js';
import { RecordBatch, Schema, Table } from 'apache-arrow';
import { scoredDir, rho, duck } from './_fixture.js';
import { dataFiles, tmp } from '../helpers.js';

let out = '';
let exact: Stats;

test.before(async () => {
  out = await scoredDir();
  exact = await computeStats(out, { ratios: [0.6] });
});

test('human table: counts per group, quantile method, one row per group in each metric table', async (t) => {
  const r = rho(['stats', out]);
  t.is(r.status, 0, r.stderr);
  const [counts] = await duck(`SELECT count(*) AS docs, sum(n_tokens) AS tokens FROM read_parquet('${out}/**/*.parquet')`);
  const allRow = r.stdout.split('\n').find((l) => /^all\s/.test(l))!;
  t.deepEqual(allRow.trim().split(/\s+/).slice(1, 3), [String(counts.docs), String(counts.tokens)]);
  t.regex(r.stdout, /quantiles: exact/);
  for (const name of ['ref_loss', 'base_loss', 'excess_loss']) t.regex(r.stdout, new RegExp(`^${name} \\(nats`, 'm'));
  const sources = await duck(`SELECT DISTINCT source FROM read_parquet('${out}/**/*.parquet') ORDER BY source`);
  for (const s of sources) {
    // counts table + 3 metric tables
    t.is(r.stdout.split('\n').filter((l) => l.startsWith(`source=${s.source} `)).length, 4);
  }
  t.true(r.stderr.includes('rho stats: read 3 files'), 'progress goes to stderr');
  t.false(r.stdout.includes('rho stats: read'), 'and not to stdout');
});

test('--by COLUMN adds groups that match a DuckDB GROUP BY', async (t) => {
  const s = await computeStats(out, { by: ['row'] });
  const rows = await duck(`SELECT row::VARCHAR AS k, count(*) AS docs, sum(n_tokens) AS tokens FROM read_parquet('${out}/**/*.parquet') GROUP BY row ORDER BY row`);
  const byRow = s.groups.filter((g) => g.dimension === 'row');
  t.is(byRow.length, rows.length);
  for (const r of rows) {
    const g = byRow.find((x) => x.key === r.k)!;
    t.truthy(g, `group row=${r.k}`);
    t.is(g.docs, Number(r.docs));
    t.is(g.tokens, Number(r.tokens));
  }
});

test('past --max-exact-values quantiles come from the sketch, within its relative error of the exact ones', async (t) => {
  const alpha = 0.01;
  const s = await computeStats(out, { ratios: [0.6], maxExactValues: 1000, sketchAlpha: alpha });
  t.is(exact.quantile_method, 'exact');
  t.is(s.quantile_method, 'sketch');
  t.is(s.sketch_alpha, alpha);
  let compared = 0;
  for (let gi = 0; gi < exact.groups.length; gi++) {
    for (const name of Object.keys(exact.groups[gi].metrics)) {
      const e = exact.groups[gi].metrics[name];
      const k = s.groups[gi].metrics[name];
      // Counts, means and histograms stay exact; only quantiles and thresholds are approximate.
      t.is(k.count, e.count);
      t.deepEqual(k.histogram, e.histogram);
      t.true(Math.abs(k.mean! - e.mean!) < 1e-9);
      for (const [p, v] of Object.entries(e.quantiles)) {
        t.true(Math.abs(k.quantiles[p]! - v!) <= alpha * Math.abs(v!) + 1e-9, `${name} ${p}: sketch ${k.quantiles[p]} vs exact ${v}`);
        compared++;
      }
      t.true(Math.abs(k.thresholds['0.6']! - e.thresholds['0.6']!) <= alpha * Math.abs(e.thresholds['0.6']!) + 1e-9);
    }
  }
  t.is(compared, exact.groups.length * 3 * 9);
});

test('Arrow IPC score files give the same statistics as Parquet ones', async (t) => {
  const arrow = await scoredDir(undefined, tmp('rho-inspect-arrow-'), 'arrow');
  t.is(dataFiles(arrow, 'arrow').length, 3);
  const s = await computeStats(arrow, { ratios: [0.6] });
  t.deepEqual(s.groups, exact.groups);
});

test('the CLI --json output is the computeStats object', (t) => {
  const r = rho(['stats', out, '--json', '--ratio', '0.6', '--no-progress']);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), JSON.parse(JSON.stringify(exact)));
});

test('a dir with no score files: exit 2, says so', (t) => {
  const empty = tmp('rho-inspect-empty-');
  mkdirSync(join(empty, '_rho'));
  const r = rho(['stats', empty]);
  t.is(r.status, 2);
  t.regex(r.stderr, /no score files/);
  t.true(r.stderr.includes(empty));
  t.is(r.stdout, '');
});

test('files of mixed schema versions: exit 2, names the file and both versions', (t) => {
  const mixed = tmp('rho-inspect-mixed-');
  cpSync(out, mixed, { recursive: true });
  const victim = dataFiles(mixed)[1];
  const table = decodeTable(readFileSync(victim), 'parquet');
  const meta = new Map(table.schema.metadata);
  meta.set('rho.schema_version', '2');
  const schema = new Schema(table.schema.fields, meta);
  const relabelled = new Table(schema, table.batches.map((b) => new RecordBatch(schema, b.data)));
  writeFileSync(victim, encodeTable(relabelled, 'parquet'));
  const r = rho(['stats', mixed]);
  t.is(r.status, 2);
  t.true(r.stderr.includes(victim), r.stderr);
  t.regex(r.stderr, /schema version 2/);
  t.regex(r.stderr, /version 1/);
});

test('bad flags: missing --by column, ratio out of range, unknown reference: exit 2 with the name', (t) => {
  const by = rho(['stats', out, '--by', 'lang']);
  t.is(by.status, 2);
  t.regex(by.stderr, /--by column "lang" is missing/);
  const ratio = rho(['stats', out, '--ratio', '1.5']);
  t.is(ratio.status, 2);
  t.regex(ratio.stderr, /--ratio 1\.5/);
  const ref = rho(['stats', out, '--reference', 'nope']);
  t.is(ref.status, 2);
  t.regex(ref.stderr, /--reference nope: no such model.*ref, base/);
  const list = rho(['stats', out, '--by', 'token_ids']);
  t.is(list.status, 2);
  t.regex(list.stderr, /scalar column/);
});

test('--help lists the options', (t) => {
  const r = rho(['stats', '--help']);
  t.is(r.status, 0);
  for (const o of ['--ratio', '--by', '--json', '--max-exact-values']) t.true(r.stdout.includes(o), o);
});
