import test from 'ava';
import { estimate, maxContextFor, MemoryBudgetError, parseMemoryBudget, planMemory, type ModelMemory } from '../../model/memory.js';

const GiB = 1024 ** 3;
const qwen05: ModelMemory = { name: 'ref', vocab: 151936, hidden: 896, layers: 24, heads: 14, weightBytes: 2 * GiB, head: { kind: 'chunked', sliceElements: 16 * 1024 * 1024 } };

test('parseMemoryBudget: units and fractions', (t) => {
  t.is(parseMemoryBudget('8GiB', 0), 8 * GiB);
  t.is(parseMemoryBudget('8G', 0), 8 * GiB);
  t.is(parseMemoryBudget('512MiB', 0), 512 * 1024 ** 2);
  t.is(parseMemoryBudget('2GB', 0), 2e9);
  t.is(parseMemoryBudget('50%', 16 * GiB), 8 * GiB);
  t.is(parseMemoryBudget('0.25', 16 * GiB), 4 * GiB);
  t.throws(() => parseMemoryBudget('lots', 1), { instanceOf: MemoryBudgetError, message: /--memory-budget "lots"/ });
});

test('CPU: the measured default batch when it fits, stated; never less than one window', (t) => {
  const p = planMemory({ models: [qwen05], context: 512, device: 'cpu', ramBytes: 32 * GiB });
  t.is(p.batchTokens, 1024);
  t.regex(p.batchSource, /CPU default 1024/);
  t.regex(p.budgetSource, /50% of RAM \(32\.00 GiB\)/);
  const q = planMemory({ models: [qwen05], context: 2048, device: 'cpu', ramBytes: 32 * GiB });
  t.is(q.batchTokens, 2048, 'a window longer than the default batch gets a batch of its own');
});

test('GPU: as many whole windows as the budget holds', (t) => {
  const p = planMemory({ models: [qwen05], context: 2048, device: 'cuda', gpuBytes: 80 * GiB, ramBytes: 32 * GiB });
  t.is(p.batchTokens % 2048, 0);
  t.true(p.batchTokens >= 16 * 2048, `${p.batchTokens}`);
  t.true(p.estimateBytes <= p.budgetBytes);
  t.regex(p.budgetSource, /80% of the GPU's 80\.00 GiB/);
  const small = planMemory({ models: [qwen05], context: 2048, device: 'cuda', gpuBytes: 8 * GiB, ramBytes: 32 * GiB });
  t.true(small.batchTokens < p.batchTokens);
});

test('a window that cannot fit is refused with the numbers; the full head at V=152k is what breaks it', (t) => {
  const full: ModelMemory = { ...qwen05, head: { kind: 'full' } };
  const e = t.throws(() => planMemory({ models: [full], context: 131072, device: 'cpu', ramBytes: 64 * GiB }), { instanceOf: MemoryBudgetError });
  t.regex(e!.message, /one window of C = 131072 tokens needs about [0-9.]+ GiB/);
  t.regex(e!.message, /full head's \[C, V=151936\] logits/);
  t.regex(e!.message, /memory budget is 32\.00 GiB \(50% of RAM/);
  t.regex(e!.message, /lower --context/);
  // The chunked head fits where the full one does not (at a moderate context).
  t.notThrows(() => planMemory({ models: [qwen05], context: 4096, device: 'cpu', ramBytes: 16 * GiB }));
  t.throws(() => planMemory({ models: [full], context: 4096, device: 'cpu', ramBytes: 16 * GiB }), { instanceOf: MemoryBudgetError });
  // An explicit --batch-tokens over the budget is refused too, with a batch size that fits.
  const e2 = t.throws(() => planMemory({ models: [qwen05], context: 2048, device: 'cpu', budget: '8GiB', batchTokens: 1 << 20 }), { instanceOf: MemoryBudgetError });
  t.regex(e2!.message, /--batch-tokens 1048576 needs about .* use --batch-tokens \d+ or less/);
});

test('maxContextFor: the longest single window the budget holds', (t) => {
  const c = maxContextFor({ models: [qwen05], device: 'cpu', ramBytes: 16 * GiB }, 8 * GiB);
  const e = estimate(qwen05, c);
  t.true(e.fixed + e.perToken * c <= 8 * GiB);
  const e1 = estimate(qwen05, c + 1);
  t.true(e1.fixed + e1.perToken * (c + 1) > 8 * GiB);
});
