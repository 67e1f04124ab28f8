// The same charts drawn by rho's hand-written SVG (after npm run build, from the repo root): node docs/measure/rho-charts.mjs SCORE_DIR
import { profileDir } from '../../dist/inspect/profile.js';
import { jointPlot, distributionSection, positionPlot } from '../../dist/inspect/report-plots.js';
import { computeStats } from '../../dist/inspect/stats.js';
const dir = process.argv[2];
let t = performance.now();
await computeStats(dir);
const stats = performance.now() - t;
t = performance.now();
const run = { ...(await profileDir(dir)), label: '' };
const prof = performance.now() - t;
const d = run.stats.metrics.find((m) => m.kind === 'excess') ?? run.stats.metrics[0];
for (const [name, f] of [['cdf', () => distributionSection([run], d)], ['joint', () => jointPlot(run)], ['positions', () => positionPlot([run])]]) {
  const a = performance.now(); let s = ''; for (let k = 0; k < 20; k++) s = f();
  console.log(`${name}: ${((performance.now() - a) / 20).toFixed(2)} ms per chart, ${s.length} B`);
}
console.log(`stats pass ${stats.toFixed(0)} ms, stats+profile pass ${prof.toFixed(0)} ms`);
