// Token heatmaps: per-token scores laid over the document text, for the terminal (`rho show`) and shared with
// the HTML report. A segment covering several tokens (a character split by a byte-level BPE) takes the
// highest score among them: the most surprising part decides its colour.
import { LOSS_SCALE, EXCESS_SCALE, UNSCORED, levelOf, type ColourScale } from './colour-scale.js';
import type { ScoredDoc } from './documents.js';
import type { DocText, Segment } from './segments.js';
import { ConfigError } from '../schemas/errors.js';
import { SELECT_META } from '../schemas/contract.js';
import { keptSide, metricOf, type SelectBy } from '../schemas/selection-cut.js';

/**
 * What a selected dir's select_mask means, from its `rho.select.*` metadata, in the shared cut's words:
 * `selection: rho select --by excess --ratio 0.6 --scope document: keeps excess loss at or above the threshold`.
 */
export function selectionLine(meta: Map<string, string>): string | null {
  const by = meta.get(SELECT_META.by) as SelectBy | undefined;
  if (!by) return null;
  const metric = metricOf(by);
  const scope = meta.get(SELECT_META.scope) ?? '?';
  const where = scope === 'global' ? `the threshold ${meta.get(SELECT_META.threshold)} (on select's score)` : `each ${scope === 'batch' ? 'batch\'s' : 'document\'s'} threshold`;
  const what = keptSide(metric) === 'at_or_below' ? 'reference loss at or below' : 'excess loss at or above';
  return `selection: rho select --by ${by} --ratio ${meta.get(SELECT_META.ratio)} --scope ${scope}: keeps ${what} ${where}`;
}

export interface HeatMetric {
  kind: 'loss' | 'excess';
  model: string;
  /** For excess: the model it is measured against. */
  reference?: string;
}

export function metricLabel(m: HeatMetric): string {
  return m.kind === 'loss' ? `${m.model} loss (nats, -${m.model}_logprob)` : `excess loss (nats, ${m.model}_loss - ${m.reference}_loss)`;
}

export function scaleOf(m: HeatMetric): ColourScale {
  return m.kind === 'loss' ? LOSS_SCALE : EXCESS_SCALE;
}

/** Choose what to colour by: `--metric loss|excess`, `--model NAME`. */
export function pickMetric(models: string[], reference: string, kind: 'loss' | 'excess', model?: string): HeatMetric {
  if (model !== undefined && !models.includes(model)) throw new ConfigError(`--model ${model}: no such model in the score files (models: ${models.join(', ')})`);
  if (kind === 'loss') return { kind, model: model ?? reference };
  const others = models.filter((m) => m !== reference);
  if (others.length === 0) throw new ConfigError(`--metric excess needs two models; the score files have only ${models.join(', ')}`);
  const m = model ?? others[0];
  if (m === reference) throw new ConfigError(`--metric excess: --model ${m} is the reference itself; name another model (${others.join(', ')})`);
  return { kind, model: m, reference };
}

/** Per-token score of the metric; null where the token has no score. */
export function tokenScores(doc: ScoredDoc, m: HeatMetric): (number | null)[] {
  const lp = doc.logprobs[m.model];
  if (m.kind === 'loss') return lp.map((v) => (v === null ? null : -v));
  const ref = doc.logprobs[m.reference!];
  return lp.map((v, i) => (v === null || ref[i] === null ? null : ref[i]! - v));
}

export function segmentScore(seg: Segment, scores: (number | null)[]): number | null {
  let best: number | null = null;
  for (const t of seg.tokens) {
    const v = scores[t];
    if (v !== null && v !== undefined && (best === null || v > best)) best = v;
  }
  return best;
}

export interface HeatmapView {
  /** The selection line of a selected dir (selectionLine), shown in the header. */
  selection?: string | null;
  doc: ScoredDoc;
  text: DocText;
  metric: HeatMetric;
  scores: (number | null)[];
  tokenText: (i: number) => string;
}

const ESC = '\x1b[';
const RESET = `${ESC}0m`;
/** The rule lines around the document text in `rho show` output (tests find the text between them). */
export const RULE = '─'.repeat(40);

/** Text colours of every second token in a run of one colour, so neighbours stay apart (xterm-256). */
export const ALT_TEXT = { onLight: 25, onDark: 229, unscored: 238 } as const;

/** Between neighbouring tokens with --boundaries (a thin vertical bar, U+2502). */
export const BOUNDARY = '\u2502';

function sgr(level: { ansi256: number; darkBackground: boolean } | null, selected: boolean, alt = false): string {
  const codes: string[] = [];
  if (level) codes.push(`48;5;${level.ansi256}`, alt ? `38;5;${level.darkBackground ? ALT_TEXT.onDark : ALT_TEXT.onLight}` : level.darkBackground ? '97' : '30');
  else codes.push(`38;5;${alt ? ALT_TEXT.unscored : UNSCORED.ansi256}`);
  if (selected) codes.push('4');
  return `${ESC}${codes.join(';')}m`;
}

function header(v: HeatmapView): string[] {
  const { doc, text } = v;
  const scored = v.scores.filter((s) => s !== null) as number[];
  const mean = scored.length ? scored.reduce((a, b) => a + b, 0) / scored.length : null;
  const lines = [
    `id ${doc.id}  (source ${doc.source}, row ${doc.row}; dir position ${doc.index})`,
    `${doc.tokenIds.length} tokens, ${scored.length} scored; ${metricLabel(v.metric)}: mean ${mean === null ? '-' : mean.toFixed(3)}` +
      (doc.selectMask ? `; ${doc.selectMask.filter(Boolean).length} selected` : ''),
    text.origin === 'source' ? 'text: the source row, token boundaries from the tokenizer\'s offsets' : `text: ${text.note}`,
  ];
  if (v.selection && doc.selectMask) lines.push(v.selection);
  if (text.specials.length) {
    lines.push('special tokens: ' + text.specials.map((i) => `${v.tokenText(i)} at ${i}${v.scores[i] === null ? '' : ` (${v.scores[i]!.toFixed(2)})`}`).join(', '));
  }
  return lines;
}

export function legendAnsi(scale: ColourScale, color: boolean, hasSelect: boolean): string {
  const parts = scale.levels.map((l) => (color ? `${sgr(l, false)} ${l.label} ${RESET}` : `${levelOfLabel(scale, l.label)}=${l.label}`));
  const extra = color
    ? `${sgr(null, false)}grey${RESET} = no score${hasSelect ? `; ${ESC}4munderlined${RESET} = selected` : ''}; in a run of one colour every second token has ${sgr({ ansi256: 255, darkBackground: false }, false, true)}blue text${RESET}`
    : '';
  return `legend (${scale.metric === 'loss' ? 'loss' : 'excess loss'}, nats): ${parts.join(color ? '' : '  ')}${extra ? `\n${extra}` : ''}`;
}

function levelOfLabel(scale: ColourScale, label: string): number {
  return scale.levels.findIndex((l) => l.label === label);
}

/**
 * Terminal rendering. With colour: the text once, each segment on its level's background (underlined when
 * selected), between two RULE lines, then the legend. Without colour (not a TTY, NO_COLOR, --color never):
 * the plain text between the rules, then one line per segment: token positions, score, scale level,
 * selection and the segment's text as a JSON string.
 */
export function renderShow(v: HeatmapView, color: boolean, boundaries = false): string {
  const scale = scaleOf(v.metric);
  const out: string[] = [...header(v), RULE];
  const { text, segments } = v.text;
  if (color) {
    let body = '';
    let prev = -2; // level of the previous token segment (-1 unscored, -2 none or text between tokens)
    let alt = false;
    for (const seg of segments) {
      const s = text.slice(seg.start, seg.end);
      if (seg.tokens.length === 0) { body += s; prev = -2; continue; }
      const score = segmentScore(seg, v.scores);
      const selected = Boolean(v.doc.selectMask && seg.tokens.some((t) => v.doc.selectMask![t]));
      const level = score === null ? -1 : levelOf(scale, score);
      // A run of one colour alternates its text colour, so each token's extent stays visible.
      alt = level === prev ? !alt : false;
      if (boundaries && prev !== -2) body += BOUNDARY;
      prev = level;
      const on = sgr(score === null ? null : scale.levels[level], selected, alt);
      // Close the colour before each line break so backgrounds do not bleed to the right margin.
      body += s.split('\n').map((line) => (line ? `${on}${line}${RESET}` : '')).join('\n');
    }
    out.push(body, RULE, legendAnsi(scale, true, Boolean(v.doc.selectMask)));
  } else {
    if (boundaries) {
      // The text with a thin bar between neighbouring tokens (text no token covers is printed as it is).
      let marked = '';
      let prevTok = false;
      for (const seg of segments) {
        if (seg.tokens.length && prevTok) marked += BOUNDARY;
        marked += text.slice(seg.start, seg.end);
        prevTok = seg.tokens.length > 0;
      }
      out.push(marked, RULE);
    } else out.push(text, RULE);
    out.push(`tokens (position  score  level${v.doc.selectMask ? '  selected' : ''}  text):`);
    for (const seg of segments) {
      if (seg.tokens.length === 0) continue;
      const score = segmentScore(seg, v.scores);
      const pos = seg.tokens.length === 1 ? String(seg.tokens[0]) : `${seg.tokens[0]}-${seg.tokens.at(-1)}`;
      const sel = v.doc.selectMask ? (seg.tokens.some((t) => v.doc.selectMask![t]) ? '  sel' : '  -  ') : '';
      out.push(`  ${pos.padStart(9)}  ${score === null ? '     -' : score.toFixed(3).padStart(6)}  ${score === null ? '-' : levelOf(scale, score)}${sel}  ${JSON.stringify(text.slice(seg.start, seg.end))}`);
    }
    out.push(legendAnsi(scale, false, Boolean(v.doc.selectMask)));
  }
  return out.join('\n');
}

/** Machine form of one document's heatmap (`rho show --json`). */
export function heatmapJson(v: HeatmapView) {
  return {
    id: v.doc.id,
    source: v.doc.source,
    row: v.doc.row,
    index: v.doc.index,
    metric: v.metric,
    text_origin: v.text.origin,
    note: v.text.note ?? null,
    text: v.text.text,
    specials: v.text.specials,
    segments: v.text.segments.map((s) => ({
      start: s.start,
      end: s.end,
      text: v.text.text.slice(s.start, s.end),
      tokens: s.tokens,
      score: s.tokens.length ? segmentScore(s, v.scores) : null,
      selected: v.doc.selectMask ? s.tokens.some((t) => v.doc.selectMask![t]) : null,
    })),
    token_ids: Array.from(v.doc.tokenIds),
    scores: v.scores,
  };
}
