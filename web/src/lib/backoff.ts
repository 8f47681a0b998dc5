/**
 * Reconnect delays: exponential backoff with "equal jitter".
 *
 * Attempt n waits a random time in [cap/2, cap] where cap = min(max, base·2^n).
 * The random half spreads a crowd of clients that lost the same server over
 * the window, so a restart is not met by a synchronized reconnect storm; the
 * fixed half keeps one client from hammering a server that is down.
 */
export interface BackoffOptions {
  /** Upper bound of the first delay, in ms. */
  baseMs: number;
  /** Largest delay, in ms. */
  maxMs: number;
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 10_000 };

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions = DEFAULT_BACKOFF) {
    this.random = opts.random ?? Math.random;
  }

  /** The delay before the next attempt; each call counts one attempt. */
  next(): number {
    const cap = Math.min(this.opts.maxMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.round(cap / 2 + (this.random() * cap) / 2);
  }

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** Call once a connection has proven healthy (the server said welcome). */
  reset(): void {
    this.attempt = 0;
  }
}
