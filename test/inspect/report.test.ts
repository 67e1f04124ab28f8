// `rho report`: the HTML page is opened in headless Chromium (Debian's, driven by playwright-core): it
// renders with no console errors and no requests, has the histograms, threshold lines and heatmap tokens
// the data calls for, shows scores on hover, and tells selected from unselected tokens. A screenshot is kept
// as a CI artifact (RHO_TEST_ARTIFACTS, default <tmp>/rho-test-artifacts).
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { Tokenizer } from 'tokenizers';
import { runSelect } from '../../pipeline/jobs/select.js';
import { scoredDir, rho, duck, sourceTexts, utf16Index } from './_fixture.js';
import { tmp, TOKENIZER } from '../helpers.js';
import type { Stats } from '../../inspect/stats.js';

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Debian's chromium: found, or installed with apt-get when we are root (never a browser download). */
function findChromium(): { path: string | null; why: string } {
  const candidates = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
  const found = candidates.find((p) => existsSync(p));
  if (found) return { path: found, why: '' };
  if (process.getuid?.() !== 0) return { path: null, why: 'chromium is not installed and we are not root to apt-get install it' };
  console.error('report.test: installing Debian chromium (apt-get install -y chromium)...');
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const after = candidates.find((p) => existsSync(p));
  return after ? { path: after, why: '' } : { path: null, why: `apt-get install chromium failed (exit ${r.status})` };
}

const browser = findChromium();
const inCI = process.env.CI === 'true';
const maybe = browser.path || inCI ? test.serial : test.skip;
if (!browser.path) {
  console.error(`report.test: SKIPPING the browser tests: ${browser.why}${inCI ? ' (CI=true: they run and fail instead)' : ''}`);
}

const SAMPLES = 4;
let sel = '';
let html = '';
let stats: Stats;

test.before(async () => {
  const out = await scoredDir();
  sel = tmp('rho-inspect-report-sel-');
  await runSelect({ input: out, output: sel, ratio: 0.6, by: 'excess', scope: 'document', batchTokens: 1 << 20, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: true, progress: false });
  html = join(tmp('rho-inspect-report-'), 'report.html');
  const r = rho(['report', sel, '--out', html, '--samples', String(SAMPLES), '--seed', '3', '--ratio', '0.6', '0.7', '--no-progress']);
  if (r.status !== 0) throw new Error(`rho report failed (${r.status}): ${r.stderr}`);
  const s = rho(['stats', sel, '--json', '--ratio', '0.6', '0.7', '--no-progress']);
  stats = JSON.parse(s.stdout) as Stats;
});

test('the HTML file is self-contained: no script, no external reference, a CSP that forbids fetches', (t) => {
  const page = readFileSync(html, 'utf8');
  t.false(/<script/i.test(page));
  t.false(/(src|href)\s*=\s*["']?(https?:|\/\/)/i.test(page));
  t.regex(page, /Content-Security-Policy" content="default-src 'none'/);
});

maybe('renders in headless Chromium: no console errors or requests; histograms, thresholds, heatmaps, hover, selection', async (t) => {
  if (!browser.path) { t.fail(`CI=true but no chromium: ${browser.why}`); return; }
  const profile = mkdtempSync(join(tmpdir(), 'rho-chromium-profile-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: browser.path, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1100, height: 900 } });
  try {
    const page = ctx.pages()[0] ?? await ctx.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    const url = pathToFileURL(html).href;
    await page.goto(url, { waitUntil: 'load' });
    t.deepEqual(problems, []);
    t.deepEqual(requests, [url], 'the page loads nothing but itself');

    // Histograms: one per metric (ref_loss, base_loss, excess_loss) and group (all + each source).
    const sources = await duck(`SELECT DISTINCT source FROM read_parquet('${sel}/**/*.parquet')`);
    const groups = 1 + sources.length;
    t.is(await page.locator('svg.histogram').count(), 3 * groups);
    t.is(await page.locator('svg.histogram rect.bar').count(), 3 * groups * 32, '32 bins of 0.5 nats each');
    t.is(await page.locator('svg.histogram line.threshold').count(), 3 * groups * 2, 'one line per --ratio');
    const allRef = page.locator('svg.histogram[data-metric="ref_loss"][data-group="all"]');
    const barSum = (await allRef.locator('rect.bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-count'))))).reduce((a, b) => a + b, 0);
    const [inRange] = await duck(`SELECT count(*) AS n FROM (SELECT -unnest(ref_logprob)::DOUBLE AS l FROM read_parquet('${sel}/**/*.parquet')) WHERE l >= 0 AND l < 16`);
    t.is(barSum, Number(inRange.n));
    const bar0 = await allRef.locator('rect.bar').evaluateAll((els) => els.map((e) => Number(e.getAttribute('height'))));
    t.true(bar0.some((h) => h > 50), 'bars have visible heights');
    const thr = await page.locator('svg.histogram[data-metric="excess_loss"][data-group="all"] line.threshold[data-ratio="0.6"]').getAttribute('data-value');
    t.is(Number(thr), stats.groups[0].metrics.excess_loss.thresholds['0.6']!);
    t.is(await page.locator('table.stats').count(), 1 + 3, 'counts table + one quantile table per metric');

    // Heatmaps: one token span per distinct tokenizer offset span; specials + spans' tokens = all tokens.
    const docs = page.locator('article.doc');
    t.is(await docs.count(), SAMPLES);
    const texts = sourceTexts();
    const tok = Tokenizer.fromFile(TOKENIZER);
    let selectedSpans = 0;
    let unselectedSpans = 0;
    for (let d = 0; d < SAMPLES; d++) {
      const doc = docs.nth(d);
      const id = (await doc.getAttribute('data-id'))!;
      const text = texts.get(id)!;
      const enc = await tok.encode(text);
      const u = utf16Index(text);
      const spans = new Map<string, number[]>();
      enc.getOffsets().forEach(([s, e], i) => { if (e > s) spans.set(`${u[s]}:${u[e]}`, [...(spans.get(`${u[s]}:${u[e]}`) ?? []), i]); });
      const [row] = await duck(`SELECT n_tokens, select_mask, ref_logprob FROM read_parquet('${sel}/**/*.parquet') WHERE id = '${id}'`);
      const toks = doc.locator('.heat .tok');
      t.is(await toks.count(), spans.size, `${id}: token spans`);
      const listed = await toks.evaluateAll((els) => els.map((e) => e.getAttribute('data-tokens')!.split(',').length));
      t.is(listed.reduce((a, b) => a + b, 0) + await doc.locator('.heat .special').count(), Number(row.n_tokens), `${id}: every token accounted for`);
      t.is((await doc.locator('.heat').innerText()).replace(/^<\|bos\|>/, ''), text.replace(/\r\n/g, '\n'), `${id}: the text`);

      const mask = row.select_mask as boolean[];
      const wantSel = [...spans.values()].filter((is) => is.some((i) => mask[i])).length;
      t.is(await doc.locator('.heat .tok.sel').count(), wantSel, `${id}: selected spans`);
      t.is(await doc.locator('.heat .tok.unsel').count(), spans.size - wantSel);
      selectedSpans += wantSel;
      unselectedSpans += spans.size - wantSel;
    }
    t.true(selectedSpans > 0 && unselectedSpans > 0);
    const opacity = async (sel: string) => page.locator(sel).first().evaluate((e) => getComputedStyle(e).opacity);
    t.not(await opacity('article.doc .tok.sel'), await opacity('article.doc .tok.unsel'), 'selected and unselected look different');

    // Hover: the tooltip (CSS ::after of data-tip) shows the token's losses.
    const first = docs.nth(0);
    const firstId = (await first.getAttribute('data-id'))!;
    const [r0] = await duck(`SELECT ref_logprob FROM read_parquet('${sel}/**/*.parquet') WHERE id = '${firstId}'`);
    const single = await first.locator('.heat .tok[data-score]').evaluateAll((els) => els.map((e) => e.getAttribute('data-tokens')!).filter((x) => !x.includes(',')));
    const pos = Number(single[2]);
    const target = first.locator(`.heat .tok[data-tokens="${pos}"]`);
    t.is(await target.evaluate((e) => getComputedStyle(e, '::after').content), 'none', 'no tooltip before hovering');
    await target.hover();
    const tip = await target.evaluate((e) => getComputedStyle(e, '::after').content);
    t.true(tip.includes(`ref ${(-Number((r0.ref_logprob as unknown[])[pos])).toFixed(3)}`), tip);

    const dir = process.env.RHO_TEST_ARTIFACTS ?? join(tmpdir(), 'rho-test-artifacts');
    mkdirSync(dir, { recursive: true });
    const png = join(dir, 'report.png');
    await page.screenshot({ path: png, fullPage: true });
    t.deepEqual([...readFileSync(png).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    t.log(`screenshot: ${png}`);
  } finally {
    await ctx.close();
  }
});

test('--help and a dir without score files', (t) => {
  const h = rho(['report', '--help']);
  t.is(h.status, 0);
  t.true(h.stdout.includes('--out') && h.stdout.includes('--samples'));
  const r = rho(['report', tmp('rho-inspect-nothing-'), '--out', join(tmp(), 'x.html')]);
  t.is(r.status, 2);
  t.regex(r.stderr, /no score files/);
});
