/*
 * Reconnect delays: exponential backoff with full jitter, as the C client
 * (src/engine/backoff.c). The bound before retry n is min(cap, base * 2^n);
 * the delay is drawn uniformly from [0, bound], both ends included. The
 * randomness is injected (a function returning a number in [0, 1)), so tests
 * get exact delays.
 */

export const BACKOFF_BASE_MS = 250;
export const BACKOFF_CAP_MS = 30000;
export const BACKOFF_RESET_MS = 10000;

export class Backoff {
  attempt = 0;

  /**
   * @param baseMs first bound (0: always retry at once)
   * @param capMs largest bound
   * @param maxAttempts retries before giving up (0: never give up)
   * @param random uniform in [0, 1)
   */
  constructor(
    readonly baseMs: number = BACKOFF_BASE_MS,
    readonly capMs: number = BACKOFF_CAP_MS,
    readonly maxAttempts: number = 0,
    readonly random: () => number = Math.random,
  ) {
    for (const [k, v] of [
      ['baseMs', baseMs],
      ['capMs', capMs],
      ['maxAttempts', maxAttempts],
    ] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
        throw new RangeError(`backoff ${k} ${v} is not an integer in 0..2^32-1`);
      }
    }
  }

  /** The bound (ms) before retry number `attempt` (0 first). */
  bound(attempt: number): number {
    if (this.baseMs === 0) {
      return 0;
    }
    if (attempt >= 32) {
      return this.capMs;
    }
    const b = this.baseMs * 2 ** attempt;
    return b < this.capMs ? b : this.capMs;
  }

  /** The next delay in ms, or null when maxAttempts retries were used up. */
  next(): number | null {
    if (this.maxAttempts !== 0 && this.attempt >= this.maxAttempts) {
      return null;
    }
    const bound = this.bound(this.attempt);
    let r = this.random();
    if (!(r >= 0 && r < 1)) {
      r = 0;
    }
    const delay = Math.min(bound, Math.floor(r * (bound + 1)));
    this.attempt++;
    return delay;
  }

  reset(): void {
    this.attempt = 0;
  }
}
