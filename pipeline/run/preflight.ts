// The model side of "nothing is committed before the configuration is proven": a window of C tokens must
// actually run. A model whose learned position table is shorter than C (a GPT-2 export without its
// config.json) fails here, before _rho/config.json is written, with the limit named — not mid-run.
import type { Scorer } from '../../stages/score.js';
import { ConfigError } from '../../schemas/errors.js';

async function runs(scorer: Scorer, width: number): Promise<string | null> {
  try {
    await scorer.score({ rows: 1, width, tokens: new Int32Array(width), lengths: Int32Array.of(width), windows: [] });
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Exit 2 naming the longest window the model can score, when it cannot score `context` tokens. */
export async function probeContext(scorer: Scorer, context: number, models: string): Promise<void> {
  const error = await runs(scorer, context);
  if (error === null) return;
  // The largest width that runs: binary search (a failing width only fails, it does not break the worker).
  let lo = 1;
  let hi = context;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if ((await runs(scorer, mid)) === null) lo = mid;
    else hi = mid;
  }
  const limit = lo > 1 || (await runs(scorer, 1)) === null ? lo : 0;
  throw new ConfigError(
    `model ${models} cannot score a window of --context ${context} tokens` +
      (limit > 0 ? `: it runs up to ${limit} tokens (a learned position table of ${limit}?); use --context ${limit} or less` : '') +
      ` (onnxruntime: ${error.split('\n')[0].slice(0, 300)})`,
  );
}
