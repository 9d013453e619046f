/**
 * Reconnect delays: exponential with full jitter. Attempt n waits a uniformly random time between
 * `minMs` and min(`maxMs`, `minMs` * 2^(n+1)), so a fleet of runners that lost the same server
 * spreads out instead of coming back in lockstep.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly minMs: number,
    readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {
    if (!(minMs > 0) || !(maxMs >= minMs)) throw new RangeError(`backoff needs 0 < min <= max, got ${minMs}..${maxMs}`);
  }

  /** The delay before the next attempt; each call counts as one more failed attempt. */
  next(): number {
    // 2^31 overflows nothing here: the exponent stops growing once the ceiling reaches maxMs.
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt + 1, 40));
    this.attempt += 1;
    return Math.round(this.minMs + this.random() * (ceiling - this.minMs));
  }

  /** After a connection that worked: the next failure starts again from the shortest delay. */
  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}
