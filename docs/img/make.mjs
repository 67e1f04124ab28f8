// Regenerates the images of docs/inspect.md from the fixtures (run from the repo root after `npm run build`;
// needs Debian's chromium):  node docs/img/make.mjs
//   report.png          `rho report`: the selection cut and loss by position in the window
//   report-distributions.png  excess-loss histogram with the cut, per-source CDFs on one scale
//   report-joint.png    reference vs base loss with the excess-loss diagonals
//   report-shares.png   selected share by source and per-document mean losses
//   report-ab.png       `rho report A B` (ref=llama vs ref=gpt2): differences and overlaid positions
//   report-samples.png  sample token heatmaps of the same report
//   show.ansi.txt       `rho show --color always` output, ANSI escapes included
//   show.png            that output drawn as a terminal would (xterm-256 colours)
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const here = 'docs/img';
const work = mkdtempSync(join(tmpdir(), 'rho-docs-'));
const rho = (...args) => execFileSync(process.execPath, ['bin/rho', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

rho('score', '--model', 'ref=fixtures/models/llama/model.onnx', '--model', 'base=fixtures/models/gpt2/model.onnx',
  '--tokenizer', 'fixtures/tokenizer/tokenizer.json', '--input', 'fixtures/shards/clean.jsonl', 'fixtures/shards/noisy.jsonl.gz',
  'fixtures/shards/mixed.jsonl.zst', '--output', join(work, 'out'), '--id-field', 'id', '--context', '64', '--stride', '32', '--no-progress');
rho('select', join(work, 'out'), '--output', join(work, 'sel'), '--ratio', '0.6', '--by', 'excess', '--scope', 'document', '--no-progress');
const html = join(work, 'report.html');
rho('report', join(work, 'sel'), '--out', html, '--samples', '3', '--seed', '4', '--max-tokens', '160', '--ratio', '0.6', '0.7',
  '--title', 'rho report: fixture shards, ref=llama base=gpt2, C=64 S=32, select 60% per document', '--no-progress');

rho('score', '--model', 'ref=fixtures/models/gpt2/model.onnx', '--tokenizer', 'fixtures/tokenizer/tokenizer.json', '--input',
  'fixtures/shards/clean.jsonl', 'fixtures/shards/noisy.jsonl.gz', 'fixtures/shards/mixed.jsonl.zst', '--output', join(work, 'gpt2'), '--id-field', 'id',
  '--context', '64', '--stride', '32', '--no-progress');
const ab = join(work, 'ab.html');
rho('report', join(work, 'out'), join(work, 'gpt2'), '--out', ab, '--title', 'rho report A B: A = ref llama (+ base gpt2), B = ref gpt2; C=64 S=32', '--no-progress');

const ansi = rho('show', join(work, 'sel'), '--id', 'clean-005', '--metric', 'excess', '--color', 'always');
writeFileSync(join(here, 'show.ansi.txt'), ansi);

/** xterm-256 index -> #rrggbb (cube and grey ramp, as inspect/colour-scale.ts). */
const xterm = (n) => {
  const h = (v) => v.toString(16).padStart(2, '0');
  if (n >= 232) { const g = 8 + 10 * (n - 232); return `#${h(g)}${h(g)}${h(g)}`; }
  const s = [0, 95, 135, 175, 215, 255];
  const c = n - 16;
  return `#${h(s[Math.floor(c / 36)])}${h(s[Math.floor(c / 6) % 6])}${h(s[c % 6])}`;
};
const escHtml = (s) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);
/** The SGR codes rho show uses (48;5;N, 38;5;N, 30, 97, 4, 0) as styled spans. */
function ansiToHtml(s) {
  let out = '';
  let open = false;
  let last = 0;
  for (const m of s.matchAll(/\x1b\[([0-9;]*)m/g)) {
    out += escHtml(s.slice(last, m.index));
    last = m.index + m[0].length;
    if (open) { out += '</span>'; open = false; }
    const codes = m[1].split(';').map(Number);
    if (m[1] === '0' || m[1] === '') continue;
    const css = [];
    for (let i = 0; i < codes.length; i++) {
      if (codes[i] === 48 && codes[i + 1] === 5) { css.push(`background:${xterm(codes[i + 2])}`); i += 2; }
      else if (codes[i] === 38 && codes[i + 1] === 5) { css.push(`color:${xterm(codes[i + 2])}`); i += 2; }
      else if (codes[i] === 30) css.push('color:#000');
      else if (codes[i] === 97) css.push('color:#fff');
      else if (codes[i] === 4) css.push('text-decoration:underline');
    }
    out += `<span style="${css.join(';')}">`;
    open = true;
  }
  return out + escHtml(s.slice(last)) + (open ? '</span>' : '');
}
const term = join(work, 'term.html');
writeFileSync(term, `<!doctype html><meta charset="utf-8"><body style="margin:0;background:#1e1e1e"><pre style="margin:0;padding:12px 14px;width:880px;white-space:pre-wrap;word-break:break-all;font:14px/1.35 'DejaVu Sans Mono',monospace;color:#ddd">$ rho show sel/ --id clean-005 --metric excess\n${ansiToHtml(ansi)}</pre></body>`);

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
const page = await browser.newPage({ viewport: { width: 1040, height: 900 } });
await page.goto(pathToFileURL(html).href);
/** Screenshot of some sections of the page (the others hidden), at most 900 px high. */
async function sections(p, file, ids, keep = null) {
  await p.evaluate(([ids, keep]) => {
    for (const s of document.querySelectorAll('section')) s.style.display = ids.includes(s.id) ? '' : 'none';
    if (keep) for (const el of document.querySelectorAll(keep.hide)) el.style.display = 'none';
  }, [ids, keep]);
  const body = await p.locator('body').boundingBox();
  await p.screenshot({ path: join(here, file), clip: { x: 0, y: 0, width: 1040, height: Math.min(body.height + 30, 900) } });
}
await sections(page, 'report.png', ['cut', 'positions']);
await sections(page, 'report-distributions.png', ['distributions'], { hide: '#distributions h3:nth-of-type(1), #distributions h3:nth-of-type(1) + .charts, #distributions h3:nth-of-type(2), #distributions h3:nth-of-type(2) + .charts' });
await page.goto(pathToFileURL(html).href);
await sections(page, 'report-joint.png', ['joint']);
await sections(page, 'report-shares.png', ['shares', 'documents']);
await sections(page, 'report-samples.png', ['samples']);
const abPage = await browser.newPage({ viewport: { width: 1040, height: 900 } });
await abPage.goto(pathToFileURL(ab).href);
await sections(abPage, 'report-ab.png', ['differences', 'positions']);
const tp = await browser.newPage({ viewport: { width: 910, height: 400 } });
await tp.goto(pathToFileURL(term).href);
await tp.locator('pre').screenshot({ path: join(here, 'show.png') });
await browser.close();
for (const f of ['report.png', 'report-distributions.png', 'report-joint.png', 'report-shares.png', 'report-ab.png', 'report-samples.png', 'show.png', 'show.ansi.txt']) console.log(`${join(here, f)}: ${readFileSync(join(here, f)).length} bytes`);
