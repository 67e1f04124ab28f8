// `rho report`: one self-contained HTML file. Charts are hand-written inline SVG made here (no charting
// library, no script, no network): the page needs nothing but itself, its Content-Security-Policy forbids
// every fetch, and it renders the same in any browser or offline CI. Token scores show on hover through
// CSS (`data-tip` + ::after), so no JavaScript is needed either.
import { QUANTILES, quantileName, type Stats, type GroupStats, type MetricDef } from './stats.js';
import { fmtNum, groupLabel, cutHeader } from './stats-table.js';
import { LOSS_SCALE, EXCESS_SCALE, UNSCORED, levelOf, type ColourScale } from './colour-scale.js';
import { metricLabel, scaleOf, segmentScore, type HeatmapView } from './heatmap.js';
import { RHO_VERSION } from '../schemas/version.js';
import { pickReference, type StatsOptions } from './stats.js';
import { findDocuments, loadTextContext, documentText, type TextOptions } from './documents.js';
import { pickMetric, tokenScores } from './heatmap.js';
import { profileDir } from './profile.js';
import { keepRatioLabel, keptSide } from '../schemas/selection-cut.js';
import { esc } from './plots.js';
import {
  histogramPlot, distributionSection, positionPlot, jointPlot, sharePlot, docMeanPlot, droppedTable, topDropped, differenceTable, docDiffTable,
  type ReportRun,
} from './report-plots.js';

export { esc };

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

function quantileTable(s: Stats, d: MetricDef, groups: GroupStats[]): string {
  const out: string[] = [];
  out.push(`<h3>${esc(d.name)} <span class="where">${esc(d.definition)}, nats</span></h3>`);
  out.push('<table class="stats quantiles"><thead><tr><th>group</th><th>count</th><th>mean</th>');
  for (const q of QUANTILES) out.push(`<th>${quantileName(q)}</th>`);
  for (const r of s.ratios) out.push(`<th>${esc(cutHeader(d, r))}</th>`);
  out.push('</tr></thead><tbody>');
  for (const g of groups) {
    const m = g.metrics[d.name];
    out.push(`<tr><td>${esc(groupLabel(g))}</td><td>${m.count}</td><td>${fmtNum(m.mean)}</td>`);
    for (const q of QUANTILES) out.push(`<td>${fmtNum(m.quantiles[quantileName(q)])}</td>`);
    for (const r of s.ratios) out.push(`<td>${fmtNum(m.thresholds[String(r)])}</td>`);
    out.push('</tr>');
  }
  out.push('</tbody></table>');
  return out.join('');
}

/** What each ratio's cut keeps, in nats of each metric and on select's own score, with the select flags. */
function cutTable(s: Stats): string {
  const all = s.groups[0];
  const out = ['<table class="stats cuts"><thead><tr><th>metric</th><th>ratio</th><th>keeps</th><th>threshold (nats)</th><th>select threshold (score)</th><th>tokens kept</th><th>rho select flags</th></tr></thead><tbody>'];
  for (const d of s.metrics) {
    for (const r of s.ratios) {
      const c = all.metrics[d.name].cuts[String(r)];
      out.push(`<tr data-metric="${esc(d.name)}" data-ratio="${r}" data-threshold="${c.threshold}" data-select-threshold="${c.select_threshold}"><td>${esc(d.name)}</td><td>${esc(keepRatioLabel(r))}</td><td>${keptSide(d.kind) === 'at_or_below' ? 'lowest losses (≤)' : 'highest excess (≥)'}</td><td>${fmtNum(c.threshold)}</td><td>${fmtNum(c.select_threshold)}</td><td>${c.kept} of ${all.metrics[d.name].count}</td><td><code>${esc(c.select_args)}</code></td></tr>`);
    }
  }
  out.push('</tbody></table>');
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
  let prevLevel = -2; // level of the previous token span; -1 = unscored
  for (const seg of text.segments) {
    const s = text.text.slice(seg.start, seg.end);
    if (seg.tokens.length === 0) { out.push(esc(s)); prevLevel = -2; continue; }
    if (seg.tokens[0] >= rd.maxTokens) { truncated = true; break; }
    const score = segmentScore(seg, scores);
    const cls = ['tok'];
    let style = '';
    const level = score === null ? -1 : levelOf(scale, score);
    // Neighbours of one colour would read as one token: a thin rule marks where the second one starts.
    if (level === prevLevel) cls.push('same');
    prevLevel = level;
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
.meta,.def,.docmeta,.where,figcaption,.truncated,.outside,.note{color:#555;font-size:12px}
table.stats{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:12px;margin:6px 0}
table.stats th,table.stats td{border:1px solid #ddd;padding:2px 6px;text-align:right} table.stats td:first-child,table.stats th:first-child{text-align:left}
table.cuts td{white-space:nowrap} table.cuts td:last-child{text-align:left}
table.dropped td.tokstr{text-align:left;font-family:ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start} figure.chart{margin:0}
svg.plot{font:10px system-ui,-apple-system,"Segoe UI",sans-serif;overflow:visible}
svg.plot text{font-size:10px;fill:#333} svg.plot .axis{stroke:#333} svg.plot .tickmark{stroke:#333} svg.plot .grid{stroke:#eee}
svg.plot .bar{fill:#4a7fb5} svg.plot .kept-side{fill:#2ca02c;opacity:.08}
svg.plot .cut{stroke:#d62728;stroke-width:1.5;stroke-dasharray:6 3} svg.plot .cut-label{fill:#d62728} svg.plot .ref-cut{stroke:#6a3d9a} svg.plot text.ref-cut-label{fill:#6a3d9a}
svg.plot .marker{stroke:#555;stroke-dasharray:3 3} svg.plot text.marker-label{fill:#555}
svg.plot .cdf-line,svg.plot .mean-line{fill:none;stroke-width:1.6} svg.plot .band{opacity:.18;stroke:none}
svg.plot .diagonal{stroke:#999;stroke-dasharray:2 2} svg.plot .share-bar{opacity:.9}
.plot-legend{font-size:11px;color:#333;max-width:720px} .plot-legend .key{display:inline-flex;align-items:center;gap:4px;margin:0 12px 2px 0}
.plot-legend .cut-key{stroke:#d62728;stroke-width:1.5}
.legend{margin:8px 0;font-size:12px} .swatch{display:inline-block;padding:1px 6px;margin:0 3px 3px 0;border:1px solid #ccc;border-radius:2px}
.heat{font:13px/1.9 ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre-wrap;word-break:break-word;border:1px solid #ddd;padding:8px;border-radius:4px}
.tok{position:relative;border-radius:2px} .tok.unscored{color:${UNSCORED.hex}} .tok.same{box-shadow:inset 1px 0 0 rgba(0,0,0,.45)}
.tok.sel{text-decoration:underline 2px;text-underline-offset:3px} .tok.unsel{opacity:.4}
.special{color:#888;font-size:11px;border:1px dashed #aaa;border-radius:2px;margin-right:2px;position:relative}
.tok:hover,.special:hover{outline:2px solid #000}
.tok:hover::after,.special:hover::after{content:attr(data-tip);position:absolute;left:0;top:100%;z-index:10;white-space:pre;background:#222;color:#fff;font-size:11px;line-height:1.4;padding:3px 6px;border-radius:3px;pointer-events:none}
`;

export interface ReportInput {
  /** One run, or two (`rho report A B`, labelled A and B). */
  runs: ReportRun[];
  docs: ReportDoc[];
  /** Decoded text of the tokens in the dropped-tokens table. */
  decoded: Map<number, string>;
  /** At most this many groups get table rows (all, then sources, then --by values). */
  maxGroups: number;
  title?: string;
}

function head(title: string): string {
  // Self-contained by construction: the page may load nothing at all (no fonts, scripts, images, fetches).
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(title)}</title><style>${CSS}</style></head><body><h1>${esc(title)}</h1>`;
}

function metaLine(s: Stats, label: string): string {
  const all = s.groups[0];
  return `<p class="meta">${label ? `<b>${esc(label)}</b> = ${esc(s.dir)}: ` : ''}${s.files} score files, ${all.docs} documents, ${all.tokens} tokens (${all.scored_tokens} scored). Models: ${esc(s.models.join(', '))}${s.models.length > 1 ? ` (excess loss against ${esc(s.reference)})` : ''}. Quantiles: ${s.quantile_method === 'exact' ? 'exact' : `DDSketch, relative error ${s.sketch_alpha}`}.</p>`;
}

const section = (id: string, title: string, body: string, intro = ''): string => `<section id="${id}"><h2>${esc(title)}</h2>${intro ? `<p class="meta">${intro}</p>` : ''}${body}</section>`;

export function renderReport(input: ReportInput): string {
  const { runs, docs } = input;
  if (runs.length === 2) return renderComparison(input);
  const run = runs[0];
  const s = run.stats;
  const groups = s.groups.slice(0, input.maxGroups);
  const omitted = s.groups.length - groups.length;
  const title = input.title ?? `rho report: ${s.dir}`;
  const metric = docs[0]?.view.metric;
  const out: string[] = [head(title), metaLine(s, ''), `<p class="meta">Made by rho ${esc(RHO_VERSION)}. Losses in nats. Every chart is plain SVG; the numbers behind it are in its data-* attributes.</p>`];
  out.push(section('cut', 'The selection cut', cutTable(s), 'What <code>rho select --scope global</code> keeps for each ratio (schemas/selection-cut.ts; the same threshold select applies): a loss metric keeps its lowest values (<code>--by ref_loss</code> ranks by the logprob), the excess loss its highest.'));
  out.push(section('counts', 'Counts', statsTables(s, groups) + (omitted ? `<p class="meta">${omitted} more groups omitted (see rho stats --json)</p>` : '')));
  out.push(section('positions', 'Loss by position in the window', positionPlot(runs), 'The context effect: tokens early in a window see little context. With stride S < C, windows after the first score only positions from C−S on.'));
  out.push(section('distributions', 'Distributions', s.metrics.map((d) => `<h3>${esc(d.name)} <span class="where">${esc(d.definition)}</span></h3><div class="charts">${histogramPlot(run, d)}${distributionSection(runs, d)}</div>`).join(''), 'Left: every scored token, bins fitted to the metric\'s spread (0.5th to 99.5th percentile), the cut of each ratio drawn. Right: each source\'s cumulative distribution on one scale.'));
  if (run.profile.joint) out.push(section('joint', 'Reference vs base loss', jointPlot(run), '<code>--by excess</code> keeps the tokens above a diagonal (the base model finds them harder than the reference does); <code>--by ref_loss</code> keeps those left of a vertical line.'));
  out.push(section('shares', 'Selected share by source', sharePlot(runs)));
  out.push(section('documents', 'Per-document mean loss', `<div class="charts">${s.models.map((m) => docMeanPlot(runs, m)).join('')}</div>`, 'Cumulative distribution of each document\'s mean loss (<code>&lt;model&gt;_loss_mean</code>), per source.'));
  out.push(section('dropped', 'Tokens dropped most often', droppedTable(run, input.decoded), 'The 50 token ids most often left unselected (scored positions only); the text is the token decoded alone.'));
  out.push(section('quantiles', 'Quantiles', s.metrics.map((d) => quantileTable(s, d, groups)).join('')));
  out.push('<section id="samples"><h2>Sample documents</h2>');
  if (metric) out.push(`<p class="meta">Coloured by ${esc(metricLabel(metric))}; hover a token for every model's loss. A thin rule separates neighbouring tokens of one colour.</p>${legendHtml(metric.kind === 'loss' ? LOSS_SCALE : EXCESS_SCALE, s.has_select)}`);
  for (const d of docs) out.push(docHtml(d));
  out.push('</section></body></html>\n');
  return out.join('');
}

function renderComparison(input: ReportInput): string {
  const [a, b] = input.runs;
  const title = input.title ?? `rho report: ${a.stats.dir} vs ${b.stats.dir}`;
  const common = a.stats.metrics.filter((d) => b.stats.metrics.some((x) => x.name === d.name));
  const models = a.stats.models.filter((m) => b.stats.models.includes(m));
  const out: string[] = [head(title), metaLine(a.stats, 'A'), metaLine(b.stats, 'B'), `<p class="meta">Made by rho ${esc(RHO_VERSION)}. A solid, B dashed.</p>`];
  out.push(section('differences', 'Per-source differences', differenceTable(a, b)));
  out.push(section('positions', 'Loss by position in the window', positionPlot(input.runs)));
  out.push(section('distributions', 'Distributions', `<div class="charts">${common.map((d) => distributionSection(input.runs, d)).join('')}</div>`));
  out.push(section('shares', 'Selected share by source', sharePlot(input.runs)));
  out.push(section('documents', 'Per-document mean loss', `<div class="charts">${models.map((m) => docMeanPlot(input.runs, m)).join('')}</div>${models.map((m) => `<h3>Documents whose mean ${esc(m)}_loss differs most</h3>${docDiffTable(a, b, m)}`).join('')}`));
  out.push('</body></html>\n');
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

/** Statistics, plots and sample heatmaps of one output dir, or of two side by side, as one HTML page. */
export async function makeReport(dirs: string | string[], opts: ReportOptions = {}): Promise<{ html: string; runs: ReportRun[]; docs: ReportDoc[]; warnings: string[] }> {
  const list = typeof dirs === 'string' ? [dirs] : dirs;
  if (list.length < 1 || list.length > 2) throw new Error(`rho report takes one or two dirs (got ${list.length})`);
  const runs: ReportRun[] = [];
  for (const [i, dir] of list.entries()) {
    runs.push({ ...(await profileDir(dir, { ...opts, keepDocMeans: list.length === 2, maxSources: opts.maxGroups ?? 24 })), label: list.length === 2 ? 'AB'[i] : '' });
  }
  const warnings: string[] = [];
  const docs: ReportDoc[] = [];
  const decoded = new Map<number, string>();
  if (runs.length === 1) {
    const { set, stats } = runs[0];
    const reference = pickReference(set.models, opts.reference);
    // Excess loss is what top-k selection ranks by, so it colours the samples whenever there are two models.
    const metric = pickMetric(set.models, reference, opts.metric ?? (set.models.length > 1 ? 'excess' : 'loss'), opts.model);
    const samples = opts.samples ?? 6;
    const dropped = topDropped(runs[0]);
    if (samples > 0 || dropped.length) {
      const ctx = loadTextContext(set, opts);
      warnings.push(...ctx.warnings);
      for (const [id] of dropped) decoded.set(id, await ctx.tokenizer.decode([id]));
      if (samples > 0) {
        for (const doc of await findDocuments(set, { sample: samples, seed: opts.seed ?? 1 })) {
          const text = await documentText(doc, ctx);
          const view = { doc, text, metric, scores: tokenScores(doc, metric), tokenText: (i: number) => ctx.tokenizer.idToToken(doc.tokenIds[i]) ?? `#${doc.tokenIds[i]}` };
          docs.push({ view, models: set.models, reference, maxTokens: opts.maxTokens ?? 1500 });
        }
      }
    }
    void stats;
  }
  const html = renderReport({ runs, docs, decoded, maxGroups: opts.maxGroups ?? 24, title: opts.title });
  return { html, runs, docs, warnings };
}
