// Reassembly: the scores of a document's windows come back in batches, in any order; a document is whole when
// its last window is scored. Each window's values go to the document tokens it scores ([scoreFrom, end)).
import type { Flow, ScoredBatchFlow, ScoredDocument, WindowedDocument } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';

interface Pending {
  unit: Extract<Flow<WindowedDocument>, { kind: 'doc' }>['unit'];
  doc: ScoredDocument;
  windows: number;
}

/**
 * The assemble stage: documents out as soon as they are whole (a document with no window at once), in
 * completion order; rejects and unit ends pass on. Positions no window scores stay NaN (written as null).
 * Counter `scored_tokens`: tokens that got a score.
 */
export function assembleStage(opts: { models: readonly string[]; entropy: boolean }): Stage<ScoredBatchFlow, Flow<ScoredDocument>> {
  return stage('assemble', async function* (input, ctx) {
    const docs = new Map<number, Pending>();
    const c = ctx.stats.counters;
    c.scored_tokens = 0;
    for await (const it of input) {
      if (it.kind === 'doc') {
        const { windows, ...doc } = it.doc;
        const scores: ScoredDocument['scores'] = new Map();
        for (const name of opts.models) {
          scores.set(name, { logprob: new Float32Array(doc.tokenIds.length).fill(NaN), entropy: opts.entropy ? new Float32Array(doc.tokenIds.length).fill(NaN) : undefined });
        }
        const scored: ScoredDocument = { ...doc, scores };
        if (windows.length === 0) yield { kind: 'doc', unit: it.unit, doc: scored };
        else docs.set(doc.docSeq, { unit: it.unit, doc: scored, windows: windows.length });
        continue;
      }
      if (it.kind !== 'scored') { yield it; continue; }
      const { batch, scores } = it;
      const whole: Pending[] = [];
      batch.windows.forEach((w, r) => {
        const p = docs.get(w.docSeq)!;
        const rowBase = r * batch.width;
        const from = w.scoreFrom - w.start;
        const len = w.end - w.start;
        for (const [name, s] of scores) {
          const dst = p.doc.scores.get(name)!;
          dst.logprob.set(s.logprob.subarray(rowBase + from, rowBase + len), w.scoreFrom);
          if (dst.entropy && s.entropy) dst.entropy.set(s.entropy.subarray(rowBase + from, rowBase + len), w.scoreFrom);
        }
        c.scored_tokens += w.end - w.scoreFrom - (w.scoreFrom === w.start ? 1 : 0);
        if (--p.windows === 0) {
          docs.delete(w.docSeq);
          whole.push(p);
        }
      });
      ctx.crashPoint('batch-scored');
      for (const p of whole) yield { kind: 'doc', unit: p.unit, doc: p.doc };
    }
    if (docs.size > 0) throw new Error(`internal: ${docs.size} documents still wait for windows at the end of the input`);
  });
}
