// The benchmark's padding target (<= 5% of computed positions) rests on planBatches bounding each batch's padding.
import test from 'ava';
import { planBatches } from '../../stages/batch.js';
import type { Window } from '../../schemas/types.js';

/** Many short windows whose lengths fall fast, plus some full-context ones: the pool shape of a web corpus. */
function pool(): Window[] {
  let s = 12345;
  const rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const out: Window[] = [];
  for (let i = 0; i < 3000; i++) {
    const len = rand() < 0.02 ? 512 : 2 + Math.floor(rand() ** 3 * 300);
    out.push({ docSeq: i, start: 0, end: len, scoreFrom: 0 });
  }
  return out;
}

test('every batch stays within the token budget and pads at most 5% of its positions', (t) => {
  const p = pool();
  const plans = planBatches(p, 8192);
  const seen = plans.flatMap((b) => b.windows.map((w) => w.docSeq)).sort((a, b) => a - b);
  t.deepEqual(seen, p.map((w) => w.docSeq), 'every window in exactly one batch');
  let real = 0;
  let computed = 0;
  for (const b of plans) {
    const r = b.windows.reduce((a, w) => a + w.end - w.start, 0);
    const c = b.windows.length * b.width;
    t.true(b.windows.length === 1 || c <= 8192, `batch of ${b.windows.length} x ${b.width} over budget`);
    t.true(1 - r / c <= 0.05 + 1e-12, `batch ${b.windows.length} x ${b.width} pads ${(1 - r / c) * 100}%`);
    real += r;
    computed += c;
  }
  t.true(1 - real / computed <= 0.05);
  // Not one batch per window: the bound must not destroy batching.
  t.true(plans.length < p.length / 10, `${plans.length} batches for ${p.length} windows`);
});

test('a looser padding bound gives fewer, fuller batches', (t) => {
  const p = pool();
  t.true(planBatches(p, 8192, 0.5).length < planBatches(p, 8192, 0.05).length);
});
