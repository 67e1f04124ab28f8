// The benchmark's extension points. A figure is a number with a target, computed per round from samples of
// named contenders; bench/run.ts runs every contender of every registered figure (bench/figures/index.ts) in
// interleaved rounds and prints each figure as min / median / max over the rounds.

/** What one run of a contender returns (a measurement's JSON line); figures read the fields they need. */
export interface Sample {
  tokens_per_second?: number;
  max_rss_mib?: number;
  [field: string]: unknown;
}

/** Everything bench/run.ts set up, for contenders to use. */
export interface BenchContext {
  root: string;
  /** bench/work: generated model, corpora, venv, outputs (gitignored). */
  work: string;
  model: string;
  modelDir: string;
  modelInfo: Record<string, unknown>;
  tokenizer: string;
  corpus1x: string;
  corpus4x: string;
  threads: number;
  batchTokens: number;
  device: 'cpu' | 'cuda';
  /** Python with the best torch found (torch 2.x CPU wheel in a venv, else Debian's), or null with --skip-torch. */
  python: string | null;
  /** Run `node dist/bench/measure.js <json>` in a child process (own peak RSS) and return its last JSON line. */
  measure(args: Record<string, unknown>): Sample;
  /** Run any program (e.g. a Python baseline) and return its last stdout line as JSON. */
  runJson(cmd: string, args: string[], what: string): Sample;
}

/** One side of a comparison. Contenders are shared between figures by `key` (each runs once per round). */
export interface Contender {
  key: string;
  /** Runs it once; also called for the untimed warm-up. */
  run(ctx: BenchContext): Sample;
  /** Not runnable in this configuration (e.g. the PyTorch baseline with --skip-torch): the reason. */
  unavailable?(ctx: BenchContext): string | null;
}

export interface Figure {
  /** Stable id, used in bench/results.json. */
  key: string;
  /** Table text, e.g. "rho score end to end ÷ bare session.run loop (same batches)". */
  title: string;
  /** Target as printed, e.g. ">= 0.95"; '' for a figure that only reports. */
  target: string;
  contenders: Contender[];
  /** The figure's value in one round, from that round's samples (keyed by contender key). */
  value(round: Record<string, Sample>): number;
  /** Whether one value clears the target. "met" needs every round's value to clear it (the whole spread). */
  clears?(value: number): boolean;
  /** How a value prints (default: 2 decimals). */
  format?(value: number): string;
  /** Extra context for the table from all rounds (e.g. median tokens/s of each side). */
  detail?(rounds: Record<string, Sample>[]): string;
}
