// The fixed colour scales of `show` and `report` (documented in docs/inspect.md). Fixed bounds, not
// per-document ones, so the same colour means the same loss in every document and every run.
// Colours are xterm-256 palette entries (a terminal without truecolor still shows them); the HTML report
// uses the same entries' RGB values, so terminal and report agree.

export interface ColourLevel {
  /** xterm-256 colour index used as background */
  ansi256: number;
  /** the same colour as #rrggbb */
  hex: string;
  /** text colour that stays readable on it */
  darkBackground: boolean;
  /** e.g. "[2, 3)" */
  label: string;
}

export interface ColourScale {
  metric: 'loss' | 'excess';
  /** Ascending bounds; level k covers [bounds[k-1], bounds[k]). */
  bounds: number[];
  levels: ColourLevel[];
}

/** RGB of an xterm-256 palette index (6x6x6 cube 16-231, grey ramp 232-255). */
export function xterm256Hex(n: number): string {
  const hex = (v: number) => v.toString(16).padStart(2, '0');
  if (n >= 232 && n <= 255) { const g = 8 + 10 * (n - 232); return `#${hex(g)}${hex(g)}${hex(g)}`; }
  if (n < 16 || n > 255) throw new Error(`xterm-256 index ${n}: only the cube and grey ramp are used`);
  const steps = [0, 95, 135, 175, 215, 255];
  const c = n - 16;
  return `#${hex(steps[Math.floor(c / 36)])}${hex(steps[Math.floor(c / 6) % 6])}${hex(steps[c % 6])}`;
}

function scale(metric: ColourScale['metric'], bounds: number[], palette: number[], dark: number[]): ColourScale {
  const fmt = (v: number) => String(v);
  const levels = palette.map((ansi256, k) => ({
    ansi256,
    hex: xterm256Hex(ansi256),
    darkBackground: dark.includes(ansi256),
    label: k === 0 ? `< ${fmt(bounds[0])}` : k === bounds.length ? `>= ${fmt(bounds[k - 1])}` : `[${fmt(bounds[k - 1])}, ${fmt(bounds[k])})`,
  }));
  return { metric, bounds, levels };
}

/** Token loss -logprob in nats: pale yellow (predictable) to dark red (surprising). */
export const LOSS_SCALE = scale('loss', [0.5, 1, 2, 3, 4, 6, 8], [230, 229, 228, 222, 215, 209, 203, 160], [160]);

/** Excess loss (model - reference) in nats: blue below zero, grey around it, red above (what top-k keeps). */
export const EXCESS_SCALE = scale('excess', [-2, -1, -0.25, 0.25, 1, 2], [25, 74, 153, 255, 217, 203, 160], [25, 160]);

export function levelOf(s: ColourScale, v: number): number {
  let k = 0;
  while (k < s.bounds.length && v >= s.bounds[k]) k++;
  return k;
}

/** Colour of tokens with no score (the first token of a window). */
export const UNSCORED = { ansi256: 244, hex: xterm256Hex(244) } as const;
