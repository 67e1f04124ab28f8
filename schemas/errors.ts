// Exit codes are part of the CLI's contract (README "Exit codes").
export const EXIT = {
  ok: 0,
  runtime: 1,
  config: 2,
  tooManyRejects: 3,
  verifyFailed: 4,
} as const;

/** A problem with what the user asked for (flags, inputs, model, tokenizer): found before any work. */
export class ConfigError extends Error {
  readonly exitCode = EXIT.config;
}

/** The run finished, but more input was rejected than --max-reject-ratio allows. */
export class RejectRatioError extends Error {
  readonly exitCode = EXIT.tooManyRejects;
}

export function exitCodeOf(e: unknown): number {
  const code = (e as { exitCode?: unknown })?.exitCode;
  return typeof code === 'number' ? code : EXIT.runtime;
}

/** A failure while working (I/O, a crashed worker, a bug): exit 1. `cause` is the original error. */
export class RunError extends Error {
  readonly exitCode = EXIT.runtime;
}

/** Errors out of the API always carry the CLI's exit code: a ConfigError/RejectRatioError as is, anything else as a RunError. */
export function asTypedError(e: unknown): Error & { exitCode: number } {
  if (e instanceof Error && typeof (e as { exitCode?: unknown }).exitCode === 'number') return e as Error & { exitCode: number };
  const err = new RunError(e instanceof Error ? e.message : String(e), { cause: e });
  if (e instanceof Error && e.stack) err.stack = e.stack;
  return err;
}
