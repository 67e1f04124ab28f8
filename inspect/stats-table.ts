// The human-readable form of `rho stats`: one table per metric (a row per group) and a one-line histogram of
// the whole dir. `--json` prints the Stats object instead.
import { QUANTILES, quantileName, type Stats, type GroupStats, type Histogram, type MetricDef } from './stats.js';
import { keepRatioLabel, keptSide, selectArgs } from '../schemas/selection-cut.js';

const BLOCKS = ' ▁▂▃▄▅▆▇█';

/** A histogram as a row of block characters (height ~ count / max count). */
export function sparkline(h: Histogram): string {
  const max = Math.max(...h.counts, 1);
  return h.counts.map((c) => BLOCKS[c === 0 ? 0 : Math.max(1, Math.round((c / max) * 8))]).join('');
}

export const fmtNum = (v: number | null, digits = 3): string => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(digits));
/** `keep 60%` — the share a selection keeps (of low losses or of high excess losses: see cutHeader). */
export const ratioLabel = (r: number): string => keepRatioLabel(r);
/** Column header of a cut: `keep 60%: <=` for losses (select keeps low losses), `>=` for excess losses. */
export const cutHeader = (d: MetricDef, r: number): string => `${keepRatioLabel(r)} ${keptSide(d.kind) === 'at_or_below' ? '<=' : '>='}`;

/** `outside range: below 0: 3, 16 or above: 0` — values the fixed histogram bins do not hold. */
export function outsideRange(h: Histogram): string {
  return `outside range: below ${h.lo}: ${h.below}, ${h.lo + h.bins * h.width} or above: ${h.above}`;
}
export const groupLabel = (g: GroupStats): string => (g.dimension === 'all' ? 'all' : `${g.dimension}=${g.key}`);

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatStats(s: Stats): string {
  const all = s.groups[0];
  const out: string[] = [];
  out.push(`rho stats ${s.dir}: ${s.files} files, ${all.docs} documents, ${all.tokens} tokens (${all.scored_tokens} scored)`);
  out.push(`models: ${s.models.join(', ')}${s.models.length > 1 ? ` (excess loss against ${s.reference})` : ''}; quantiles: ${s.quantile_method === 'exact' ? 'exact' : `DDSketch, relative error ${s.sketch_alpha}`}`);
  out.push('');

  const counts = table(
    ['group', 'docs', 'tokens', 'scored', ...(s.has_select ? ['selected', 'sel%'] : [])],
    s.groups.map((g) => [
      groupLabel(g), String(g.docs), String(g.tokens), String(g.scored_tokens),
      ...(s.has_select ? [String(g.selected_tokens), g.selected_fraction === null ? '-' : (g.selected_fraction * 100).toFixed(1)] : []),
    ]),
  );
  out.push(counts, '');

  for (const d of s.metrics) {
    out.push(`${d.name} (nats; ${d.definition})`);
    const header = ['group', 'count', 'mean', ...QUANTILES.map(quantileName), ...s.ratios.map((r) => cutHeader(d, r))];
    const rows = s.groups.map((g) => {
      const m = g.metrics[d.name];
      return [groupLabel(g), String(m.count), fmtNum(m.mean), ...QUANTILES.map((q) => fmtNum(m.quantiles[quantileName(q)])), ...s.ratios.map((r) => fmtNum(m.thresholds[String(r)]))];
    });
    out.push(table(header, rows));
    const h = all.metrics[d.name].histogram;
    out.push(`histogram (all), ${h.lo} to ${h.lo + h.bins * h.width} step ${h.width}: |${sparkline(h)}|  ${outsideRange(h)}`);
    const side = keptSide(d.kind) === 'at_or_below' ? 'at or below' : 'at or above';
    out.push(`"${cutHeader(d, s.ratios[0] ?? 0.6).replace(/[\d.]+%/, 'K%')}": rho select ${selectArgs(d.kind, d.model, d.reference, s.ratios[0] ?? 0.6).replace(/--ratio \S+/, '--ratio K')} keeps the tokens with ${d.name} ${side} it`);
    out.push('');
  }
  return out.join('\n');
}
