// The window rule's null positions, derived a second way for `rho verify`: by walking the windows themselves
// (the contract's text), not through the closed form `isUnscoredPosition` that the writer uses. If either one
// drifts from the contract, verify and the writer disagree and verify reports it.
//
// Contract: a document of n tokens is scored in windows [kS, min(kS+C, n)), k = 0, 1, ...; token i is scored
// in the first window that contains it, with that window's earlier tokens as context; so it is null exactly
// when it is the first token of that window.

/** 1 where the window rule gives token i no score (null), 0 where it is scored; length n. */
export function nullPositionsByWindows(n: number, contextTokens: number, strideTokens: number): Uint8Array {
  if (!(contextTokens >= 1 && strideTokens >= 1 && strideTokens <= contextTokens)) {
    throw new Error(`window rule needs 1 <= S <= C (got C=${contextTokens}, S=${strideTokens})`);
  }
  const isNull = new Uint8Array(n);
  let covered = 0; // tokens [0, covered) already belong to an earlier window
  for (let start = 0; covered < n; start += strideTokens) {
    const end = Math.min(start + contextTokens, n);
    for (let i = Math.max(covered, start); i < end; i++) isNull[i] = i === start ? 1 : 0;
    covered = Math.max(covered, end);
  }
  return isNull;
}
