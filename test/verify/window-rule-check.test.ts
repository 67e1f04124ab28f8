// verify's null-position rule (schemas/window-rule-check.ts, walking the windows) against the writer's closed
// form (schemas/contract.ts isUnscoredPosition) and against hand-worked cases from the contract's text. Two
// derivations that agree everywhere; a bug in either shows here and, in a real output, as a verify error.
import test from 'ava';
import { isUnscoredPosition } from '../../schemas/contract.js';
import { nullPositionsByWindows } from '../../schemas/window-rule-check.js';

const nulls = (n: number, C: number, S: number) => [...nullPositionsByWindows(n, C, S)].flatMap((v, i) => (v ? [i] : []));

test('hand-worked cases from the contract', (t) => {
  t.deepEqual(nulls(0, 4, 4), []);
  t.deepEqual(nulls(1, 4, 4), [0], 'an empty text keeps its one token (BOS), null');
  t.deepEqual(nulls(10, 4, 4), [0, 4, 8], 'S = C: the first token of every window');
  t.deepEqual(nulls(10, 4, 2), [0], 'S < C: only position 0; windows [0,4) [2,6) [4,8) ... score 4-5, 6-7, 8-9 with context');
  t.deepEqual(nulls(10, 4, 1), [0]);
  t.deepEqual(nulls(3, 8, 3), [0], 'a document shorter than C is one window');
  t.deepEqual(nulls(9, 3, 3), [0, 3, 6]);
});

test('walking the windows agrees with the writer\'s closed form for every n <= 70, 1 <= S <= C <= 12, and long documents', (t) => {
  let checked = 0;
  for (let C = 1; C <= 12; C++) {
    for (let S = 1; S <= C; S++) {
      for (let n = 0; n <= 70; n++) {
        const w = nullPositionsByWindows(n, C, S);
        for (let i = 0; i < n; i++) {
          if ((w[i] === 1) !== isUnscoredPosition(i, C, S)) t.fail(`i=${i} n=${n} C=${C} S=${S}: windows say ${w[i] === 1 ? 'null' : 'scored'}`);
          checked++;
        }
      }
    }
  }
  for (const [C, S] of [[2048, 1024], [2048, 2048], [4096, 1], [512, 384]] as const) {
    const n = 20_000;
    const w = nullPositionsByWindows(n, C, S);
    for (let i = 0; i < n; i++) if ((w[i] === 1) !== isUnscoredPosition(i, C, S)) t.fail(`i=${i} C=${C} S=${S}`);
    checked += n;
  }
  t.log(`${checked} positions compared`);
  t.true(checked > 100_000);
});

test('bad window parameters are refused, not looped on', (t) => {
  t.throws(() => nullPositionsByWindows(5, 4, 0), { message: /1 <= S <= C/ });
  t.throws(() => nullPositionsByWindows(5, 2, 3), { message: /1 <= S <= C/ });
});
