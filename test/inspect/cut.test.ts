// One cut definition (schemas/selection-cut.ts): the threshold `rho stats` (and the report) give for a ratio is
// the threshold `rho select --scope global` applies on the same dir, for `--by ref_loss` and `--by excess`,
// and the per-source shares stats gives for the whole dir's cut are what select keeps of each source.
// The report's cut table and histogram lines carry the same threshold. Global scope is where one threshold exists to compare (document/batch scopes have one per scope).
import test from 'ava';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { scoredDir, rho, duck } from './_fixture.js';
import { tmp } from '../helpers.js';
import type { Stats } from '../../inspect/stats.js';
import type { SelectReport } from '../../pipeline/jobs/select.js';
import { keepCount, thresholdRank, keptSide } from '../../schemas/selection-cut.js';

let out = '';
let stats: Stats;
let report = '';
test.before(async () => {
  out = await scoredDir();
  const s = rho(['stats', out, '--json', '--ratio', '0.6', '0.7', '--no-progress']);
  if (s.status !== 0) throw new Error(s.stderr);
  stats = JSON.parse(s.stdout) as Stats;
  const html = join(tmp('rho-inspect-cut-report-'), 'r.html');
  const r = rho(['report', out, '--out', html, '--samples', '0', '--ratio', '0.6', '0.7', '--no-progress']);
  if (r.status !== 0) throw new Error(r.stderr);
  report = readFileSync(html, 'utf8');
});

/** The report's numbers for a cut: the cut table row and the cut line drawn on the metric's histogram. */
function reportCut(metric: string, ratio: number): { table: number; line: number } {
  const row = report.match(new RegExp(`<tr data-metric="${metric}" data-ratio="${ratio}" data-threshold="([^"]+)" data-select-threshold="([^"]+)"`));
  const line = report.match(new RegExp(`<line class="cut" data-metric="${metric}" data-ratio="${ratio}" data-value="([^"]+)" data-select-threshold="([^"]+)"`));
  if (!row || !line) throw new Error(`no cut of ${metric} ${ratio} in the report`);
  return { table: Number(row[2]), line: Number(line[2]) };
}

test('the cut: losses keep the low side, excess the high side; ranks', (t) => {
  t.is(keptSide('loss'), 'at_or_below');
  t.is(keptSide('excess'), 'at_or_above');
  t.is(keepCount(0.55, 100), 55);
  t.is(keepCount(0.6, 7), 5);
  t.is(thresholdRank('loss', 0.6, 7), 4); // the 5th smallest
  t.is(thresholdRank('excess', 0.6, 7), 2); // the 5th largest
  t.is(thresholdRank('loss', 0.001, 10), 0);
  t.is(thresholdRank('excess', 1e-12, 10), null);
});

for (const [by, metric, flags] of [['ref_loss', 'ref_loss', []], ['excess', 'excess_loss', ['--base', 'base']]] as const) {
  for (const ratio of [0.6, 0.7]) {
    test(`select --by ${by} --ratio ${ratio} --scope global applies the threshold stats reports`, async (t) => {
      const sel = join(tmp('rho-inspect-cut-'), 'sel');
      const r = rho(['select', out, '--output', sel, '--by', by, '--ratio', String(ratio), '--scope', 'global', '--ref', 'ref', ...flags, '--json', '--no-progress']);
      t.is(r.status, 0, r.stderr);
      const rep = JSON.parse(r.stdout) as SelectReport;
      t.is(rep.mode, 'exact');
      const all = stats.groups[0].metrics[metric];
      const cut = all.cuts[String(ratio)];
      t.is(cut.select_threshold, rep.threshold as number, 'the same threshold on select\'s score');
      t.is(all.thresholds[String(ratio)], by === 'ref_loss' ? -(rep.threshold as number) : (rep.threshold as number), 'in nats of the metric');
      t.is(cut.kept, rep.totals.selected, 'the same number of tokens kept');
      t.deepEqual(reportCut(metric, ratio), { table: rep.threshold as number, line: rep.threshold as number }, 'the report\'s table and histogram line');
      t.is(cut.kept_side, by === 'ref_loss' ? 'at_or_below' : 'at_or_above');
      t.true(cut.select_args.startsWith(`--by ${by} --ref ref`));
      // Per source: stats counts every token on the kept side (ties included), select keeps ties in training
      // order; DuckDB counts the ties at the threshold so the two can be compared exactly.
      const score = by === 'ref_loss' ? 'r' : 'r - b';
      const rows = await duck(`WITH t AS (SELECT source, unnest(ref_logprob)::DOUBLE AS r, unnest(base_logprob)::DOUBLE AS b FROM read_parquet('${sel}/**/*.parquet'))
        SELECT source, count(*) FILTER (WHERE ${score} > ${rep.threshold}) AS above, count(*) FILTER (WHERE ${score} = ${rep.threshold}) AS ties FROM t WHERE r IS NOT NULL GROUP BY source`);
      for (const row of rows) {
        const g = stats.groups.find((x) => x.dimension === 'source' && x.key === row.source)!;
        const s = rep.sources.find((x) => x.source === row.source)!;
        const kept = g.metrics[metric].cuts[String(ratio)].kept_by_dir_cut!;
        t.is(kept, Number(row.above) + Number(row.ties), `${row.source}: on the kept side of the dir's threshold`);
        t.true(s.selected >= Number(row.above) && s.selected <= kept, `${row.source}: select keeps ${s.selected}, between ${row.above} and ${kept}`);
        t.is(g.metrics[metric].cuts[String(ratio)].kept_share_by_dir_cut, kept / g.metrics[metric].count);
      }
      // And select's own mask, read back by DuckDB, agrees with the side stats names.
      const [m] = await duck(`WITH t AS (SELECT unnest(ref_logprob)::DOUBLE AS r, unnest(base_logprob)::DOUBLE AS b, unnest(select_mask) AS s FROM read_parquet('${sel}/**/*.parquet'))
        SELECT count(*) FILTER (WHERE s AND NOT (${by === 'ref_loss' ? '-r <= ' + all.thresholds[String(ratio)] : 'r - b >= ' + all.thresholds[String(ratio)]})) AS wrong_side, count(*) FILTER (WHERE s) AS selected FROM t`);
      t.is(Number(m.wrong_side), 0, 'no selected token lies on the other side of the stats threshold');
      t.is(Number(m.selected), cut.kept);
      // rho show names the same side for the selected dir.
      const show = rho(['show', sel, '--row', '0', '--color', 'never']);
      t.is(show.status, 0, show.stderr);
      t.true(show.stdout.includes(`selection: rho select --by ${by} --ratio ${ratio} --scope global: keeps ${by === 'ref_loss' ? 'reference loss at or below' : 'excess loss at or above'} the threshold ${rep.threshold}`), show.stdout.split('\n').slice(0, 5).join('\n'));
    });
  }
}

test('stats prints the kept side and plain outside-range counts', (t) => {
  const r = rho(['stats', out, '--ratio', '0.6', '--no-progress']);
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /keep 60% <=/);
  t.regex(r.stdout, /keep 60% >=/);
  t.regex(r.stdout, /outside range: below -8: \d+, 8 or above: \d+/);
  t.regex(r.stdout, /rho select --by ref_loss --ref ref --ratio K --scope global keeps the tokens with ref_loss at or below it/);
  t.false(/\btop\d/.test(r.stdout), 'no "top60%" wording left');
});
