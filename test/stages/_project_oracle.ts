// Independent brute-force projection, written from docs/cross-tokenizer.md and NOT from stages/project.ts:
// it works byte by byte (who owns each byte on each side) and finds anchors by scanning every token.
// Spans are given as plain [start, end) pairs.

export type Span = [number, number];

/** Owner of each byte: the index of the non-empty token whose span holds it, -1 if none. */
function owners(spans: Span[], nBytes: number): number[] {
  const own = new Array<number>(nBytes).fill(-1);
  spans.forEach(([s, e], i) => {
    for (let b = s; b < e; b++) own[b] = i;
  });
  return own;
}

function anchorOf(trainer: Span[], p: number, rank: number): number {
  const emptiesAtP: number[] = [];
  trainer.forEach(([s, e], i) => { if (s === e && s === p) emptiesAtP.push(i); });
  if (emptiesAtP.length > 0) return emptiesAtP[Math.min(rank, emptiesAtP.length - 1)];
  const containing = trainer.findIndex(([s, e]) => s <= p && p < e);
  if (containing >= 0) return containing;
  let last = -1;
  trainer.forEach(([s, e], i) => { if (e > s) last = i; });
  return last >= 0 ? last : trainer.length - 1;
}

/** Projected values (null = no contribution) and the native sum, computed in float64. */
export function bruteForceProjection(trainer: Span[], ref: Span[], refLogprob: (number | null)[], nBytes: number): { values: (number | null)[]; nativeSum: number } {
  const tOwn = owners(trainer, nBytes);
  const values: (number | null)[] = trainer.map(() => null);
  const add = (t: number, v: number) => { values[t] = (values[t] ?? 0) + v; };
  let nativeSum = 0;
  for (let r = 0; r < ref.length; r++) {
    const [s, e] = ref[r];
    // Rank among the consecutive empty reference spans at the same byte.
    let rank = 0;
    if (s === e) for (let q = r - 1; q >= 0 && ref[q][0] === ref[q][1] && ref[q][0] === s; q--) rank++;
    const lp = refLogprob[r];
    if (lp === null) continue;
    nativeSum += lp;
    if (trainer.length === 0) continue;
    let placed = false;
    if (e > s) {
      const perByte = lp / (e - s);
      for (let b = s; b < e; b++) {
        if (tOwn[b] >= 0) { add(tOwn[b], perByte); placed = true; }
      }
    }
    if (!placed) add(anchorOf(trainer, s, e === s ? rank : 0), lp);
  }
  return { values, nativeSum };
}

/** GPT-2's byte ↔ unicode table, written out as in the original Python (bytes_to_unicode), inverted. */
export function unicodeToByte(): Map<string, number> {
  const bs: number[] = [];
  for (let c = '!'.charCodeAt(0); c <= '~'.charCodeAt(0); c++) bs.push(c);
  for (let c = '¡'.charCodeAt(0); c <= '¬'.charCodeAt(0); c++) bs.push(c);
  for (let c = '®'.charCodeAt(0); c <= 'ÿ'.charCodeAt(0); c++) bs.push(c);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const m = new Map<string, number>();
  bs.forEach((b, i) => m.set(String.fromCharCode(cs[i]), b));
  return m;
}
