// The DuckDB and polars recipes of docs/inspect.md, run as written against a real score run, must give the
// numbers `rho stats --json` prints.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSelect } from '../../pipeline/jobs/select.js';
import { scoredDir, rho, duck, recipes } from './_fixture.js';
import { ROOT, tmp } from '../helpers.js';
import type { Stats, GroupStats } from '../../inspect/stats.js';

const QS = ['p1', 'p5', 'p10', 'p25', 'p50', 'p75', 'p90', 'p95', 'p99'];

let out = '';
let sel = '';
let stats: Stats;
let selStats: Stats;
const R = recipes();

const sql = (name: string) => {
  const s = R.get(name);
  if (!s) throw new Error(`docs/inspect.md has no recipe ${name}`);
  return s.replaceAll("'out/", `'${out}/`).replaceAll("'sel/", `'${sel}/`);
};
const group = (s: Stats, key: string): GroupStats => {
  const g = key === 'all' ? s.groups.find((x) => x.dimension === 'all') : s.groups.find((x) => x.dimension === 'source' && x.key === key);
  if (!g) throw new Error(`no group ${key}`);
  return g;
};
const close = (a: number, b: number, rel = 1e-9) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(a), Math.abs(b));

test.before(async () => {
  out = await scoredDir();
  sel = tmp('rho-inspect-sel-');
  await runSelect({ input: out, output: sel, ratio: 0.6, by: 'excess', scope: 'document', batchTokens: 1 << 20, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: true, progress: false });
  const r = rho(['stats', out, '--json', '--ratio', '0.6', '0.7', '--no-progress']);
  if (r.status !== 0) throw new Error(`rho stats failed (${r.status}): ${r.stderr}`);
  stats = JSON.parse(r.stdout) as Stats;
  const s2 = rho(['stats', sel, '--json', '--no-progress']);
  if (s2.status !== 0) throw new Error(`rho stats on select output failed (${s2.status}): ${s2.stderr}`);
  selStats = JSON.parse(s2.stdout) as Stats;
  await duck(sql('tokens'));
});

test('the fixture run is what the recipes need: two models, three sources, exact quantiles', (t) => {
  t.deepEqual(stats.models, ['ref', 'base']);
  t.is(stats.quantile_method, 'exact');
  t.is(stats.groups.filter((g) => g.dimension === 'source').length, 3);
  t.deepEqual(stats.metrics.map((m) => m.name), ['ref_loss', 'base_loss', 'excess_loss']);
});

test('DuckDB counts recipe = rho stats documents, tokens, scored tokens per source and in total', async (t) => {
  const rows = await duck(sql('counts'));
  t.is(rows.length, 4);
  for (const row of rows) {
    const g = group(stats, String(row.grp));
    t.is(g.docs, Number(row.docs), `docs of ${row.grp}`);
    t.is(g.tokens, Number(row.tokens), `tokens of ${row.grp}`);
    t.is(g.scored_tokens, Number(row.scored_tokens), `scored tokens of ${row.grp}`);
  }
  // Position 0 of every document is unscored, and with C=64, S=32 more positions are scored than windows.
  t.true(group(stats, 'all').scored_tokens < group(stats, 'all').tokens);
});

for (const [recipe, metric] of [['loss-quantiles', 'ref_loss'], ['excess-quantiles', 'excess_loss']] as const) {
  test(`DuckDB ${recipe} recipe = rho stats count, mean and p1..p99 of ${metric}`, async (t) => {
    const rows = await duck(sql(recipe));
    t.is(rows.length, 4);
    for (const row of rows) {
      const m = group(stats, String(row.grp)).metrics[metric];
      t.is(m.count, Number(row.n));
      t.true(close(m.mean!, Number(row.mean)), `mean of ${row.grp}: ${m.mean} vs ${row.mean}`);
      const q = (row.q as unknown[]).map(Number);
      t.deepEqual(QS.map((p) => m.quantiles[p]), q, `quantiles of ${row.grp}`);
    }
  });
}

test('DuckDB threshold-60 recipe = rho stats 60% cut of excess loss (the high side)', async (t) => {
  const rows = await duck(sql('threshold-60'));
  t.is(rows.length, 4);
  for (const row of rows) {
    const m = group(stats, String(row.grp)).metrics.excess_loss;
    t.is(m.count, Number(row.n));
    t.is(m.thresholds['0.6'], Number(row.threshold), `threshold of ${row.grp}`);
  }
});

test('DuckDB ref-loss-cut-60 recipe = rho stats 60% cut of the reference loss (the low side select --by ref_loss keeps)', async (t) => {
  const rows = await duck(sql('ref-loss-cut-60'));
  t.is(rows.length, 4);
  for (const row of rows) {
    const m = group(stats, String(row.grp)).metrics.ref_loss;
    t.is(m.count, Number(row.n));
    t.is(m.thresholds['0.6'], Number(row.threshold), `threshold of ${row.grp}`);
    t.is(m.cuts['0.6'].kept_side, 'at_or_below');
  }
});

test('DuckDB histogram recipe = rho stats histogram of the loss (bins, below, above)', async (t) => {
  const rows = await duck(sql('histogram'));
  const h = group(stats, 'all').metrics.ref_loss.histogram;
  const fromDuck = new Array<number>(h.bins).fill(0);
  let below = 0;
  let above = 0;
  for (const row of rows) {
    const bin = Number(row.bin);
    if (bin < 0) below += Number(row.tokens);
    else if (bin >= h.bins) above += Number(row.tokens);
    else fromDuck[bin] = Number(row.tokens);
  }
  t.deepEqual(h.counts, fromDuck);
  t.is(h.below, below);
  t.is(h.above, above);
  t.true(h.counts.filter((c) => c > 0).length > 5, 'the fixture losses spread over several bins');
});

test('DuckDB selected recipe = rho stats selected tokens and fraction on rho select output', async (t) => {
  t.true(selStats.has_select);
  t.is(stats.has_select, false);
  t.is(group(stats, 'all').selected_fraction, null);
  const rows = await duck(sql('selected'));
  t.is(rows.length, 4);
  for (const row of rows) {
    const g = group(selStats, String(row.grp));
    t.is(g.selected_tokens, Number(row.selected_tokens));
    t.true(close(g.selected_fraction!, Number(row.selected_fraction)));
  }
  // Document scope keeps ceil(0.6 n) per document, so the total share is at least 60%.
  t.true(group(selStats, 'all').selected_fraction! >= 0.6);
});

test('DuckDB metadata recipe shows the provenance rho stats reports', async (t) => {
  const rows = await duck(sql('metadata'));
  const kv = new Map(rows.map((r) => [String(r.key), String(r.value)]));
  t.is(kv.get('rho.schema_version'), String(stats.schema_version));
  t.deepEqual((JSON.parse(kv.get('rho.models')!) as { name: string }[]).map((m) => m.name), stats.models);
  t.is(kv.get('rho.context'), '64');
  t.is(kv.get('rho.stride'), '32');
});

test('polars recipe = rho stats per source (scored tokens, means, PERCENTILE_DISC quantiles)', (t) => {
  // Written next to dist/ so that `import 'nodejs-polars'` resolves from the repo's node_modules.
  const dir = join(ROOT, 'dist', '.recipes');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `polars-${process.pid}.mjs`);
  writeFileSync(file, R.get('polars')!.replaceAll("'out/", `'${out}/`));
  const r = spawnSync(process.execPath, [file], { encoding: 'utf8' });
  rmSync(file, { force: true });
  t.is(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number>[];
  t.is(rows.length, 3);
  for (const row of rows) {
    const g = group(stats, String(row.source));
    t.is(g.scored_tokens, row.scored_tokens);
    t.true(close(g.metrics.ref_loss.mean!, Number(row.ref_loss_mean)));
    t.is(g.metrics.ref_loss.quantiles.p10, row.ref_loss_p10);
    t.is(g.metrics.ref_loss.quantiles.p50, row.ref_loss_p50);
    t.is(g.metrics.ref_loss.quantiles.p90, row.ref_loss_p90);
    t.true(close(g.metrics.excess_loss.mean!, Number(row.excess_loss_mean)));
    t.is(g.metrics.excess_loss.quantiles.p50, row.excess_loss_p50);
  }
});
