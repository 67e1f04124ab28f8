// Every figure `npm run bench` reports, in table order. To add one (vocabulary sizes, bytes per token, a
// cross-tokenizer comparison, ...): write bench/figures/<name>.ts exporting Figure objects (bench/figures/types.ts),
// reusing contenders by key or adding new ones (a new measurement mode goes in bench/measure.ts), and append it here.
// (bench/figures/bytes.ts is a standalone script with its own docs section; vocab.ts is one too, for the full
// vocabulary table, and also gives the three vocabulary target rows here.)
import { coreFigures } from './core.js';
import type { Figure } from './types.js';
import { vocabFigures } from './vocab.js';

export const FIGURES: Figure[] = [...coreFigures, ...vocabFigures];
