// The report's plots, one function per section, for one dir or two overlaid (`rho report A B`). Data comes
// from runStats (fine histograms, cuts) and profileDir (positions, joint grid, document means, dropped
// tokens). Every plotted number is also written into data-* attributes, in the units stated next to it.
import { FineHistogram, type Stats, type MetricDef, type StatsRun } from './stats.js';
import { POSITION_LOSS, type Profile } from './profile.js';
import { keepRatioLabel, keptSide } from '../schemas/selection-cut.js';
import { Frame, colourAt, densityColour, esc, fitLabel, legend, niceStep, pathOf, placeMarkerLabels, rowsUsed, textWidth, fmtTick } from './plots.js';

export interface ReportRun extends StatsRun {
  profile: Profile;
  /** `A`/`B` in a comparison, '' for one dir. */
  label: string;
}

const fmt = (v: number | null | undefined, d = 3): string => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const pct = (v: number | null | undefined): string => (v === null || v === undefined || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(1)}%`);
const runName = (r: ReportRun, s: string): string => (r.label ? `${r.label}: ${s}` : s);
const sourcesOf = (s: Stats): string[] => s.groups.filter((g) => g.dimension === 'source').map((g) => g.key);

/** Fine bin (index) at quantile q (PERCENTILE_DISC rank) of a fine histogram; clamped to the range. */
function fineQuantileBin(h: FineHistogram, q: number): number {
  const n = h.total;
  const b = h.binOfRank(Math.max(0, Math.ceil(q * n) - 1));
  return Math.min(Math.max(b, 0), h.spec.bins - 1);
}

/**
 * Plot range and bin width that fit a metric's spread: [p0.5, p99.5] of every histogram given, bin width a
 * nice multiple of the fine width giving about `target` bins. Returned in fine-bin units.
 */
export function fitBins(hs: FineHistogram[], target = 50): { b0: number; b1: number; factor: number } {
  const live = hs.filter((h) => h.total > 0);
  if (!live.length) return { b0: 0, b1: 1, factor: 1 };
  const lo = Math.min(...live.map((h) => fineQuantileBin(h, 0.005)));
  const hi = Math.max(...live.map((h) => fineQuantileBin(h, 0.995))) + 1;
  const w = live[0].spec.width;
  const factor = Math.max(1, Math.round(niceStep(((hi - lo) * w) / target) / w));
  const b0 = Math.floor(lo / factor) * factor;
  const b1 = Math.min(Math.ceil(hi / factor) * factor, Math.floor(live[0].spec.bins / factor) * factor);
  return { b0, b1: Math.max(b1, b0 + factor), factor };
}

const edge = (h: { spec: { lo: number; width: number } }, bin: number): number => +(h.spec.lo + bin * h.spec.width).toFixed(6);

// ---- histogram with the cut -------------------------------------------------------------------------

/** The whole dir's histogram of a metric, on bins fitted to its spread, with each ratio's cut and its kept side. */
export function histogramPlot(run: ReportRun, d: MetricDef): string {
  const h = run.fine('all', 'all', d.name)!;
  const m = run.stats.groups[0].metrics[d.name];
  const { b0, b1, factor } = fitBins([h]);
  const counts: number[] = [];
  for (let b = b0; b < b1; b += factor) {
    let c = 0;
    for (let k = b; k < b + factor; k++) c += h.counts[k];
    counts.push(c);
  }
  const below = h.countBelowBin(b0);
  const above = h.total - below - counts.reduce((a, c) => a + c, 0);
  const lo = edge(h, b0);
  const hi = edge(h, b1);
  const max = Math.max(1, ...counts);
  const cuts = run.stats.ratios.map((r) => ({ r, t: m.thresholds[String(r)] })).filter((c) => c.t !== null) as { r: number; t: number }[];
  const side = keptSide(d.kind);
  const labels = cuts.map((c) => ({ x: 0, text: `${keepRatioLabel(c.r)}: ${side === 'at_or_below' ? '≤' : '≥'} ${c.t.toFixed(3)}` }));
  const W = 480;
  const probe = new Frame(W, 220, { left: 56, right: 12, top: 8, bottom: 32 }, lo, hi, 0, max);
  labels.forEach((l, i) => { l.x = probe.x(probe.clampX(cuts[i].t)); });
  const placed = placeMarkerLabels(labels, probe.m.left, W - probe.m.right);
  const top = 8 + 12 * rowsUsed(placed);
  const f = new Frame(W, 212 + top, { left: 56, right: 12, top, bottom: 32 }, lo, hi, 0, max);
  const bw = f.pw / counts.length;
  const out: string[] = [];
  out.push(`<svg class="plot histogram" data-metric="${esc(d.name)}" data-dir="${esc(run.label)}" data-fine-lo="${h.spec.lo}" data-fine-width="${h.spec.width}" data-bin0="${b0}" data-factor="${factor}" data-below="${below}" data-above="${above}" viewBox="0 0 ${W} ${f.height}" width="${W}" height="${f.height}" role="img" aria-label="${esc(`${d.name} histogram`)}">`);
  // Kept side of the first ratio's cut, shaded.
  if (cuts.length) {
    const x = f.x(f.clampX(cuts[0].t));
    const [a, b] = side === 'at_or_below' ? [f.m.left, x] : [x, f.m.left + f.pw];
    out.push(`<rect class="kept-side" x="${a.toFixed(1)}" y="${f.m.top}" width="${Math.max(0, b - a).toFixed(1)}" height="${f.ph}"><title>side ${esc(keepRatioLabel(cuts[0].r))} keeps</title></rect>`);
  }
  counts.forEach((c, i) => {
    const bh = (c / max) * f.ph;
    out.push(`<rect class="bar" data-bin="${b0 + i * factor}" data-count="${c}" x="${(f.m.left + i * bw + 0.3).toFixed(2)}" y="${(f.m.top + f.ph - bh).toFixed(2)}" width="${Math.max(bw - 0.6, 0.4).toFixed(2)}" height="${bh.toFixed(2)}"><title>[${fmtTick(lo + i * factor * h.spec.width)}, ${fmtTick(lo + (i + 1) * factor * h.spec.width)}): ${c}</title></rect>`);
  });
  out.push(f.axes(`${d.name} (nats), bins of ${fmtTick(factor * h.spec.width)}`, 'tokens'));
  cuts.forEach((c, i) => {
    const x = f.x(f.clampX(c.t)).toFixed(1);
    const p = placed[i];
    out.push(`<line class="cut" data-metric="${esc(d.name)}" data-ratio="${c.r}" data-value="${c.t}" data-select-threshold="${m.cuts[String(c.r)].select_threshold}" x1="${x}" y1="${f.m.top}" x2="${x}" y2="${f.m.top + f.ph}"/>`);
    out.push(`<text class="cut-label" x="${p.x.toFixed(1)}" y="${8 + 12 * p.row + 2}" text-anchor="${p.anchor}">${esc(labels[i].text)}</text>`);
  });
  out.push('</svg>');
  const note = below || above ? `<p class="note">${below} tokens below ${lo} and ${above} at or above ${hi} are outside the plot.</p>` : '';
  return `<figure class="chart" style="width:${W}px">${out.join('')}<figcaption>${esc(runName(run, `${d.name}: every scored token; shaded: the side ${cuts.length ? keepRatioLabel(cuts[0].r) : 'a cut'} keeps (rho select ${m.cuts[String(cuts[0]?.r)]?.select_args ?? ''})`))}</figcaption>${note}</figure>`;
}

// ---- overlaid CDFs --------------------------------------------------------------------------------------

export interface CdfSeries { label: string; colour: string; dash: boolean; h: FineHistogram; attrs: string }

/**
 * Overlaid cumulative distributions on one scale: y = share of values below x, at every `step` fine bins
 * over the fitted range. data-points: [[fine bin k, count of values in fine bins < k], ...], data-n.
 */
export function cdfPlot(series: CdfSeries[], xLabel: string, cls: string, cuts: { x: number; text: string }[] = []): string {
  const live = series.filter((s) => s.h.total > 0);
  if (!live.length) return '<p class="note">no values</p>';
  const { b0, b1 } = fitBins(live.map((s) => s.h));
  const step = Math.max(1, Math.ceil((b1 - b0) / 160));
  const h0 = live[0].h;
  const W = 480;
  const probe = new Frame(W, 220, { left: 44, right: 12, top: 8, bottom: 32 }, edge(h0, b0), edge(h0, b1), 0, 1);
  const labels = cuts.map((c) => ({ x: probe.x(probe.clampX(c.x)), text: c.text }));
  const placed = placeMarkerLabels(labels, probe.m.left, W - probe.m.right);
  const top = 8 + 12 * rowsUsed(placed);
  const f = new Frame(W, 212 + top, { left: 44, right: 12, top, bottom: 32 }, edge(h0, b0), edge(h0, b1), 0, 1);
  const out: string[] = [];
  out.push(`<svg class="plot cdf ${cls}" data-fine-lo="${h0.spec.lo}" data-fine-width="${h0.spec.width}" viewBox="0 0 ${W} ${f.height}" width="${W}" height="${f.height}" role="img" aria-label="${esc(xLabel)} cumulative distribution">`);
  out.push(f.axes(xLabel, 'share below x', (v) => `${Math.round(v * 100)}%`));
  cuts.forEach((c, i) => {
    const x = f.x(f.clampX(c.x)).toFixed(1);
    out.push(`<line class="cut" x1="${x}" y1="${f.m.top}" x2="${x}" y2="${f.m.top + f.ph}"/><text class="cut-label" x="${placed[i].x.toFixed(1)}" y="${8 + 12 * placed[i].row + 2}" text-anchor="${placed[i].anchor}">${esc(c.text)}</text>`);
  });
  for (const s of live) {
    const pts: [number, number][] = [];
    const data: [number, number][] = [];
    let below = s.h.countBelowBin(b0);
    for (let k = b0; k <= b1; k += step) {
      data.push([k, below]);
      pts.push([f.x(edge(s.h, k)), f.y(below / s.h.total)]);
      for (let j = k; j < Math.min(k + step, s.h.spec.bins); j++) below += s.h.counts[j];
    }
    out.push(`<path class="cdf-line" ${s.attrs} data-n="${s.h.total}" data-points="${JSON.stringify(data)}" d="${pathOf(pts)}" stroke="${s.colour}"${s.dash ? ' stroke-dasharray="5 3"' : ''}><title>${esc(s.label)}</title></path>`);
  }
  out.push('</svg>');
  return `<figure class="chart" style="width:${W}px">${out.join('')}${legend(live.map((s) => ({ label: `${s.label} (${s.h.total})`, colour: s.colour, dash: s.dash })))}</figure>`;
}

/** Per-source distributions of each metric, overlaid on one scale (one run: every source; two runs: A vs B). */
export function distributionSection(runs: ReportRun[], d: MetricDef): string {
  const series: CdfSeries[] = [];
  if (runs.length === 1) {
    const r = runs[0];
    series.push({ label: 'all', colour: '#000', dash: true, h: r.fine('all', 'all', d.name)!, attrs: `data-metric="${esc(d.name)}" data-group="all" data-dir=""` });
    sourcesOf(r.stats).filter((s) => r.fine('source', s, d.name)).forEach((s, i) => series.push({ label: s, colour: colourAt(i), dash: false, h: r.fine('source', s, d.name)!, attrs: `data-metric="${esc(d.name)}" data-group="${esc(s)}" data-dir=""` }));
  } else {
    runs.forEach((r, ri) => {
      const h = r.fine('all', 'all', d.name);
      if (h) series.push({ label: `${r.label}: all`, colour: colourAt(ri), dash: ri > 0, h, attrs: `data-metric="${esc(d.name)}" data-group="all" data-dir="${esc(r.label)}"` });
    });
  }
  const m = runs[0].stats.groups[0].metrics[d.name];
  const cuts = runs.length === 1 && m ? runs[0].stats.ratios.filter((r) => m.thresholds[String(r)] !== null).map((r) => ({ x: m.thresholds[String(r)]!, text: `${keepRatioLabel(r)} ${keptSide(d.kind) === 'at_or_below' ? '≤' : '≥'} ${m.thresholds[String(r)]!.toFixed(3)}` })) : [];
  const left = runs.length === 1 ? sourcesOf(runs[0].stats).length - (series.length - 1) : 0;
  return cdfPlot(series, `${d.name} (nats)`, `metric-cdf`, cuts) + (left > 0 ? `<p class="note">${left} more sources are in "all" but not drawn one by one (--max-groups).</p>` : '');
}

// ---- loss by position in the window --------------------------------------------------------------------

/** Mean loss and the p25-p75 band by position in the window, per model (and per dir). */
export function positionPlot(runs: ReportRun[]): string {
  const withPos = runs.filter((r) => r.profile.positions);
  if (!withPos.length) return '<p class="note">No window size in the files\' metadata: positions unknown.</p>';
  const C = Math.max(...withPos.map((r) => r.profile.positions!.context));
  type S = { label: string; colour: string; dash: boolean; rows: [number, number, number, number, number][]; width: number; run: ReportRun; model: string };
  const series: S[] = [];
  let i = 0;
  withPos.forEach((r, ri) => {
    const P = r.profile.positions!;
    for (const [model, acc] of Object.entries(P.models)) {
      const rows: S['rows'] = [];
      for (let b = 0; b < acc.count.length; b++) {
        const n = acc.count[b];
        if (!n) continue;
        const qBin = (q: number) => { const rank = Math.max(0, Math.ceil(q * n) - 1); let seen = 0; const h = acc.hist[b]; for (let k = 0; k < h.length; k++) { seen += h[k]; if (rank < seen) return k; } return h.length - 1; };
        rows.push([b * P.width, n, acc.sum[b] / n, qBin(0.25), qBin(0.75)]);
      }
      series.push({ label: runName(r, `${model}_loss`), colour: colourAt(i++), dash: ri > 0, rows, width: P.width, run: r, model });
    }
  });
  const all = series.flatMap((s) => s.rows);
  const yMax = Math.max(...all.map((r) => (r[4] + 1) * POSITION_LOSS.width), ...all.map((r) => r[2]));
  const W = 720;
  const markers = withPos.map((r) => {
    const P = r.profile.positions!;
    return { x: P.context - P.stride, text: runName(r, `C−S = ${P.context - P.stride}: later windows score from here`) };
  }).filter((m, i, all) => m.x > 0 && all.findIndex((o) => o.x === m.x) === i)
    .map((m) => (withPos.filter((r) => r.profile.positions!.context - r.profile.positions!.stride === m.x).length > 1 ? { ...m, text: m.text.replace(/^[AB]: /, '') } : m));
  const probe = new Frame(W, 260, { left: 44, right: 12, top: 8, bottom: 32 }, 0, C, 0, yMax);
  const placed = placeMarkerLabels(markers.map((m) => ({ x: probe.x(m.x), text: m.text })), probe.m.left, W - probe.m.right);
  const top = 8 + 12 * rowsUsed(placed);
  const f = new Frame(W, 252 + top, { left: 44, right: 12, top, bottom: 32 }, 0, C, 0, niceStep(yMax / 6) * Math.ceil(yMax / niceStep(yMax / 6)));
  const out: string[] = [];
  out.push(`<svg class="plot positions" data-loss-bin-width="${POSITION_LOSS.width}" viewBox="0 0 ${W} ${f.height}" width="${W}" height="${f.height}" role="img" aria-label="loss by position in the window">`);
  out.push(f.axes('position in the window (tokens)', 'loss (nats)'));
  const mid = (k: number) => (k + 0.5) * POSITION_LOSS.width;
  for (const s of series) {
    const xs = (r: S['rows'][number]) => f.x(r[0] + (s.width - 1) / 2);
    const band = [...s.rows.map((r) => [xs(r), f.y(mid(r[4]))] as [number, number]), ...s.rows.slice().reverse().map((r) => [xs(r), f.y(mid(r[3]))] as [number, number])];
    out.push(`<path class="band" d="${pathOf(band)}Z" fill="${s.colour}"/>`);
  }
  for (const s of series) {
    const pts = s.rows.map((r) => [f.x(r[0] + (s.width - 1) / 2), f.y(r[2])] as [number, number]);
    out.push(`<path class="mean-line" data-model="${esc(s.model)}" data-dir="${esc(s.run.label)}" data-bucket-width="${s.width}" data-points="${JSON.stringify(s.rows.map((r) => [r[0], r[1], +r[2].toFixed(6), r[3], r[4]]))}" d="${pathOf(pts)}" stroke="${s.colour}"${s.dash ? ' stroke-dasharray="5 3"' : ''}><title>${esc(s.label)}</title></path>`);
  }
  markers.forEach((m, k) => {
    const x = f.x(m.x).toFixed(1);
    out.push(`<line class="marker" x1="${x}" y1="${f.m.top}" x2="${x}" y2="${f.m.top + f.ph}"/><text class="cut-label marker-label" x="${placed[k].x.toFixed(1)}" y="${8 + 12 * placed[k].row + 2}" text-anchor="${placed[k].anchor}">${esc(m.text)}</text>`);
  });
  out.push('</svg>');
  const items = series.flatMap((s) => [{ label: `${s.label}: mean`, colour: s.colour, dash: s.dash }, { label: `${s.label}: p25–p75`, colour: s.colour, band: true, dash: s.dash }]);
  return `<figure class="chart" style="width:${W}px">${out.join('')}${legend(items)}<figcaption>Each token counts at its position inside the window that scored it (position 0 has no context and no score). Band: 25th to 75th percentile, to ${POSITION_LOSS.width} nats.</figcaption></figure>`;
}

// ---- joint reference vs base loss ----------------------------------------------------------------------

/** 2-D density of reference loss (x) vs the other model's loss (y), with the excess-loss cuts as diagonals. */
export function jointPlot(run: ReportRun): string {
  const J = run.profile.joint;
  if (!J) return '<p class="note">One model only: no joint distribution.</p>';
  const s = run.stats;
  const hr = run.fine('all', 'all', `${J.reference}_loss`)!;
  const hb = run.fine('all', 'all', `${J.model}_loss`)!;
  const hiLoss = Math.max(fineQuantileBin(hr, 0.995), fineQuantileBin(hb, 0.995)) * hr.spec.width;
  const cells = 48;
  const factor = Math.max(1, Math.ceil(hiLoss / J.spec.width / cells));
  const n = Math.min(Math.ceil(hiLoss / J.spec.width / factor), Math.floor(J.spec.bins / factor));
  const grid = new Float64Array(n * n);
  let shown = 0;
  for (let x = 0; x < n * factor; x++) for (let y = 0; y < n * factor; y++) {
    const c = J.counts[x * J.spec.bins + y];
    if (c) { grid[Math.floor(x / factor) * n + Math.floor(y / factor)] += c; shown += c; }
  }
  const max = Math.max(1, ...grid);
  const L = n * factor * J.spec.width;
  const excess = s.metrics.find((d) => d.kind === 'excess' && d.model === J.model);
  const em = excess ? s.groups[0].metrics[excess.name] : null;
  const rm = s.groups[0].metrics[`${J.reference}_loss`];
  const W = 460;
  const f0 = new Frame(W, W, { left: 48, right: 16, top: 8, bottom: 36 }, 0, L, 0, L);
  const vlabels = s.ratios.filter((r) => rm.thresholds[String(r)] !== null).map((r) => ({ r, t: rm.thresholds[String(r)]!, x: f0.x(Math.min(rm.thresholds[String(r)]!, L)), text: `--by ref_loss ${keepRatioLabel(r)}: x ≤ ${rm.thresholds[String(r)]!.toFixed(2)}` }));
  const placed = placeMarkerLabels(vlabels, f0.m.left, W - f0.m.right);
  const top = 8 + 12 * rowsUsed(placed);
  const f = new Frame(W, W - f0.m.top + top, { left: 48, right: 16, top, bottom: 36 }, 0, L, 0, L);
  const cw = f.pw / n;
  const ch = f.ph / n;
  const out: string[] = [];
  out.push(`<svg class="plot joint" data-reference="${esc(J.reference)}" data-model="${esc(J.model)}" data-cell="${+(factor * J.spec.width).toFixed(6)}" data-factor="${factor}" data-fine-width="${J.spec.width}" data-cells="${n}" data-shown="${shown}" data-total="${J.total}" viewBox="0 0 ${W} ${f.height}" width="${W}" height="${f.height}" role="img" aria-label="reference vs ${esc(J.model)} loss">`);
  out.push(`<defs><clipPath id="joint-clip"><rect x="${f.m.left}" y="${f.m.top}" width="${f.pw}" height="${f.ph}"/></clipPath></defs>`);
  out.push(f.axes(`${J.reference}_loss (nats)`, `${J.model}_loss (nats)`));
  for (let x = 0; x < n; x++) for (let y = 0; y < n; y++) {
    const c = grid[x * n + y];
    if (!c) continue;
    out.push(`<rect class="cell" data-ix="${x}" data-iy="${y}" data-count="${c}" x="${(f.m.left + x * cw).toFixed(2)}" y="${(f.m.top + f.ph - (y + 1) * ch).toFixed(2)}" width="${(cw + 0.3).toFixed(2)}" height="${(ch + 0.3).toFixed(2)}" fill="${densityColour(Math.log1p(c) / Math.log1p(max))}"><title>${J.reference} [${fmtTick(x * factor * J.spec.width)}, ${fmtTick((x + 1) * factor * J.spec.width)}) × ${J.model} [${fmtTick(y * factor * J.spec.width)}, ${fmtTick((y + 1) * factor * J.spec.width)}): ${c}</title></rect>`);
  }
  out.push(`<g clip-path="url(#joint-clip)"><line class="diagonal" x1="${f.x(0)}" y1="${f.y(0)}" x2="${f.x(L)}" y2="${f.y(L)}"/>`);
  const diag: string[] = [];
  if (em) {
    s.ratios.forEach((r, i) => {
      const t = em.thresholds[String(r)];
      if (t === null) return;
      // excess = base - ref >= t  <=>  y >= x + t: kept above the line.
      diag.push(`<line class="cut excess-cut" data-ratio="${r}" data-value="${t}" x1="${f.x(Math.max(0, -t)).toFixed(1)}" y1="${f.y(Math.max(0, t)).toFixed(1)}" x2="${f.x(Math.min(L, L - t)).toFixed(1)}" y2="${f.y(Math.min(L, L + t)).toFixed(1)}" style="stroke-dasharray:${i ? '2 3' : '6 3'}"/>`);
    });
  }
  out.push(diag.join(''));
  vlabels.forEach((v, i) => {
    out.push(`<line class="cut ref-cut" stroke="#6a3d9a" data-ratio="${v.r}" data-value="${v.t}" x1="${f.x(Math.min(v.t, L)).toFixed(1)}" y1="${f.m.top}" x2="${f.x(Math.min(v.t, L)).toFixed(1)}" y2="${f.m.top + f.ph}" style="stroke-dasharray:${i ? '2 3' : '6 3'}"/>`);
  });
  out.push('</g>');
  vlabels.forEach((v, i) => out.push(`<text class="cut-label ref-cut-label" x="${placed[i].x.toFixed(1)}" y="${8 + 12 * placed[i].row + 2}" text-anchor="${placed[i].anchor}" fill="#6a3d9a">${esc(v.text)}</text>`));
  out.push('</svg>');
  const keyItems = em ? s.ratios.filter((r) => em.thresholds[String(r)] !== null).map((r, i) => `<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="0" y1="5" x2="22" y2="5" class="cut-key" style="stroke-dasharray:${i ? '2 3' : '6 3'}"/></svg>--by excess ${esc(keepRatioLabel(r))}: keeps tokens above the line (${esc(J.model)} − ${esc(J.reference)} ≥ ${em.thresholds[String(r)]!.toFixed(3)})</span>`) : [];
  const outside = J.total - shown;
  return `<figure class="chart" style="width:${W}px">${out.join('')}<div class="plot-legend">${keyItems.join('')}<span class="key">grey diagonal: equal losses; colour: token count per ${fmtTick(factor * J.spec.width)}-nat cell (log scale, max ${max})</span></div>${outside ? `<p class="note">${outside} of ${J.total} tokens lie outside the plotted square.</p>` : ''}</figure>`;
}

// ---- selected share per source -------------------------------------------------------------------------

/** What the share bars show: the selection in select_mask, else the share the whole dir's cut keeps of each source. */
export function shareRows(run: ReportRun, metric?: string): { what: string; rows: { source: string; share: number | null; kept: number | null; of: number }[] }[] {
  const s = run.stats;
  const sources = s.groups.filter((g) => g.dimension === 'source');
  if (s.has_select && metric === undefined) {
    return [{ what: 'selected (select_mask)', rows: sources.map((g) => ({ source: g.key, share: g.selected_fraction, kept: g.selected_tokens, of: g.scored_tokens })) }];
  }
  const d = (metric !== undefined ? s.metrics.find((x) => x.name === metric) : undefined) ?? s.metrics.find((x) => x.kind === 'excess') ?? s.metrics.find((x) => x.model === s.reference)!;
  const t0 = (r: number) => s.groups[0].metrics[d.name].thresholds[String(r)];
  return s.ratios.map((r) => {
    const approx = sources.some((g) => g.metrics[d.name].cuts[String(r)].kept_by_dir_cut === null);
    return {
      what: `${d.kind === 'excess' ? '--by excess' : '--by ref_loss'} ${keepRatioLabel(r)} over the whole dir${approx ? ' (≈: quantiles from the sketch, counted to 0.01 nats)' : ''}`,
      rows: sources.map((g) => {
        const c = g.metrics[d.name].cuts[String(r)];
        const of = g.metrics[d.name].count;
        if (c.kept_by_dir_cut !== null) return { source: g.key, share: c.kept_share_by_dir_cut, kept: c.kept_by_dir_cut, of };
        // Sketch mode: the tokens in fine bins on the kept side, the threshold's own bin counted as kept.
        const h = run.fine('source', g.key, d.name);
        const t = t0(r);
        if (!h || t === null || !of) return { source: g.key, share: null, kept: null, of };
        const k = Math.floor((t - h.spec.lo) / h.spec.width);
        const kept = d.kind === 'loss' ? h.countBelowBin(k + 1) + (k + 1 > h.spec.bins ? h.above : 0) : h.total - h.countBelowBin(Math.max(0, k));
        return { source: g.key, share: kept / of, kept, of };
      }),
    };
  });
}

export function sharePlot(runs: ReportRun[]): string {
  type Bar = { source: string; share: number; kept: number; of: number; series: string; colour: string };
  const bars: Bar[] = [];
  const names: string[] = [];
  const series: { label: string; colour: string }[] = [];
  runs.forEach((r) => shareRows(r).forEach((s) => {
    const colour = colourAt(series.length);
    const label = runName(r, s.what);
    series.push({ label, colour });
    for (const row of s.rows) {
      if (!names.includes(row.source)) names.push(row.source);
      if (row.share !== null) bars.push({ source: row.source, share: row.share, kept: row.kept ?? 0, of: row.of, series: label, colour });
    }
  }));
  if (!bars.length) return '<p class="note">No shares to show.</p>';
  const shown = names.slice(0, 24);
  const omitted = names.length - shown.length;
  names.length = 0;
  names.push(...shown);
  const per = series.length;
  const bh = 12;
  const gap = 10;
  const left = 210;
  const W = 640;
  const H = 20 + names.length * (per * bh + gap) + 24;
  const f = new Frame(W, H, { left, right: 56, top: 10, bottom: 30 }, 0, 1, 0, 1);
  const out: string[] = [];
  out.push(`<svg class="plot shares" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="selected share by source">`);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    const x = f.x(v).toFixed(1);
    out.push(`<line class="grid" x1="${x}" y1="${f.m.top}" x2="${x}" y2="${H - f.m.bottom}"/><text class="tick" x="${x}" y="${H - f.m.bottom + 13}" text-anchor="middle">${v * 100}%</text>`);
  }
  out.push(`<text class="axis-label" x="${left + f.pw / 2}" y="${H - 4}" text-anchor="middle">share of the source's scored tokens kept</text>`);
  names.forEach((name, i) => {
    const y0 = f.m.top + i * (per * bh + gap);
    out.push(`<text class="tick source-name" x="${left - 6}" y="${(y0 + (per * bh) / 2 + 3).toFixed(1)}" text-anchor="end">${esc(fitLabel(name, left - 12))}<title>${esc(name)}</title></text>`);
    series.forEach((s, k) => {
      const b = bars.find((x) => x.source === name && x.series === s.label);
      if (!b) return;
      const y = y0 + k * bh;
      out.push(`<rect class="share-bar" data-source="${esc(name)}" data-series="${esc(s.label)}" data-kept="${b.kept}" data-of="${b.of}" data-share="${b.share}" x="${left}" y="${y + 1}" width="${(b.share * f.pw).toFixed(2)}" height="${bh - 2}" fill="${s.colour}"><title>${esc(name)}: ${b.kept} of ${b.of} (${pct(b.share)})</title></rect>`);
      out.push(`<text class="tick bar-value" x="${(left + b.share * f.pw + 4).toFixed(1)}" y="${y + bh - 3}">${pct(b.share)}</text>`);
    });
  });
  out.push('</svg>');
  return `<figure class="chart" style="width:${W}px">${out.join('')}${legend(series)}${omitted ? `<p class="note">${omitted} more sources not drawn.</p>` : ''}</figure>`;
}

// ---- per-document mean loss ----------------------------------------------------------------------------

/** Distribution of the documents' mean loss (`<model>_loss_mean`) per source, overlaid (two runs: A vs B, all sources). */
export function docMeanPlot(runs: ReportRun[], model: string): string {
  const series: CdfSeries[] = [];
  if (runs.length === 1) {
    let i = 0;
    for (const [source, per] of runs[0].profile.docMeans) series.push({ label: source, colour: colourAt(i++), dash: false, h: per[model], attrs: `data-model="${esc(model)}" data-group="${esc(source)}" data-dir=""` });
  } else {
    runs.forEach((r, ri) => {
      const hs = [...r.profile.docMeans.values()].map((p) => p[model]).filter(Boolean);
      if (!hs.length) return;
      const sum = new FineHistogram(hs[0].spec);
      for (const h of hs) { h.counts.forEach((c, k) => { sum.counts[k] += c; }); sum.below += h.below; sum.above += h.above; sum.total += h.total; }
      series.push({ label: `${r.label}: all sources`, colour: colourAt(ri), dash: ri > 0, h: sum, attrs: `data-model="${esc(model)}" data-group="all" data-dir="${esc(r.label)}"` });
    });
  }
  const others = runs.length === 1 ? runs[0].profile.otherSources.size : 0;
  return cdfPlot(series, `document mean ${model}_loss (nats)`, 'doc-means') + (others ? `<p class="note">${others} more sources not drawn (--max-groups).</p>` : '');
}

// ---- tokens dropped most often -------------------------------------------------------------------------

/** The token ids left unselected most often (ties: lower id first). */
export function topDropped(run: ReportRun, top = 50): [number, { n: number; unselected: number }][] {
  const t = run.profile.tokens;
  if (!t) return [];
  return [...t.entries()].filter(([, c]) => c.unselected > 0).sort((a, b) => b[1].unselected - a[1].unselected || a[0] - b[0]).slice(0, top);
}

export function droppedTable(run: ReportRun, decoded: Map<number, string>, top = 50): string {
  const t = run.profile.tokens;
  if (!t) return '<p class="note">The dir has no select_mask: run <code>rho select</code> first to see which tokens a selection drops.</p>';
  const rows = topDropped(run, top);
  const by = run.profile.tokensBy === 'select_mask' ? 'Unselected: by the select_mask of the dir.' : `Unselected: by ${run.profile.tokensBy}.`;
  const decode = (id: number) => decoded.get(id) ?? `#${id}`;
  const total = [...t.values()].reduce((a, c) => a + c.unselected, 0);
  const out = [`<table class="stats dropped"><thead><tr><th>#</th><th>token</th><th>id</th><th>unselected</th><th>occurrences</th><th>share unselected</th><th>share of all unselected</th></tr></thead><tbody>`];
  rows.forEach(([id, c], i) => {
    out.push(`<tr data-token-id="${id}" data-unselected="${c.unselected}" data-n="${c.n}"><td>${i + 1}</td><td class="tokstr">${esc(JSON.stringify(decode(id)))}</td><td>${id}</td><td>${c.unselected}</td><td>${c.n}</td><td>${pct(c.unselected / c.n)}</td><td>${pct(c.unselected / total)}</td></tr>`);
  });
  out.push('</tbody></table>');
  return `<p class="note">${esc(by)}</p>` + out.join('');
}

// ---- A vs B --------------------------------------------------------------------------------------------

export function differenceTable(a: ReportRun, b: ReportRun): string {
  const sources = [...new Set([...sourcesOf(a.stats), ...sourcesOf(b.stats)])].sort();
  const metrics = a.stats.metrics.filter((d) => b.stats.metrics.some((x) => x.name === d.name));
  // The same kind of share on both sides: the selections when both dirs have one, else one common metric's cut.
  const both = a.stats.has_select && b.stats.has_select;
  const common = metrics.find((d) => d.kind === 'excess') ?? metrics.find((d) => d.model === a.stats.reference && d.model === b.stats.reference) ?? metrics[0];
  const pick = (r: ReportRun) => shareRows(r, both ? undefined : common?.name)[0];
  const shareOf = (r: ReportRun, src: string) => pick(r)?.rows.find((x) => x.source === src)?.share ?? null;
  const out = ['<table class="stats diff"><thead><tr><th>source</th>'];
  for (const d of metrics) out.push(`<th>${esc(d.name)} mean A</th><th>B</th><th>B − A</th>`);
  out.push('<th>kept share A</th><th>B</th><th>B − A</th></tr></thead><tbody>');
  for (const src of ['all', ...sources]) {
    const ga = a.stats.groups.find((g) => (src === 'all' ? g.dimension === 'all' : g.dimension === 'source' && g.key === src));
    const gb = b.stats.groups.find((g) => (src === 'all' ? g.dimension === 'all' : g.dimension === 'source' && g.key === src));
    out.push(`<tr data-source="${esc(src)}"><td>${esc(src)}</td>`);
    for (const d of metrics) {
      const ma = ga?.metrics[d.name]?.mean ?? null;
      const mb = gb?.metrics[d.name]?.mean ?? null;
      out.push(`<td data-metric="${esc(d.name)}" data-a="${ma}">${fmt(ma)}</td><td data-b="${mb}">${fmt(mb)}</td><td>${ma !== null && mb !== null ? fmt(mb - ma) : '-'}</td>`);
    }
    const sa = src === 'all' ? null : shareOf(a, src);
    const sb = src === 'all' ? null : shareOf(b, src);
    out.push(`<td>${pct(sa)}</td><td>${pct(sb)}</td><td>${sa !== null && sb !== null ? `${((sb - sa) * 100).toFixed(1)} pts` : '-'}</td></tr>`);
  }
  out.push('</tbody></table>');
  return out.join('') + `<p class="note">Kept share: ${esc(pick(a)?.what ?? '')}${common ? ` (${esc(common.name)})` : ''}, in A and in B.</p>`;
}

export function docDiffTable(a: ReportRun, b: ReportRun, model: string, top = 20): string {
  const am = new Map((a.profile.docs ?? []).map((d) => [d.id, d]));
  const rows: { id: string; source: string; a: number; b: number }[] = [];
  for (const d of b.profile.docs ?? []) {
    const x = am.get(d.id);
    const va = x?.means[model];
    const vb = d.means[model];
    if (va === null || va === undefined || vb === null || vb === undefined) continue;
    rows.push({ id: d.id, source: d.source, a: va, b: vb });
  }
  rows.sort((p, q) => Math.abs(q.b - q.a) - Math.abs(p.b - p.a) || (p.id < q.id ? -1 : 1));
  const out = [`<table class="stats docdiff"><thead><tr><th>document</th><th>source</th><th>${esc(model)}_loss_mean A</th><th>B</th><th>B − A</th></tr></thead><tbody>`];
  for (const r of rows.slice(0, top)) out.push(`<tr data-id="${esc(r.id)}" data-a="${r.a}" data-b="${r.b}"><td>${esc(r.id)}</td><td>${esc(r.source)}</td><td>${fmt(r.a)}</td><td>${fmt(r.b)}</td><td>${fmt(r.b - r.a)}</td></tr>`);
  out.push('</tbody></table>');
  return out.join('') + `<p class="note">${rows.length} documents in both dirs (matched by id).</p>`;
}

export { textWidth };
