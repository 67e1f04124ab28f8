// Hand-drawn SVG charts for `rho report` (why not a library: docs/inspect.md and the README's dependency
// table). Every chart is a static <svg> with its numbers in data-* attributes (the browser test reads them
// and recomputes them with DuckDB). Text placement is decided here, never left to chance: tick counts follow
// the room a label needs, marker labels go to the first free row above the plot, and legends are HTML
// outside the SVG, so labels cannot overlap.

export const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** Category colours (Tableau 10): models, sources, dirs. */
export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
export const colourAt = (i: number): string => PALETTE[i % PALETTE.length];

/** Width in px of text at the chart font (10px sans-serif), on the generous side so boxes never touch. */
export const textWidth = (s: string, px = 10): number => Math.ceil([...s].length * px * 0.62) + 2;

/** "Nice" steps 1, 2, 2.5, 5 x 10^k. */
export function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw - 1e-12) return m * p;
  return 10 * p;
}

export const fmtTick = (v: number): string => String(+v.toFixed(6));

/** Ticks at multiples of a nice step inside [lo, hi]: the most (up to 10) whose labels fit between neighbours. */
export function ticks(lo: number, hi: number, px: number, vertical = false): number[] {
  if (!(hi > lo)) return [lo];
  for (let n = 10; n >= 2; n--) {
    const step = niceStep((hi - lo) / n);
    const out: number[] = [];
    for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    const need = vertical ? 14 : Math.max(...out.map((v) => textWidth(fmtTick(v)))) + 6;
    if ((px * step) / (hi - lo) >= need) return out;
  }
  return [lo, hi];
}

export interface Margin { left: number; right: number; top: number; bottom: number }

/** A plot area with linear x/y scales and axes. */
export class Frame {
  readonly pw: number;
  readonly ph: number;
  constructor(readonly width: number, readonly height: number, readonly m: Margin, readonly x0: number, readonly x1: number, readonly y0: number, readonly y1: number) {
    this.pw = width - m.left - m.right;
    this.ph = height - m.top - m.bottom;
  }
  x(v: number): number { return this.m.left + ((v - this.x0) / (this.x1 - this.x0)) * this.pw; }
  y(v: number): number { return this.m.top + this.ph - ((v - this.y0) / (this.y1 - this.y0)) * this.ph; }
  clampX(v: number): number { return Math.min(Math.max(v, this.x0), this.x1); }

  axes(xLabel: string, yLabel: string, yFmt: (v: number) => string = fmtTick): string {
    const { m, pw, ph } = this;
    const out: string[] = [];
    out.push(`<line class="axis" x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}"/>`);
    out.push(`<line class="axis" x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}"/>`);
    for (const v of ticks(this.x0, this.x1, pw)) {
      const x = this.x(v).toFixed(1);
      out.push(`<line class="tickmark" x1="${x}" y1="${m.top + ph}" x2="${x}" y2="${m.top + ph + 3}"/><text class="tick" x="${x}" y="${m.top + ph + 13}" text-anchor="middle">${fmtTick(v)}</text>`);
    }
    for (const v of ticks(this.y0, this.y1, ph, true)) {
      const y = this.y(v).toFixed(1);
      out.push(`<line class="grid" x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}"/><text class="tick" x="${m.left - 4}" y="${(Number(y) + 3).toFixed(1)}" text-anchor="end">${esc(yFmt(v))}</text>`);
    }
    out.push(`<text class="axis-label" x="${m.left + pw / 2}" y="${this.height - 4}" text-anchor="middle">${esc(xLabel)}</text>`);
    out.push(`<text class="axis-label" transform="translate(10 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
    return out.join('');
  }
}

export interface Marker { x: number; text: string; cls: string; attrs: string }

/**
 * Vertical marker lines (cuts) with labels in rows above the plot: each label goes to the first row where it
 * clears the labels already there. Returns the SVG and the rows used (the caller reserves 12 px per row).
 */
export function placeMarkerLabels(markers: { x: number; text: string }[], left: number, right: number): { row: number; x: number; anchor: 'start' | 'end' }[] {
  const rows: [number, number][][] = [];
  return markers.map((mk) => {
    const w = textWidth(mk.text);
    // Start at the line, or end at it when there is no room to the right.
    const anchor: 'start' | 'end' = mk.x + 2 + w > right ? 'end' : 'start';
    const a = anchor === 'start' ? mk.x + 2 : Math.max(left, mk.x - 2 - w);
    const b = a + w;
    let row = 0;
    for (; ; row++) {
      rows[row] ??= [];
      if (rows[row].every(([c, d]) => b + 4 <= c || a >= d + 4)) break;
    }
    rows[row].push([a, b]);
    return { row, x: anchor === 'start' ? a : b, anchor };
  });
}

export function rowsUsed(p: { row: number }[]): number {
  return p.length ? Math.max(...p.map((q) => q.row)) + 1 : 0;
}

/** An HTML legend (outside the SVG, so it wraps instead of overlapping). */
export function legend(items: { label: string; colour: string; dash?: boolean; band?: boolean }[]): string {
  return `<div class="plot-legend">${items.map((i) => `<span class="key"><svg width="22" height="10" aria-hidden="true">${i.band ? `<rect x="0" y="1" width="22" height="8" fill="${i.colour}" opacity="0.25"/>` : ''}<line x1="0" y1="5" x2="22" y2="5" stroke="${i.colour}" stroke-width="2"${i.dash ? ' stroke-dasharray="4 3"' : ''}/></svg>${esc(i.label)}</span>`).join('')}</div>`;
}

export const pathOf = (pts: [number, number][]): string => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');

/** Shorten a label to fit `px`, keeping both ends (file names differ at both). */
export function fitLabel(s: string, px: number): string {
  if (textWidth(s) <= px) return s;
  const chars = Math.max(4, Math.floor((px - 2) / 6.2) - 1);
  const head = Math.ceil(chars / 3);
  return `${s.slice(0, head)}…${s.slice(s.length - (chars - head))}`;
}

/** Sequential colour for a density cell (light yellow to dark blue), t in [0, 1]. */
export function densityColour(t: number): string {
  const stops = [[255, 255, 217], [199, 233, 180], [65, 182, 196], [34, 94, 168], [8, 29, 88]];
  const u = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(u), stops.length - 2);
  const f = u - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}
