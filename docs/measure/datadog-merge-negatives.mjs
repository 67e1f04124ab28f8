// @datadog/sketches-js 2.1.1: merging sketches drops the negative store (DDSketch.merge merges only
// `store`). Run in a scratch dir with the package installed (see sketch-vs-datadog.mjs).
import { DDSketch } from '@datadog/sketches-js';
let s = 12345; const rnd = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
const N = 4_000_000;
rnd(); // keep stream same as sk.mjs? not needed
const v = Float64Array.from({ length: N }, () => Math.fround(0.1 + 0.9 * gauss()));
const k = new DDSketch({ relativeAccuracy: 0.005 });
const parts = [0,1,2,3].map(() => new DDSketch({ relativeAccuracy: 0.005 }));
for (let i = 0; i < N; i++) { k.accept(v[i]); parts[i & 3].accept(v[i]); }
const m = parts[0]; for (const p of parts.slice(1)) m.merge(p);
console.log('count', k.count, m.count, 'neg', k.negativeStore.count, m.negativeStore.count, 'zero', k.zeroCount, m.zeroCount, 'min', k.min, m.min);
for (const q of [0.001,0.01,0.05,0.1,0.25,0.4,0.5,0.6,0.75,0.9,0.95,0.99,0.999]) { const a = k.getValueAtQuantile(q), b = m.getValueAtQuantile(q); if (a !== b) console.log(q, a, b); }
// also a case with a tiny sketch: merge of 2 where one side is empty of negatives
const x = new DDSketch({ relativeAccuracy: 0.005 }); const y = new DDSketch({ relativeAccuracy: 0.005 });
[-3,-2,-1].forEach((t) => x.accept(t)); [1,2,3].forEach((t) => y.accept(t));
const z = new DDSketch({ relativeAccuracy: 0.005 }); [-3,-2,-1,1,2,3].forEach((t) => z.accept(t));
x.merge(y);
console.log([0,0.2,0.4,0.6,0.8,1].map((q) => [z.getValueAtQuantile(q).toFixed(3), x.getValueAtQuantile(q).toFixed(3)].join('/')).join('  '));
