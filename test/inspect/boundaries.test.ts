// `rho show` keeps token boundaries visible: in colour, every second token of a run of one background colour
// has another text colour; `--boundaries` puts a thin bar (│) between neighbouring tokens, which splits the
// text exactly at the tokenizer's offsets (computed here with the tokenizers library directly).
import test from 'ava';
import { Tokenizer } from 'tokenizers';
import { scoredDir, rho, sourceTexts, utf16Index } from './_fixture.js';
import { TOKENIZER } from '../helpers.js';

let out = '';
test.before(async () => { out = await scoredDir(); });

const RULE = '─'.repeat(40);
const between = (s: string) => { const l = s.split('\n'); const a = l.indexOf(RULE); return l.slice(a + 1, l.indexOf(RULE, a + 1)).join('\n'); };

test('colour: neighbours with one background differ in text colour', (t) => {
  let runsOfOne = 0;
  for (const id of ['clean-003', 'clean-005', 'noisy-002']) {
    const r = rho(['show', out, '--id', id, '--color', 'always']);
    t.is(r.status, 0, r.stderr);
    // Adjacent styled spans: ESC[<codes>m text ESC[0m immediately followed by the next one.
    const spans = [...between(r.stdout).matchAll(/\x1b\[([0-9;]+)m([^\x1b]*)\x1b\[0m(?=\x1b\[[0-9;]+m)?/g)].map((m) => ({ codes: m[1], at: m.index!, end: m.index! + m[0].length }));
    for (let i = 1; i < spans.length; i++) {
      if (spans[i].at !== spans[i - 1].end) continue;
      const bg = (c: string) => c.match(/^48;5;(\d+)/)?.[1] ?? c.match(/^38;5;(\d+)/)?.[1];
      if (bg(spans[i].codes) !== bg(spans[i - 1].codes)) continue;
      runsOfOne++;
      const fg = (c: string) => c.replace(/^48;5;\d+;/, '').replace(/;4$/, '');
      t.not(fg(spans[i].codes), fg(spans[i - 1].codes), `${id}: span ${i} (${spans[i].codes}) vs ${spans[i - 1].codes}`);
    }
  }
  t.true(runsOfOne > 5, `found ${runsOfOne} same-colour neighbours`);
});

test('--boundaries: a bar between neighbouring tokens, at the tokenizer\'s offsets', async (t) => {
  const texts = sourceTexts();
  const tok = Tokenizer.fromFile(TOKENIZER);
  for (const id of ['clean-003', 'noisy-002']) {
    const r = rho(['show', out, '--id', id, '--color', 'never', '--boundaries']);
    t.is(r.status, 0, r.stderr);
    const text = texts.get(id)!;
    const u = utf16Index(text);
    const spans: string[] = [];
    let last = '';
    for (const [s, e] of (await tok.encode(text)).getOffsets()) {
      if (e <= s) continue;
      const key = `${u[s]}:${u[e]}`;
      if (key === last) continue;
      last = key;
      spans.push(text.slice(u[s], u[e]));
    }
    t.deepEqual(between(r.stdout).split('\u2502'), spans, id);
  }
  const plain = rho(['show', out, '--id', 'clean-003', '--color', 'never']);
  t.false(between(plain.stdout).includes('\u2502'), 'no bars without --boundaries');
});
