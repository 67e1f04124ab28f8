// Window planning: which slices of a document are fed to the model, and which tokens each slice scores.
// Pure planning, no model: kept apart from doing (STYLE.md, hyparquet).
import type { Flow, TokenizedDocument, Window, WindowSpec, WindowedDocument } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';

export function validateWindowSpec(spec: WindowSpec): void {
  const { contextTokens: C, strideTokens: S } = spec;
  if (!Number.isInteger(C) || C < 2) throw new Error(`--context must be an integer >= 2 (got ${C})`);
  if (!Number.isInteger(S) || S < 1 || S > C) {
    throw new Error(`--stride must be an integer in [1, --context] (got stride ${S}, context ${C}); a stride above the context would leave tokens unscored`);
  }
}

/**
 * Windows [kS, min(kS+C, n)) for k = 0, 1, ... up to the first that reaches n. Window k scores the tokens
 * no earlier window contains: [max(kS, (k-1)S + C), end), so every token is scored exactly once.
 * A document of 0 or 1 tokens has nothing to score and yields no window.
 */
export function planWindows(docSeq: number, nTokens: number, spec: WindowSpec): Window[] {
  const { contextTokens: C, strideTokens: S } = spec;
  const windows: Window[] = [];
  if (nTokens <= 1) return windows;
  for (let k = 0; ; k++) {
    const start = k * S;
    const end = Math.min(start + C, nTokens);
    const scoreFrom = k === 0 ? 0 : (k - 1) * S + C;
    // A one-token window that starts a stride (S == C) has no context for its only token: nothing to run.
    if (!(scoreFrom === start && end - start === 1)) windows.push({ docSeq, start, end, scoreFrom });
    if (end >= nTokens) break;
  }
  return windows;
}

/** The window stage: each document gets the windows that score it (planWindows). */
export function windowStage(spec: WindowSpec): Stage<Flow<TokenizedDocument>, Flow<WindowedDocument>> {
  validateWindowSpec(spec);
  return stage('window', async function* (input) {
    for await (const it of input) {
      if (it.kind !== 'doc') { yield it; continue; }
      yield { kind: 'doc', unit: it.unit, doc: { ...it.doc, windows: planWindows(it.doc.docSeq, it.doc.tokenIds.length, spec) } };
    }
  });
}
