// Progress on stderr: documents, tokens, tokens/s and ETA (from input bytes, the only total known up front, scaled
// by the share of tokenized tokens already scored).
// Redraws one line on a TTY; prints a line every 10 s otherwise (logs stay readable).

export interface ProgressCounts {
  docs: number;
  rejected: number;
  /** Tokens that got a score (counted per scored window, so they move inside a long document). */
  tokens: number;
  /** Tokens tokenized so far (counted per piece inside a long document); shown while ahead of `tokens`. */
  tokenized?: number;
  inputBytesDone: number;
}

export class Progress {
  private readonly started = performance.now();
  private last = 0;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly totalInputBytes: number, private readonly read: () => ProgressCounts, private readonly enabled = true) {
    this.tty = Boolean(process.stderr.isTTY);
    this.intervalMs = this.tty ? 500 : 10_000;
    if (enabled) {
      this.timer = setInterval(() => this.draw(), this.intervalMs);
      this.timer.unref();
    }
  }

  elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }

  line(): string {
    const c = this.read();
    const s = this.elapsedSeconds();
    const tps = s > 0 ? c.tokens / s : 0;
    // Input bytes read is the only total known up front, but bytes are read long before their tokens are scored
    // (a 32 MB document is read in a second and scored for minutes): scale by the share of tokenized tokens
    // that are scored, so a long document does not show 100% while its windows are still being scored.
    const read = this.totalInputBytes > 0 ? Math.min(1, c.inputBytesDone / this.totalInputBytes) : 0;
    const frac = c.tokenized !== undefined && c.tokenized > 0 ? read * Math.min(1, c.tokens / c.tokenized) : read;
    const eta = frac > 0.01 && frac < 1 ? ` ETA ${fmtDuration((s / frac) * (1 - frac))}` : '';
    const pct = this.totalInputBytes > 0 ? `${(frac * 100).toFixed(1).padStart(5)}% ` : '';
    const ahead = c.tokenized !== undefined && c.tokenized > c.tokens ? ` (${c.tokenized} tokenized)` : '';
    return `rho: ${pct}${c.docs} docs, ${c.rejected} rejected, ${c.tokens} tokens${ahead}, ${Math.round(tps)} tok/s, ${fmtDuration(s)}${eta}`;
  }

  draw(): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < this.intervalMs * 0.9) return;
    this.last = now;
    if (this.tty) process.stderr.write(`\r\x1b[2K${this.line()}`);
    else process.stderr.write(`${this.line()}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.enabled && this.tty) process.stderr.write(`\r\x1b[2K`);
  }
}

export function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
