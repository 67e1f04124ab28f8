// `rho report`: one self-contained HTML file. Charts are hand-written inline SVG made here (no charting
// library, no script, no network): the page needs nothing but itself, its Content-Security-Policy forbids
// every fetch, and it renders the same in any browser or offline CI. Token scores show on hover through
// CSS (`data-tip` + ::after), so no JavaScript is needed either.
import { QUANTILES, quantileName, type Stats, type GroupStats, type Histogram, type MetricDef } from './stats.js';
import { fmtNum, groupLabel, ratioLabel } from './stats-table.js';
import { LOSS_SCALE, EXCESS_SCALE, UNSCORED, levelOf, type ColourScale } from './colour-scale.js';
import { metricLabel, scaleOf, segmentScore, type HeatmapView } from './heatmap.js';
import { RHO_VERSION } from '../schemas/version.js';
import { openScoreSet } from '../pipeline/io/score-files.js';
import { computeStats, pickReference, type StatsOptions } from './stats.js';
import { findDocuments, loadTextContext, documentText, type TextOptions } from './documents.js';
import { pickMetric, tokenScores } from './heatmap.js';

export const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const W = 340;
const H = 150;
const M = { left: 44, right: 8, top: 10, bottom: 28 };

/** One histogram as inline SVG: a `rect.bar` per bin, a `line.threshold` per ratio (clamped to the axis). */
export function histogramSvg(h: Histogram, thresholds: Record<string, number | null>, metric: string, group: string): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const max = Math.max(...h.counts, 1);
  const bw = pw / h.bins;
  const hi = h.lo + h.bins * h.width;
  const x = (v: number) => M.left + ((Math.min(Math.max(v, h.lo), hi) - h.lo) / (hi - h.lo)) * pw;
  const parts: string[] = [];
  parts.push(`<svg class="histogram" data-metric="${esc(metric)}" data-group="${esc(group)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(`${metric} histogram, ${group}`)}">`);
  parts.push(`<line class="axis" x1="${M.left}" y1="${M.top + ph}" x2="${M.left + pw}" y2="${M.top + ph}"/>`);
  parts.push(`<line class="axis" x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + ph}"/>`);
  parts.push(`<text class="tick" x="${M.left - 4}" y="${M.top + 8}" text-anchor="end">${max}</text>`);
  parts.push(`<text class="tick" x="${M.left - 4}" y="${M.top + ph}" text-anchor="end">0</text>`);
  h.counts.forEach((c, k) => {
    const bh = (c / max) * ph;
    const lo = h.lo + k * h.width;
    parts.push(`<rect class="bar" data-count="${c}" x="${(M.left + k * bw + 0.5).toFixed(2)}" y="${(M.top + ph - bh).toFixed(2)}" width="${Math.max(bw - 1, 0.5).toFixed(2)}" height="${bh.toFixed(2)}"><title>[${lo}, ${lo + h.width}): ${c} tokens</title></rect>`);
  });
  const step = h.width * Math.max(1, Math.round(h.bins / 8));
  for (let v = h.lo; v <= hi + 1e-9; v += step) {
    parts.push(`<text class="tick" x="${x(v).toFixed(1)}" y="${M.top + ph + 12}" text-anchor="middle">${+v.toFixed(2)}</text>`);
  }
  parts.push(`<text class="axis-label" x="${M.left + pw / 2}" y="${H - 3}" text-anchor="middle">nats</text>`);
  let nth = 0;
  for (const [r, t] of Object.entries(thresholds)) {
    if (t === null) continue;
    const labelY = M.top + 8 + 10 * nth++; // stacked: nearby thresholds would print over each other
    const xv = x(t).toFixed(1);
    parts.push(`<line class="threshold" data-ratio="${esc(r)}" data-value="${t}" x1="${xv}" y1="${M.top}" x2="${xv}" y2="${M.top + ph}"><title>${esc(ratioLabel(Number(r)))}: keep tokens &gt;= ${fmtNum(t)}</title></line>`);
    parts.push(`<text class="threshold-label" x="${(Number(xv) + 2).toFixed(1)}" y="${labelY}">${esc(ratioLabel(Number(r)))}</text>`);
  }
  parts.push('</svg>');
  return parts.join('');
}

function statsTables(s: Stats, groups: GroupStats[]): string {
  const out: string[] = [];
  out.push('<table class="stats counts"><thead><tr><th>group</th><th>docs</th><th>tokens</th><th>scored</th>');
  if (s.has_select) out.push('<th>selected</th><th>selected %</th>');
  out.push('</tr></thead><tbody>');
  for (const g of groups) {
    out.push(`<tr><td>${esc(groupLabel(g))}</td><td>${g.docs}</td><td>${g.tokens}</td><td>${g.scored_tokens}</td>`);
    if (s.has_select) out.push(`<td>${g.selected_tokens}</td><td>${g.selected_fraction === null ? '-' : (g.selected_fraction * 100).toFixed(1)}</td>`);
    out.push('</tr>');
  }
  out.push('</tbody></table>');
  return out.join('');
}

function metricSection(s: Stats, d: MetricDef, groups: GroupStats[]): string {
  const out: string[] = [];
  out.push(`<section class="metric" id="metric-${esc(d.name)}"><h2>${esc(d.name)}</h2><p class="def">${esc(d.definition)}, nats</p>`);
  out.push('<table class="stats quantiles"><thead><tr><th>group</th><th>count</th><th>mean</th>');
  for (const q of QUANTILES) out.push(`<th>${quantileName(q)}</th>`);
  for (const r of s.ratios) out.push(`<th>${esc(ratioLabel(r))} &gt;=</th>`);
  out.push('</tr></thead><tbody>');
  for (const g of groups) {
    const m = g.metrics[d.name];
    out.push(`<tr><td>${esc(groupLabel(g))}</td><td>${m.count}</td><td>${fmtNum(m.mean)}</td>`);
    for (const q of QUANTILES) out.push(`<td>${fmtNum(m.quantiles[quantileName(q)])}</td>`);
    for (const r of s.ratios) out.push(`<td>${fmtNum(m.thresholds[String(r)])}</td>`);
    out.push('</tr>');
  }
  out.push('</tbody></table><div class="hists">');
  for (const g of groups) {
    const m = g.metrics[d.name];
    const h = m.histogram;
    const outside = h.below || h.above ? ` <span class="outside">(${h.below} below ${h.lo}, ${h.above} at or above ${h.lo + h.bins * h.width})</span>` : '';
    out.push(`<figure class="hist">${histogramSvg(h, m.thresholds, d.name, groupLabel(g))}<figcaption>${esc(groupLabel(g))}: ${m.count} tokens${outside}</figcaption></figure>`);
  }
  out.push('</div></section>');
  return out.join('');
}

function legendHtml(scale: ColourScale, hasSelect: boolean): string {
  const items = scale.levels.map((l) => `<span class="swatch" style="background:${l.hex};color:${l.darkBackground ? '#fff' : '#000'}">${esc(l.label)}</span>`);
  items.push(`<span class="swatch unscored" style="color:${UNSCORED.hex}">no score</span>`);
  if (hasSelect) items.push('<span class="swatch tok sel">selected</span><span class="swatch tok unsel">not selected</span>');
  return `<div class="legend" data-metric="${scale.metric}">${scale.metric === 'loss' ? 'loss' : 'excess loss'} (nats): ${items.join('')}</div>`;
}

export interface ReportDoc {
  view: HeatmapView;
  /** All models' per-token losses, for the hover text. */
  models: string[];
  reference: string;
  /** Show at most this many tokens' text. */
  maxTokens: number;
}

function tokenTip(rd: ReportDoc, tokens: number[]): string {
  const { doc } = rd.view;
  const lines: string[] = [];
  for (const t of tokens) {
    const parts = [`#${t} ${JSON.stringify(rd.view.tokenText(t))}`];
    for (const m of rd.models) {
      const lp = doc.logprobs[m][t];
      parts.push(`${m} ${lp === null ? 'no score' : (-lp).toFixed(3)}`);
    }
    if (rd.models.length > 1) {
      const r = doc.logprobs[rd.reference][t];
      for (const m of rd.models.filter((x) => x !== rd.reference)) {
        const lp = doc.logprobs[m][t];
        if (lp !== null && r !== null) parts.push(`excess${rd.models.length > 2 ? `(${m})` : ''} ${(r - lp).toFixed(3)}`);
      }
    }
    if (doc.selectMask) parts.push(doc.selectMask[t] ? 'selected' : 'not selected');
    lines.push(parts.join('  '));
  }
  return lines.join('\n');
}

function docHtml(rd: ReportDoc): string {
  const { doc, text, metric, scores } = rd.view;
  const scale = scaleOf(metric);
  const out: string[] = [];
  const scored = scores.filter((v) => v !== null) as number[];
  const mean = scored.length ? scored.reduce((a, b) => a + b, 0) / scored.length : null;
  out.push(`<article class="doc" data-id="${esc(doc.id)}" data-tokens="${doc.tokenIds.length}">`);
  out.push(`<h3>${esc(doc.id)} <span class="where">${esc(doc.source)} row ${doc.row}</span></h3>`);
  out.push(`<p class="docmeta">${doc.tokenIds.length} tokens, ${scored.length} scored; ${esc(metricLabel(metric))} mean ${fmtNum(mean)}${doc.selectMask ? `; ${doc.selectMask.filter(Boolean).length} selected` : ''}${text.origin === 'decoded' ? `; ${esc(text.note ?? 'decoded')}` : ''}</p>`);
  out.push('<div class="heat">');
  // Specials (BOS, an appended EOS) have no text: shown as small boxes before or after the text.
  const firstTextToken = Math.min(...text.segments.filter((g) => g.tokens.length).map((g) => g.tokens[0]), Infinity);
  const special = (i: number) => `<span class="special" data-tokens="${i}" data-tip="${esc(tokenTip(rd, [i]))}">${esc(rd.view.tokenText(i))}</span>`;
  for (const i of text.specials) if (i < firstTextToken) out.push(special(i));
  let truncated = false;
  for (const seg of text.segments) {
    const s = text.text.slice(seg.start, seg.end);
    if (seg.tokens.length === 0) { out.push(esc(s)); continue; }
    if (seg.tokens[0] >= rd.maxTokens) { truncated = true; break; }
    const score = segmentScore(seg, scores);
    const cls = ['tok'];
    let style = '';
    if (score === null) cls.push('unscored');
    else {
      const l = scale.levels[levelOf(scale, score)];
      style = ` style="background:${l.hex}${l.darkBackground ? ';color:#fff' : ''}"`;
    }
    if (doc.selectMask) cls.push(seg.tokens.some((t) => doc.selectMask![t]) ? 'sel' : 'unsel');
    out.push(`<span class="${cls.join(' ')}" data-tokens="${seg.tokens.join(',')}"${score === null ? '' : ` data-score="${score.toFixed(4)}"`} data-tip="${esc(tokenTip(rd, seg.tokens))}"${style}>${esc(s)}</span>`);
  }
  if (!truncated) for (const i of text.specials) if (i > firstTextToken) out.push(special(i));
  out.push('</div>');
  if (truncated) out.push(`<p class="truncated">showing the first ${rd.maxTokens} of ${doc.tokenIds.length} tokens</p>`);
  out.push('</article>');
  return out.join('');
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#111;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd} h3{font-size:15px;margin:14px 0 2px}
.meta,.def,.docmeta,.where,figcaption,.truncated,.outside{color:#555;font-size:12px}
table.stats{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:12px;margin:6px 0}
table.stats th,table.stats td{border:1px solid #ddd;padding:2px 6px;text-align:right} table.stats td:first-child,table.stats th:first-child{text-align:left}
.hists{display:flex;flex-wrap:wrap;gap:8px} figure.hist{margin:0}
svg.histogram .bar{fill:#4a7fb5} svg.histogram .axis{stroke:#333;stroke-width:1}
svg.histogram .threshold{stroke:#d62728;stroke-width:1.5;stroke-dasharray:4 3} svg.histogram .threshold-label{fill:#d62728;font-size:10px}
svg.histogram text{font-size:10px;fill:#333}
.legend{margin:8px 0;font-size:12px} .swatch{display:inline-block;padding:1px 6px;margin:0 3px 3px 0;border:1px solid #ccc;border-radius:2px}
.heat{font:13px/1.9 ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre-wrap;word-break:break-word;border:1px solid #ddd;padding:8px;border-radius:4px}
.tok{position:relative;border-radius:2px} .tok.unscored{color:${UNSCORED.hex}}
.tok.sel{text-decoration:underline 2px;text-underline-offset:3px} .tok.unsel{opacity:.4}
.special{color:#888;font-size:11px;border:1px dashed #aaa;border-radius:2px;margin-right:2px;position:relative}
.tok:hover,.special:hover{outline:2px solid #000}
.tok:hover::after,.special:hover::after{content:attr(data-tip);position:absolute;left:0;top:100%;z-index:10;white-space:pre;background:#222;color:#fff;font-size:11px;line-height:1.4;padding:3px 6px;border-radius:3px;pointer-events:none}
`;

export interface ReportInput {
  stats: Stats;
  docs: ReportDoc[];
  /** At most this many groups get histograms and table rows (all, then sources, then --by values). */
  maxGroups: number;
  title?: string;
}

export function renderReport(input: ReportInput): string {
  const { stats: s, docs } = input;
  const groups = s.groups.slice(0, input.maxGroups);
  const omitted = s.groups.length - groups.length;
  const all = s.groups[0];
  const title = input.title ?? `rho report: ${s.dir}`;
  const metric = docs[0]?.view.metric;
  const out: string[] = [];
  out.push('<!doctype html><html lang="en"><head><meta charset="utf-8">');
  // Self-contained by construction: the page may load nothing at all (no fonts, scripts, images, fetches).
  out.push(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`);
  out.push(`<meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body>`);
  out.push(`<h1>${esc(title)}</h1>`);
  out.push(`<p class="meta">${s.files} score files, ${all.docs} documents, ${all.tokens} tokens (${all.scored_tokens} scored). Models: ${esc(s.models.join(', '))}${s.models.length > 1 ? ` (excess loss against ${esc(s.reference)})` : ''}. Quantiles: ${s.quantile_method === 'exact' ? 'exact' : `DDSketch, relative error ${s.sketch_alpha}`}. Made by rho ${esc(RHO_VERSION)}.</p>`);
  out.push(`<section id="counts"><h2>Counts</h2>${statsTables(s, groups)}${omitted ? `<p class="meta">${omitted} more groups omitted (see rho stats --json)</p>` : ''}</section>`);
  for (const d of s.metrics) out.push(metricSection(s, d, groups));
  out.push('<section id="samples"><h2>Sample documents</h2>');
  if (metric) out.push(`<p class="meta">Coloured by ${esc(metricLabel(metric))}; hover a token for every model's loss.</p>${legendHtml(metric.kind === 'loss' ? LOSS_SCALE : EXCESS_SCALE, s.has_select)}`);
  for (const d of docs) out.push(docHtml(d));
  out.push('</section></body></html>\n');
  return out.join('');
}

export interface ReportOptions extends StatsOptions, TextOptions {
  samples?: number;
  seed?: number;
  metric?: 'loss' | 'excess';
  model?: string;
  maxTokens?: number;
  maxGroups?: number;
  title?: string;
}

/** Statistics and sample heatmaps of an output dir, as one HTML page. */
export async function makeReport(dir: string, opts: ReportOptions = {}): Promise<{ html: string; stats: Stats; docs: ReportDoc[]; warnings: string[] }> {
  const stats = await computeStats(dir, opts);
  const set = await openScoreSet(dir);
  const reference = pickReference(set.models, opts.reference);
  // Excess loss is what top-k selection ranks by, so it colours the samples whenever there are two models.
  const metric = pickMetric(set.models, reference, opts.metric ?? (set.models.length > 1 ? 'excess' : 'loss'), opts.model);
  const samples = opts.samples ?? 6;
  const docs: ReportDoc[] = [];
  const warnings: string[] = [];
  if (samples > 0) {
    const ctx = loadTextContext(set, opts);
    warnings.push(...ctx.warnings);
    for (const doc of await findDocuments(set, { sample: samples, seed: opts.seed ?? 1 })) {
      const text = await documentText(doc, ctx);
      const view = { doc, text, metric, scores: tokenScores(doc, metric), tokenText: (i: number) => ctx.tokenizer.idToToken(doc.tokenIds[i]) ?? `#${doc.tokenIds[i]}` };
      docs.push({ view, models: set.models, reference, maxTokens: opts.maxTokens ?? 1500 });
    }
  }
  const html = renderReport({ stats, docs, maxGroups: opts.maxGroups ?? 24, title: opts.title });
  return { html, stats, docs, warnings };
}
