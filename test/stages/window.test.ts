import test from 'ava';
import { planWindows, validateWindowSpec } from '../../stages/window.js';
import { planBatches, buildBatch } from '../../stages/batch.js';
import { isUnscoredPosition } from '../../schemas/contract.js';

// Brute-force reading of the contract's window rule: windows [kS, min(kS+C, n)), token i scored in the
// first window that contains it, null when it is that window's first token.
function bruteForce(n: number, C: number, S: number): { window: number; context: number }[] {
  const out: { window: number; context: number }[] = [];
  for (let i = 0; i < n; i++) {
    let k = 0;
    while (!(k * S <= i && i < Math.min(k * S + C, n))) k++;
    out.push({ window: k, context: i - k * S });
  }
  return out;
}

test('windows score every token exactly once, in the first window that contains it', (t) => {
  for (const [C, S] of [[4, 4], [4, 2], [4, 1], [8, 3], [64, 32], [5, 5]]) {
    for (let n = 0; n <= 40; n++) {
      const ws = planWindows(7, n, { contextTokens: C, strideTokens: S });
      const scoredBy = new Array<number>(n).fill(-1);
      for (const w of ws) {
        t.is(w.docSeq, 7);
        t.true(w.end - w.start <= C);
        t.is(w.start % S, 0);
        for (let i = w.scoreFrom; i < w.end; i++) {
          t.is(scoredBy[i], -1, `token ${i} scored twice (n=${n} C=${C} S=${S})`);
          scoredBy[i] = w.start;
        }
      }
      const truth = bruteForce(n, C, S);
      for (let i = 0; i < n; i++) {
        const unscored = truth[i].context === 0;
        t.is(isUnscoredPosition(i, C, S), unscored, `null rule at i=${i} n=${n} C=${C} S=${S}`);
        if (!unscored) {
          t.is(scoredBy[i], truth[i].window * S, `token ${i} in wrong window (n=${n} C=${C} S=${S})`);
          // Contract: every token after the first has at least C - S tokens of context.
          t.true(i - scoredBy[i] >= Math.min(i, C - S));
        }
      }
    }
  }
});

test('window spec validation rejects strides that would skip tokens', (t) => {
  t.throws(() => validateWindowSpec({ contextTokens: 8, strideTokens: 9 }), { message: /stride/ });
  t.throws(() => validateWindowSpec({ contextTokens: 8, strideTokens: 0 }), { message: /stride/ });
  t.throws(() => validateWindowSpec({ contextTokens: 1, strideTokens: 1 }), { message: /context/ });
  t.notThrows(() => validateWindowSpec({ contextTokens: 8, strideTokens: 8 }));
});

test('batches respect the token budget, bucket by length and pad only to the batch maximum', (t) => {
  const lengths = [3, 17, 16, 2, 9, 8, 8, 17, 1 + 30, 5];
  const docs = lengths.map((n, i) => Int32Array.from({ length: n }, (_, j) => i * 100 + j));
  const pool = lengths.map((n, i) => ({ docSeq: i, start: 0, end: n, scoreFrom: 0 }));
  const plans = planBatches(pool, 40);
  const seen = plans.flatMap((p) => p.windows.map((w) => w.docSeq)).sort((a, b) => a - b);
  t.deepEqual(seen, lengths.map((_, i) => i), 'every window in exactly one batch');
  for (const p of plans) {
    t.true(p.windows.length === 1 || p.windows.length * p.width <= 40);
    t.is(p.width, Math.max(...p.windows.map((w) => w.end - w.start)));
  }
  const b = buildBatch(plans[1], (s) => docs[s]);
  b.windows.forEach((w, r) => {
    t.deepEqual([...b.tokens.subarray(r * b.width, r * b.width + b.lengths[r])], [...docs[w.docSeq]]);
    t.true(b.tokens.subarray(r * b.width + b.lengths[r], (r + 1) * b.width).every((x) => x === 0));
  });
  // Sorted by length: the padding of this pool stays small.
  let real = 0;
  let computed = 0;
  for (const p of plans) { computed += p.windows.length * p.width; for (const w of p.windows) real += w.end - w.start; }
  t.true(1 - real / computed < 0.2, `padding ${1 - real / computed}`);
});
