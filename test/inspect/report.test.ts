// `rho report`: the HTML page is opened in headless Chromium (Debian's, driven by playwright-core): it renders
// with no console errors and no requests, and every plotted number (read from the charts' data-* attributes)
// is recomputed here with DuckDB from the same Parquet files: positions in the window, CDF points, histogram
// bars, the 2-D grid, the cuts, selected shares, per-document means, the most often dropped tokens. No two
// labels of a chart overlap. Heatmaps: one span per token span, hover, selection, same-colour boundaries.
// `rho report A B` on two dirs (the fixtures scored by two reference models). A screenshot of each section is
// kept as a test artifact (RHO_TEST_ARTIFACTS, default <tmp>/rho-test-artifacts).
import test, { type ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { Tokenizer } from 'tokenizers';
import { runSelect } from '../../pipeline/jobs/select.js';
import { scoredDir, rho, duck, sourceTexts, utf16Index, SHARDS } from './_fixture.js';
import { tmp, TOKENIZER, score, modelPath, shardPath } from '../helpers.js';
import { findBin, requires } from '../requirements.js';
import type { Stats } from '../../inspect/stats.js';

const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const C = 64;
const S = 32;

// Debian's chromium (never a browser download); `npm test` installs it (test/requirements.json). Missing: the
// browser tests fail with the install hint, or are ava skips with RHO_ALLOW_SKIP=1.
const maybe = requires('chromium').serial;
const CHROMIUM = findBin('chromium') ?? '';

const SAMPLES = 4;
let sel = '';
let out = '';
let other = '';
let html = '';
let cmpHtml = '';
let stats: Stats;
const artifacts = process.env.RHO_TEST_ARTIFACTS ?? join(tmpdir(), 'rho-test-artifacts');
const files = (dir: string) => `read_parquet('${dir}/**/*.parquet')`;

test.before(async () => {
  out = await scoredDir();
  sel = tmp('rho-inspect-report-sel-');
  await runSelect({ input: out, output: sel, ratio: 0.6, by: 'excess', scope: 'document', batchTokens: 1 << 20, ref: 'ref', base: 'base', sketchAccuracy: 0.005, overwrite: true, progress: false });
  // The second dir: the same shards scored by the other model as the reference.
  other = tmp('rho-inspect-report-b-');
  await score({ models: [{ name: 'ref', path: modelPath('gpt2') }], inputs: SHARDS.map(shardPath), output: other, context: C, stride: S });
  html = join(tmp('rho-inspect-report-'), 'report.html');
  const r = rho(['report', sel, '--out', html, '--samples', String(SAMPLES), '--seed', '3', '--ratio', '0.6', '0.7', '--no-progress']);
  if (r.status !== 0) throw new Error(`rho report failed (${r.status}): ${r.stderr}`);
  cmpHtml = join(tmp('rho-inspect-report-ab-'), 'report.html');
  const c = rho(['report', out, other, '--out', cmpHtml, '--no-progress']);
  if (c.status !== 0) throw new Error(`rho report A B failed (${c.status}): ${c.stderr}`);
  const s = rho(['stats', sel, '--json', '--ratio', '0.6', '0.7', '--no-progress']);
  stats = JSON.parse(s.stdout) as Stats;
});

test('the HTML files are self-contained: no script, no external reference, a CSP that forbids fetches', (t) => {
  for (const f of [html, cmpHtml]) {
    const page = readFileSync(f, 'utf8');
    t.false(/<script/i.test(page));
    t.false(/(src|href)\s*=\s*["']?(https?:|\/\/)/i.test(page));
    t.regex(page, /Content-Security-Policy" content="default-src 'none'/);
  }
});

async function open(t: ExecutionContext, file: string, body: (page: Page) => Promise<void>): Promise<void> {
  const profile = mkdtempSync(join(tmpdir(), 'rho-chromium-profile-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, viewport: { width: 1100, height: 900 } });
  try {
    const page = ctx.pages()[0] ?? await ctx.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => requests.push(r.url()));
    const url = pathToFileURL(file).href;
    await page.goto(url, { waitUntil: 'load' });
    t.deepEqual(problems, []);
    t.deepEqual(requests, [url], 'the page loads nothing but itself');
    await body(page);
    t.deepEqual(problems, [], 'no errors after interacting either');
  } finally {
    await ctx.close();
  }
}

/** Pairs of text elements inside one chart whose boxes intersect (more than half a pixel each way). */
async function overlappingLabels(page: Page): Promise<string[]> {
  return page.locator('svg.plot').evaluateAll((svgs) => {
    const bad: string[] = [];
    for (const svg of svgs) {
      const boxes = [...svg.querySelectorAll('text')].map((e) => ({ e, r: e.getBoundingClientRect() })).filter((b) => b.r.width > 0);
      for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].r;
        const b = boxes[j].r;
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 0.5 && h > 0.5) bad.push(`${svg.getAttribute('class')}: "${boxes[i].e.textContent}" and "${boxes[j].e.textContent}"`);
      }
    }
    return bad;
  });
}

async function screenshots(page: Page, name: string, t: ExecutionContext): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  for (const id of await page.locator('section').evaluateAll((els) => els.map((e) => e.id))) {
    const png = join(artifacts, `${name}-${id}.png`);
    await page.locator(`section#${id}`).screenshot({ path: png });
    t.deepEqual([...readFileSync(png).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  }
  t.log(`screenshots: ${artifacts}/${name}-*.png`);
}

/** DuckDB: count per fine bin floor((v - lo) / width) of a metric, per group (`all` and each source). */
async function fineBins(dir: string, expr: string, lo: number, width: number, where = 'TRUE', table = ''): Promise<Map<string, Map<number, number>>> {
  const src = table || `(SELECT source, unnest(ref_logprob)::DOUBLE AS r, ${expr.includes('b') ? 'unnest(base_logprob)::DOUBLE' : 'NULL::DOUBLE'} AS b FROM ${files(dir)})`;
  const rows = await duck(`SELECT source, floor(((${expr}) - ${lo}) / ${width})::BIGINT AS k, count(*) AS n FROM ${src} WHERE (${expr}) IS NOT NULL AND ${where} GROUP BY ALL`);
  const out = new Map<string, Map<number, number>>([['all', new Map()]]);
  for (const r of rows) {
    for (const g of ['all', String(r.source)]) {
      if (!out.has(g)) out.set(g, new Map());
      const m = out.get(g)!;
      m.set(Number(r.k), (m.get(Number(r.k)) ?? 0) + Number(r.n));
    }
  }
  return out;
}
const countBelow = (m: Map<number, number>, k: number) => [...m].reduce((a, [b, n]) => a + (b < k ? n : 0), 0);
const METRIC_SQL: Record<string, string> = { ref_loss: '-r', base_loss: '-b', excess_loss: 'r - b' };

maybe('one dir: every plotted number matches DuckDB; no overlapping labels; heatmaps, hover, selection, boundaries', async (t) => {
  await open(t, html, async (page) => {
    t.deepEqual(await overlappingLabels(page), [], 'no two labels of a chart overlap');
    for (const id of ['cut', 'counts', 'positions', 'distributions', 'joint', 'shares', 'documents', 'dropped', 'quantiles', 'samples']) {
      t.is(await page.locator(`section#${id}`).count(), 1, `section ${id}`);
    }

    // Loss by position in the window: count, mean and the 0.05-nat bins holding p25/p75, per model and position.
    for (const model of ['ref', 'base']) {
      const line = page.locator(`svg.positions path.mean-line[data-model="${model}"]`);
      t.is(await line.getAttribute('data-bucket-width'), '1');
      const pts = JSON.parse((await line.getAttribute('data-points'))!) as number[][];
      const rows = await duck(`WITH t AS (SELECT unnest(${model}_logprob)::DOUBLE AS lp, unnest(range(len(${model}_logprob))) AS i FROM ${files(sel)})
        SELECT CASE WHEN i < ${C} THEN i ELSE i - ((i - ${C}) // ${S} + 1) * ${S} END AS p, count(*) AS n, avg(-lp) AS mean,
          quantile_disc(-lp, 0.25) AS q25, quantile_disc(-lp, 0.75) AS q75 FROM t WHERE lp IS NOT NULL GROUP BY p ORDER BY p`);
      t.is(pts.length, rows.length, `${model}: positions`);
      rows.forEach((r, i) => {
        const [p, n, mean, b25, b75] = pts[i];
        t.is(p, Number(r.p));
        t.is(n, Number(r.n), `${model} position ${p}: count`);
        t.true(Math.abs(mean - Number(r.mean)) < 1e-5, `${model} position ${p}: mean ${mean} vs ${r.mean}`);
        t.is(b25, Math.floor(Number(r.q25) / 0.05), `${model} position ${p}: p25 bin`);
        t.is(b75, Math.floor(Number(r.q75) / 0.05), `${model} position ${p}: p75 bin`);
      });
    }

    // Histograms (fitted bins) and CDF points per metric and group; cut lines at the m-th best value.
    for (const [metric, expr] of Object.entries(METRIC_SQL)) {
      const lo = metric === 'excess_loss' ? -16 : 0;
      const bins = await fineBins(sel, expr, lo, 0.01);
      const hist = page.locator(`svg.histogram[data-metric="${metric}"]`);
      const factor = Number(await hist.getAttribute('data-factor'));
      t.true(factor >= 1);
      const bars = await hist.locator('rect.bar').evaluateAll((els) => els.map((e) => [Number(e.getAttribute('data-bin')), Number(e.getAttribute('data-count'))]));
      t.true(bars.length >= 15 && bars.length <= 80, `${metric}: ${bars.length} bins fit the spread`);
      for (const [k, c] of bars) t.is(c, countBelow(bins.get('all')!, k + factor) - countBelow(bins.get('all')!, k), `${metric} bar at fine bin ${k}`);
      t.is(Number(await hist.getAttribute('data-below')), countBelow(bins.get('all')!, bars[0][0]));
      const cdfs = page.locator(`svg.metric-cdf path.cdf-line[data-metric="${metric}"]`);
      t.is(await cdfs.count(), bins.size, `${metric}: one CDF per source + all`);
      for (const g of await cdfs.evaluateAll((els) => els.map((e) => ({ group: e.getAttribute('data-group')!, n: Number(e.getAttribute('data-n')), pts: JSON.parse(e.getAttribute('data-points')!) as number[][] })))) {
        const m = bins.get(g.group)!;
        t.is(g.n, [...m.values()].reduce((a, b) => a + b, 0), `${metric} ${g.group}: n`);
        t.true(g.pts.length > 20);
        for (const [k, below] of g.pts) t.is(below, countBelow(m, k), `${metric} ${g.group}: CDF at fine bin ${k}`);
      }
      const loss = metric !== 'excess_loss';
      for (const r of [0.6, 0.7]) {
        const [row] = await duck(`WITH t AS (SELECT unnest(ref_logprob)::DOUBLE AS r, unnest(base_logprob)::DOUBLE AS b FROM ${files(sel)}), v AS (SELECT (${expr}) AS x FROM t WHERE r IS NOT NULL),
          n AS (SELECT count(*) AS n FROM v) SELECT x FROM v ORDER BY x ${loss ? 'ASC' : 'DESC'} LIMIT 1 OFFSET (SELECT ceil(${r} * n)::BIGINT - 1 FROM n)`);
        const line = hist.locator(`line.cut[data-ratio="${r}"]`);
        t.is(Number(await line.getAttribute('data-value')), Number(row.x), `${metric} ${r}: the ${loss ? 'm-th smallest' : 'm-th largest'} value`);
        t.is(Number(await line.getAttribute('data-value')), stats.groups[0].metrics[metric].thresholds[String(r)]!);
      }
    }

    // Reference vs base loss: every non-empty cell of the grid.
    const joint = page.locator('svg.joint');
    const factor = Number(await joint.getAttribute('data-factor'));
    const cellsN = Number(await joint.getAttribute('data-cells'));
    const cells = await joint.locator('rect.cell').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-ix')},${e.getAttribute('data-iy')}:${e.getAttribute('data-count')}`));
    const want = await duck(`WITH t AS (SELECT floor(-unnest(ref_logprob)::DOUBLE / 0.1)::BIGINT AS x, floor(-unnest(base_logprob)::DOUBLE / 0.1)::BIGINT AS y FROM ${files(sel)})
      SELECT x // ${factor} AS ix, y // ${factor} AS iy, count(*) AS n FROM t WHERE x IS NOT NULL AND x >= 0 AND y >= 0 AND x < ${cellsN * factor} AND y < ${cellsN * factor} GROUP BY ALL`);
    t.deepEqual(cells.sort(), want.map((r) => `${r.ix},${r.iy}:${r.n}`).sort());
    t.true(cells.length > 100);
    t.is(await joint.locator('line.excess-cut').count(), 2);
    t.is(Number(await joint.locator('line.excess-cut[data-ratio="0.6"]').getAttribute('data-value')), stats.groups[0].metrics.excess_loss.thresholds['0.6']!);

    // Selected share per source (select_mask), and the kept side of every selected token.
    const shares = await page.locator('svg.shares rect.share-bar').evaluateAll((els) => els.map((e) => ({ source: e.getAttribute('data-source')!, kept: Number(e.getAttribute('data-kept')), of: Number(e.getAttribute('data-of')), share: Number(e.getAttribute('data-share')) })));
    const wantShares = await duck(`WITH t AS (SELECT source, unnest(ref_logprob) AS r, unnest(select_mask) AS s FROM ${files(sel)}) SELECT source, count(*) FILTER (WHERE s) AS kept, count(*) AS n FROM t WHERE r IS NOT NULL GROUP BY source ORDER BY source`);
    t.is(shares.length, wantShares.length);
    for (const w of wantShares) {
      const s = shares.find((x) => x.source === w.source)!;
      t.is(s.kept, Number(w.kept), `${w.source}: selected`);
      t.is(s.of, Number(w.n));
      t.is(s.share, Number(w.kept) / Number(w.n));
    }

    // Per-document mean loss per source (the <model>_loss_mean column, on 0.01-nat bins).
    for (const model of ['ref', 'base']) {
      const bins = await fineBins(sel, `${model}_loss_mean::DOUBLE`, 0, 0.01, 'TRUE', `${files(sel)}`);
      const lines = await page.locator(`svg.doc-means path.cdf-line[data-model="${model}"]`).evaluateAll((els) => els.map((e) => ({ group: e.getAttribute('data-group')!, n: Number(e.getAttribute('data-n')), pts: JSON.parse(e.getAttribute('data-points')!) as number[][] })));
      t.is(lines.length, bins.size - 1, `${model}: one line per source`);
      for (const l of lines) {
        const m = bins.get(l.group)!;
        t.is(l.n, [...m.values()].reduce((a, b) => a + b, 0));
        for (const [k, below] of l.pts) t.is(below, countBelow(m, k), `${model} ${l.group} doc means at fine bin ${k}`);
      }
    }

    // The 50 tokens left unselected most often (scored positions), decoded by the tokenizer alone.
    const dropped = await page.locator('table.dropped tbody tr').evaluateAll((els) => els.map((e) => ({ id: Number(e.getAttribute('data-token-id')), un: Number(e.getAttribute('data-unselected')), n: Number(e.getAttribute('data-n')), text: e.querySelector('.tokstr')!.textContent! })));
    const wantDropped = await duck(`WITH t AS (SELECT unnest(token_ids) AS id, unnest(ref_logprob) AS r, unnest(select_mask) AS s FROM ${files(sel)})
      SELECT id, count(*) FILTER (WHERE NOT s) AS un, count(*) AS n FROM t WHERE r IS NOT NULL GROUP BY id HAVING un > 0 ORDER BY un DESC, id ASC LIMIT 50`);
    t.deepEqual(dropped.map((d) => [d.id, d.un, d.n]), wantDropped.map((r) => [Number(r.id), Number(r.un), Number(r.n)]));
    const tok = Tokenizer.fromFile(TOKENIZER);
    for (const d of dropped.slice(0, 10)) t.is(d.text, JSON.stringify(await tok.decode([d.id], false)));

    // The cut table says which side select keeps and its own threshold.
    t.is(await page.locator('table.cuts tr[data-metric="ref_loss"] >> text=lowest losses').count(), 2);
    t.is(Number(await page.locator('table.cuts tr[data-metric="excess_loss"][data-ratio="0.6"]').getAttribute('data-select-threshold')), stats.groups[0].metrics.excess_loss.cuts['0.6'].select_threshold!);

    await heatmaps(t, page);
    await screenshots(page, 'report', t);
  });
});

async function heatmaps(t: ExecutionContext, page: Page): Promise<void> {
  // One token span per distinct tokenizer offset span; specials + spans' tokens = all tokens.
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
    const [row] = await duck(`SELECT n_tokens, select_mask FROM ${files(sel)} WHERE id = '${id}'`);
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
  const opacity = async (s: string) => page.locator(s).first().evaluate((e) => getComputedStyle(e).opacity);
  t.not(await opacity('article.doc .tok.sel'), await opacity('article.doc .tok.unsel'), 'selected and unselected look different');

  // Neighbouring tokens of one colour show a boundary; tokens after a different colour do not need one.
  const boundary = await page.locator('article.doc .heat').first().evaluate((heat) => {
    const spans = [...heat.children].filter((e) => e.classList.contains('tok')) as HTMLElement[];
    let same = 0;
    let wrong = 0;
    for (let i = 1; i < spans.length; i++) {
      const adjacent = spans[i].previousSibling === spans[i - 1];
      const equal = adjacent && getComputedStyle(spans[i]).backgroundColor === getComputedStyle(spans[i - 1]).backgroundColor;
      const marked = getComputedStyle(spans[i]).boxShadow !== 'none';
      if (equal) { same++; if (!marked) wrong++; }
    }
    return { same, wrong };
  });
  t.true(boundary.same > 0, 'the sample has neighbouring tokens of one colour');
  t.is(boundary.wrong, 0, 'every one of them shows a boundary');

  // Hover: the tooltip (CSS ::after of data-tip) shows the token's losses.
  const first = docs.nth(0);
  const firstId = (await first.getAttribute('data-id'))!;
  const [r0] = await duck(`SELECT ref_logprob FROM ${files(sel)} WHERE id = '${firstId}'`);
  const single = await first.locator('.heat .tok[data-score]').evaluateAll((els) => els.map((e) => e.getAttribute('data-tokens')!).filter((x) => !x.includes(',')));
  const pos = Number(single[2]);
  const target = first.locator(`.heat .tok[data-tokens="${pos}"]`);
  t.is(await target.evaluate((e) => getComputedStyle(e, '::after').content), 'none', 'no tooltip before hovering');
  await target.hover();
  const tip = await target.evaluate((e) => getComputedStyle(e, '::after').content);
  t.true(tip.includes(`ref ${(-Number((r0.ref_logprob as unknown[])[pos])).toFixed(3)}`), tip);
}

maybe('rho report A B: two dirs overlaid, per-source and per-document differences match DuckDB', async (t) => {
  await open(t, cmpHtml, async (page) => {
    t.deepEqual(await overlappingLabels(page), [], 'no two labels of a chart overlap');
    // Position curves: A has ref and base, B has ref; each is drawn (B dashed).
    t.deepEqual((await page.locator('svg.positions path.mean-line').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-dir')}:${e.getAttribute('data-model')}`))).sort(), ['A:base', 'A:ref', 'B:ref']);
    t.is(await page.locator('svg.metric-cdf path.cdf-line[data-metric="ref_loss"]').count(), 2, 'ref_loss CDFs of A and B on one scale');

    // Per-source mean ref_loss of A and B.
    for (const [dir, attr] of [[out, 'data-a'], [other, 'data-b']] as const) {
      const rows = await duck(`WITH t AS (SELECT source, -unnest(ref_logprob)::DOUBLE AS l FROM ${files(dir)}) SELECT source, avg(l) AS m FROM t WHERE l IS NOT NULL GROUP BY source`);
      for (const r of rows) {
        const cell = page.locator(`table.diff tr[data-source="${r.source}"] td[data-metric="ref_loss"]`);
        const v = attr === 'data-a' ? Number(await cell.getAttribute('data-a')) : Number(await page.locator(`table.diff tr[data-source="${r.source}"] td[data-b]`).first().getAttribute('data-b'));
        t.true(Math.abs(v - Number(r.m)) < 1e-9, `${dir} ${r.source}: ${v} vs ${r.m}`);
      }
    }

    // Documents whose mean ref loss differs most (by id).
    const docs = await page.locator('table.docdiff tbody tr').evaluateAll((els) => els.map((e) => [e.getAttribute('data-id'), Number(e.getAttribute('data-a')), Number(e.getAttribute('data-b'))]));
    const want = await duck(`SELECT a.id, a.ref_loss_mean::DOUBLE AS a, b.ref_loss_mean::DOUBLE AS b FROM ${files(out)} a JOIN ${files(other)} b USING (id)
      WHERE a.ref_loss_mean IS NOT NULL AND b.ref_loss_mean IS NOT NULL ORDER BY abs(b.ref_loss_mean::DOUBLE - a.ref_loss_mean::DOUBLE) DESC, a.id LIMIT 20`);
    t.deepEqual(docs, want.map((r) => [r.id, Number(r.a), Number(r.b)]));
    t.is(docs.length, 20);
    await screenshots(page, 'report-ab', t);
  });
});

test('without select_mask, the dropped-tokens table counts the tokens outside the whole dir\'s first cut', async (t) => {
  const file = join(tmp('rho-inspect-report-nosel-'), 'r.html');
  const r = rho(['report', out, '--out', file, '--samples', '0', '--ratio', '0.6', '--no-progress']);
  t.is(r.status, 0, r.stderr);
  const page = readFileSync(file, 'utf8');
  const rows = [...page.matchAll(/<tr data-token-id="(\d+)" data-unselected="(\d+)" data-n="(\d+)">/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])]);
  const st = JSON.parse(rho(['stats', out, '--json', '--ratio', '0.6', '--no-progress']).stdout) as Stats;
  const thr = st.groups[0].metrics.excess_loss.thresholds['0.6']!;
  const want = await duck(`WITH t AS (SELECT unnest(token_ids) AS id, unnest(ref_logprob)::DOUBLE AS r, unnest(base_logprob)::DOUBLE AS b FROM ${files(out)})
    SELECT id, count(*) FILTER (WHERE r - b < ${thr}) AS un, count(*) AS n FROM t WHERE r IS NOT NULL GROUP BY id HAVING un > 0 ORDER BY un DESC, id ASC LIMIT 50`);
  t.is(rows.length, 50);
  t.deepEqual(rows, want.map((w) => [Number(w.id), Number(w.un), Number(w.n)]));
  t.regex(page, /Unselected: by --by excess --ref ref --base base --ratio 0\.6 --scope global/);
});

test('--max-groups caps the sources drawn one by one (memory stays bounded with many shards)', (t) => {
  const file = join(tmp('rho-inspect-report-cap-'), 'r.html');
  const r = rho(['report', sel, '--out', file, '--samples', '0', '--max-groups', '2', '--no-progress']);
  t.is(r.status, 0, r.stderr);
  const page = readFileSync(file, 'utf8');
  t.is([...page.matchAll(/<path class="cdf-line" data-metric="ref_loss" data-group="([^"]+)"/g)].length, 1 + 2, 'all + 2 sources');
  t.is([...page.matchAll(/<path class="cdf-line" data-model="ref" data-group="([^"]+)"/g)].length, 2, 'document means: 2 sources');
  t.regex(page, /1 more sources are in "all" but not drawn one by one/);
  t.regex(page, /1 more sources not drawn \(--max-groups\)/);
});

test('--help and a dir without score files', (t) => {
  const h = rho(['report', '--help']);
  t.is(h.status, 0);
  t.true(h.stdout.includes('--out') && h.stdout.includes('--samples') && h.stdout.includes('OTHER_DIR'));
  const r = rho(['report', tmp('rho-inspect-nothing-'), '--out', join(tmp(), 'x.html')]);
  t.is(r.status, 2);
  t.regex(r.stderr, /no score files/);
});
