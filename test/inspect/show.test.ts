// `rho show`: on documents with emoji (ZWJ sequences, skin tones, flags), CJK, combining marks, tabs and
// CRLF, the printed text is the document exactly once, in order; token boundaries and colours match the
// tokenizer's offsets and the stored scores under the documented colour scale.
import test from 'ava';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import { scoredDir, rho, duck, sourceTexts, utf16Index, DOC_LOSS, DOC_EXCESS, docColour } from './_fixture.js';
import { score, shardPath, tmp, TOKENIZER } from '../helpers.js';

const RULE = '─'.repeat(40);
let out = '';
let texts: Map<string, string>;
let tok: Tokenizer;

test.before(async () => {
  out = await scoredDir();
  texts = sourceTexts();
  tok = Tokenizer.fromFile(TOKENIZER);
});

/** The lines between the two rule lines of one `rho show` document. */
function body(stdout: string): string {
  const lines = stdout.split('\n');
  const a = lines.indexOf(RULE);
  const b = lines.indexOf(RULE, a + 1);
  if (a < 0 || b < 0) throw new Error(`no rule lines in:\n${stdout}`);
  return lines.slice(a + 1, b).join('\n');
}

interface Run { start: number; end: number; sgr: string }
/** Strip SGR escapes; return the plain text and the coloured runs (plain-text positions). */
function parseAnsi(s: string): { plain: string; runs: Run[] } {
  let plain = '';
  const runs: Run[] = [];
  let open: Run | null = null;
  let last = 0;
  for (const m of s.matchAll(/\x1b\[([0-9;]*)m/g)) {
    plain += s.slice(last, m.index);
    last = m.index! + m[0].length;
    if (open) { open.end = plain.length; runs.push(open); open = null; }
    if (m[1] !== '0' && m[1] !== '') open = { start: plain.length, end: -1, sgr: m[1] };
  }
  plain += s.slice(last);
  if (open) throw new Error('unterminated colour run');
  return { plain, runs };
}

async function expectedSpans(text: string) {
  const enc = await tok.encode(text);
  const u = utf16Index(text);
  const spans = enc.getOffsets().map(([s, e], i) => ({ i, start: u[s], end: u[e] })).filter((x) => x.end > x.start);
  return { ids: enc.getIds(), spans };
}

const boundaries = (pairs: { start: number; end: number }[], text: string) =>
  [...new Set(pairs.flatMap((p) => [p.start, p.end]))].filter((b) => text[b - 1] !== '\n').sort((a, b) => a - b);

async function storedRow(id: string) {
  const [row] = await duck(`SELECT token_ids, ref_logprob, base_logprob FROM read_parquet('${out}/**/*.parquet') WHERE id = '${id}'`);
  const num = (v: unknown) => (v as (number | string | null)[]).map((x) => (x === null ? null : Number(x)));
  return { ids: num(row.token_ids) as number[], ref: num(row.ref_logprob), base: num(row.base_logprob) };
}

for (const id of ['clean-005', 'mixed-003', 'mixed-014']) {
  test(`${id}: coloured output is the text once, in order, split at the tokenizer's boundaries, coloured by the documented scale`, async (t) => {
    const text = texts.get(id)!;
    t.regex(text, /[\u{1F300}-\u{1FAFF}\u3040-\u30ff\u4e00-\u9fff\u0300-\u036f]/u, 'the document has emoji, CJK or combining marks');
    const r = rho(['show', out, '--id', id, '--color', 'always']);
    t.is(r.status, 0, r.stderr);
    const { plain, runs } = parseAnsi(body(r.stdout));
    t.is(plain, text);

    const stored = await storedRow(id);
    const { ids, spans } = await expectedSpans(text);
    t.deepEqual(stored.ids, ids, 'the source re-tokenizes to the stored ids');
    t.deepEqual(boundaries(runs, text), boundaries(spans, text));

    for (const run of runs) {
      const covering = spans.filter((s) => s.start < run.end && s.end > run.start);
      t.true(covering.length > 0);
      const losses = covering.map((s) => stored.ref[s.i]).filter((v): v is number => v !== null).map((v) => -v);
      const want = losses.length ? `48;5;${docColour(DOC_LOSS, Math.max(...losses))}` : '38;5;244';
      t.true(run.sgr.startsWith(want), `run ${JSON.stringify(text.slice(run.start, run.end))}: ${run.sgr}, expected ${want}`);
    }
    t.regex(r.stdout, /legend \(loss, nats\)/);
  });
}

test('--metric excess colours by ref_logprob - base_logprob on the diverging scale', async (t) => {
  const id = 'clean-005';
  const text = texts.get(id)!;
  const r = rho(['show', out, '--id', id, '--color', 'always', '--metric', 'excess']);
  t.is(r.status, 0, r.stderr);
  const { plain, runs } = parseAnsi(body(r.stdout));
  t.is(plain, text);
  const stored = await storedRow(id);
  const { spans } = await expectedSpans(text);
  const colours = new Set<number>();
  for (const run of runs) {
    const ex = spans.filter((s) => s.start < run.end && s.end > run.start)
      .map((s) => (stored.ref[s.i] === null || stored.base[s.i] === null ? null : stored.ref[s.i]! - stored.base[s.i]!))
      .filter((v): v is number => v !== null);
    if (!ex.length) continue;
    const c = docColour(DOC_EXCESS, Math.max(...ex));
    colours.add(c);
    t.true(run.sgr.startsWith(`48;5;${c}`), `${run.sgr} vs ${c}`);
  }
  t.true(colours.size >= 3, 'several levels of the scale are used');
  t.regex(r.stdout, /excess loss \(nats, base_loss - ref_loss\)/);
});

test('not a TTY: no escape codes; the plain text, then one line per token span with its text and score', async (t) => {
  const id = 'mixed-003';
  const text = texts.get(id)!;
  const r = rho(['show', out, '--id', id]);
  t.is(r.status, 0, r.stderr);
  t.false(r.stdout.includes('\x1b'));
  t.is(body(r.stdout), text);
  const stored = await storedRow(id);
  const { spans } = await expectedSpans(text);
  const distinct = [...new Map(spans.map((s) => [`${s.start}:${s.end}`, s])).values()];
  const tokenLines = r.stdout.split('\n').filter((l) => /^\s+\d+(-\d+)?\s+(-?\d+\.\d+|-)\s/.test(l));
  t.is(tokenLines.length, distinct.length);
  for (let k = 0; k < distinct.length; k++) {
    const m = /^\s+(\d+)(?:-(\d+))?\s+(\S+)\s+\S+\s+(".*")$/.exec(tokenLines[k])!;
    t.is(JSON.parse(m[4]), text.slice(distinct[k].start, distinct[k].end));
    const first = Number(m[1]);
    const last = m[2] ? Number(m[2]) : first;
    const losses = [];
    for (let i = first; i <= last; i++) if (stored.ref[i] !== null) losses.push(-stored.ref[i]!);
    t.is(m[3], losses.length ? Math.max(...losses).toFixed(3) : '-');
  }
});

test('--decode (no source) gives the same text and token spans as the source with offsets', (t) => {
  for (const id of ['clean-005', 'mixed-014']) {
    const a = rho(['show', out, '--id', id, '--json']);
    const b = rho(['show', out, '--id', id, '--json', '--decode']);
    t.is(a.status, 0, a.stderr);
    t.is(b.status, 0, b.stderr);
    const ja = JSON.parse(a.stdout);
    const jb = JSON.parse(b.stdout);
    t.is(ja.text_origin, 'source');
    t.is(jb.text_origin, 'decoded');
    t.is(jb.text, texts.get(id));
    t.deepEqual(jb.segments, ja.segments);
    t.deepEqual(jb.specials, [0], 'BOS is the only special token');
  }
});

test('source moved or changed: falls back to decoding token_ids and says why', async (t) => {
  const dir = tmp('rho-inspect-src-');
  const src = join(dir, 'clean.jsonl');
  copyFileSync(shardPath('clean.jsonl'), src);
  const o = join(dir, 'out');
  await score({ inputs: [src], output: o });
  const text = texts.get('clean-005')!;

  writeFileSync(src, readFileSync(src, 'utf8').replace('Café', 'Cafe'));
  const changed = rho(['show', o, '--id', 'clean-005', '--json']);
  t.is(changed.status, 0, changed.stderr);
  const jc = JSON.parse(changed.stdout);
  t.is(jc.text_origin, 'decoded');
  t.regex(jc.note, /re-tokenizes differently/);
  t.is(jc.text, text);

  rmSync(src);
  const gone = rho(['show', o, '--id', 'clean-005']);
  t.is(gone.status, 0, gone.stderr);
  t.regex(gone.stdout, /not found.*text decoded from token_ids/);
  t.is(body(gone.stdout), text);
});

test('--row N is the N-th document of the dir; --sample is seeded and distinct', async (t) => {
  const ids = (await duck(`SELECT id FROM read_parquet('${out}/**/*.parquet', filename = true) ORDER BY filename, row`)).map((r) => String(r.id));
  for (const n of [0, 31, ids.length - 1]) {
    const r = rho(['show', out, '--row', String(n), '--json']);
    t.is(r.status, 0, r.stderr);
    t.is(JSON.parse(r.stdout).id, ids[n]);
  }
  const a = rho(['show', out, '--sample', '3', '--seed', '5', '--json']);
  const b = rho(['show', out, '--sample', '3', '--seed', '5', '--json']);
  const c = rho(['show', out, '--sample', '3', '--seed', '6', '--json']);
  const pick = (s: string) => s.trim().split('\n').map((l) => JSON.parse(l).id as string);
  t.deepEqual(pick(a.stdout), pick(b.stdout));
  t.is(new Set(pick(a.stdout)).size, 3);
  t.notDeepEqual(pick(a.stdout), pick(c.stdout));
});

test('bad input: unknown id, row past the end, no selector, missing tokenizer, no score files: exit 2', (t) => {
  const id = rho(['show', out, '--id', 'no-such-doc']);
  t.is(id.status, 2);
  t.regex(id.stderr, /no document with id "no-such-doc"/);
  const row = rho(['show', out, '--row', '100000']);
  t.is(row.status, 2);
  t.regex(row.stderr, /--row 100000 is past the end: the dir holds 80 documents/);
  const none = rho(['show', out]);
  t.is(none.status, 2);
  t.regex(none.stderr, /exactly one of --id/);
  const tk = rho(['show', out, '--id', 'clean-000', '--tokenizer', '/nonexistent/tokenizer.json']);
  t.is(tk.status, 2);
  t.regex(tk.stderr, /--tokenizer \/nonexistent\/tokenizer.json: file not found/);
  const empty = rho(['show', tmp('rho-inspect-none-'), '--row', '0']);
  t.is(empty.status, 2);
  t.regex(empty.stderr, /no score files/);
});
