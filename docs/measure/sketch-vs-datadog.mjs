// Measurement behind the README's "not used: @datadog/sketches-js" row: accuracy, add/quantile speed, merge
// of 4 ranks and serialization of rho's DDSketch (stages/sketch.ts) vs @datadog/sketches-js 2.1.1, 4M values.
// Run in a scratch dir: npm i @datadog/sketches-js@2.1.1 protobufjs@8.8.1; replace RHO_DIST with the absolute
// path of rho's dist/ (after npm run build); node sketch-vs-datadog.mjs
import { DDSketch } from '@datadog/sketches-js';
import { QuantileSketch } from 'RHO_DIST/stages/sketch.js';
// Deterministic data: losses ~ lognormal-ish (positive), excess ~ normal (both signs, many near 0).
let s = 12345; const rnd = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
const N = 4_000_000;
const sets = {
  loss: Float64Array.from({ length: N }, () => Math.fround(Math.exp(1.7 + 0.45 * gauss()))),
  excess: Float64Array.from({ length: N }, () => Math.fround(0.1 + 0.9 * gauss())),
};
const Q = [0.001, 0.01, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95, 0.99, 0.999];
const alpha = 0.005;
for (const [name, v] of Object.entries(sets)) {
  const sorted = Float64Array.from(v).sort();
  const exact = (q) => sorted[Math.floor(q * (N - 1))];
  for (const [lib, make, add, quant] of [
    ['rho', () => new QuantileSketch(alpha), (k, x) => k.add(x), (k, q) => k.quantile(q)],
    ['datadog', () => new DDSketch({ relativeAccuracy: alpha }), (k, x) => k.accept(x), (k, q) => k.getValueAtQuantile(q)],
  ]) {
    const k = make();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) add(k, v[i]);
    const ms = performance.now() - t0;
    const t1 = performance.now();
    let maxRel = 0; let worst = '';
    for (const q of Q) { const e = exact(q); const r = Math.abs(quant(k, q) - e) / Math.abs(e); if (r > maxRel) { maxRel = r; worst = `q=${q} exact=${e.toFixed(5)} got=${quant(k, q).toFixed(5)}`; } }
    const qms = (performance.now() - t1) / Q.length;
    // 4 ranks, merged
    const parts = [0, 1, 2, 3].map(() => make());
    for (let i = 0; i < N; i++) add(parts[i & 3], v[i]);
    const m = parts[0]; for (const p of parts.slice(1)) m.merge(p);
    const sameAfterMerge = Q.every((q) => quant(m, q) === quant(k, q));
    let ser = 0; let roundTrip = '';
    if (lib === 'rho') { const j = JSON.stringify(k.toJSON()); ser = j.length; const b = QuantileSketch.fromJSON(JSON.parse(j)); roundTrip = Q.every((q) => b.quantile(q) === k.quantile(q)) ? 'identical' : 'differs'; }
    else { const p = k.toProto(); ser = p.length; const b = DDSketch.fromProto(p); roundTrip = Q.every((q) => b.getValueAtQuantile(q) === k.getValueAtQuantile(q)) ? 'identical' : `differs (q=0.001: ${b.getValueAtQuantile(0.001)} vs ${k.getValueAtQuantile(0.001)}; min ${b.min} vs ${k.min})`; }
    console.log(`${name.padEnd(6)} ${lib.padEnd(7)} add ${(N / ms / 1e3).toFixed(1)} M/s  quantile ${qms.toFixed(3)} ms  max rel err ${maxRel.toExponential(2)} (${worst})  merge of 4 == single: ${sameAfterMerge}  serialized ${ser} B, round trip ${roundTrip}`);
  }
}
