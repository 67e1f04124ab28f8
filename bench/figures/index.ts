// Every figure `npm run bench` reports, in table order. To add one (vocabulary sizes, bytes per token, a
// cross-tokenizer comparison, ...): write bench/figures/<name>.ts exporting Figure objects (bench/figures/types.ts),
// reusing contenders by key or adding new ones (a new measurement mode goes in bench/measure.ts), and append it here.
// (bench/figures/bytes.ts and vocab.ts are standalone scripts with their own docs sections, not rows of this table.)
import { coreFigures } from './core.js';
import type { Figure } from './types.js';

export const FIGURES: Figure[] = [...coreFigures];
