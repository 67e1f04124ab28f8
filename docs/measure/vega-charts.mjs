// Measurement behind the README's "not used: vega + vega-lite" row: headless SVG rendering time and size of a
// 4-series CDF and a 48x48 density grid. Run in a scratch dir: npm i vega@6.2.0 vega-lite@6.4.1; node vega-charts.mjs
import * as vega from 'vega';
import * as vl from 'vega-lite';
const t0 = performance.now();
const rows = [];
for (let s = 0; s < 4; s++) for (let i = 0; i <= 160; i++) rows.push({ source: `source-${s}`, x: i * 0.07, y: 1 / (1 + Math.exp(-(i - 80 + s * 5) / 15)) });
const cells = [];
for (let x = 0; x < 48; x++) for (let y = 0; y < 48; y++) { const c = Math.round(500 * Math.exp(-((x - y) ** 2) / 20 - ((x + y - 48) ** 2) / 400)); if (c) cells.push({ x: x * 0.25, y: y * 0.25, n: c }); }
const specs = {
  cdf: { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 440, height: 180, data: { values: rows }, mark: 'line', encoding: { x: { field: 'x', type: 'quantitative' }, y: { field: 'y', type: 'quantitative', axis: { format: '%' } }, color: { field: 'source' } } },
  joint: { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 400, height: 400, data: { values: cells }, mark: 'rect', encoding: { x: { field: 'x', type: 'quantitative', bin: { binned: true, step: 0.25 } }, x2: { field: 'x2' }, y: { field: 'y', type: 'quantitative', bin: { binned: true, step: 0.25 } }, color: { field: 'n', type: 'quantitative', scale: { type: 'log' } } }, transform: [{ calculate: 'datum.x + 0.25', as: 'x2' }] },
};
const tImport = performance.now();
for (const [name, spec] of Object.entries(specs)) {
  const times = [];
  let svg = '';
  for (let k = 0; k < 5; k++) {
    const a = performance.now();
    const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
    svg = await view.toSVG();
    view.finalize();
    times.push(performance.now() - a);
  }
  console.log(`${name}: first ${times[0].toFixed(0)} ms, then ${(times.slice(1).reduce((p, q) => p + q, 0) / 4).toFixed(0)} ms per chart; SVG ${svg.length} B; external refs: ${/(href|src)="http/.test(svg)}`);
}
