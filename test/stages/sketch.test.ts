import test from 'ava';
import { QuantileSketch } from '../../stages/sketch.js';

// Deterministic PRNG (mulberry32) so a failure reproduces.
function rng(seed: number) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const exactQuantile = (sorted: number[], q: number) => sorted[Math.floor(q * (sorted.length - 1))];

test('quantiles stay within the stated relative error, for losses and signed excess losses', (t) => {
  const r = rng(7);
  for (const [name, gen] of [
    ['loss (exponential)', () => -Math.log(1 - r()) * 3],
    ['excess (signed, heavy tails)', () => (r() - 0.4) * Math.exp(4 * r())],
  ] as const) {
    const alpha = 0.01;
    const values = Array.from({ length: 50_000 }, gen);
    // Two halves sketched apart and merged: a sharded run.
    const a = new QuantileSketch(alpha);
    const b = new QuantileSketch(alpha);
    values.forEach((v, i) => (i % 2 ? a : b).add(v));
    const s = a.merge(b);
    const sorted = [...values].sort((x, y) => x - y);
    t.is(s.count, values.length);
    for (const q of [0.01, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99]) {
      const exact = exactQuantile(sorted, q);
      const got = s.quantile(q);
      t.true(Math.abs(got - exact) <= alpha * Math.abs(exact) + 1e-9, `${name} q=${q}: ${got} vs ${exact}`);
    }
    t.is(s.quantile(0), sorted[0]);
    t.is(s.quantile(1), sorted.at(-1)!);
  }
});

test('a sketch survives JSON round trips and refuses merging different accuracies', (t) => {
  const s = new QuantileSketch(0.02);
  for (let i = 1; i <= 1000; i++) s.add(i / 10);
  const back = QuantileSketch.fromJSON(JSON.parse(JSON.stringify(s.toJSON())));
  t.is(back.quantile(0.3), s.quantile(0.3));
  t.is(back.mean(), s.mean());
  t.throws(() => s.merge(new QuantileSketch(0.01)), { message: /different accuracy/ });
});
