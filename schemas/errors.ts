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
