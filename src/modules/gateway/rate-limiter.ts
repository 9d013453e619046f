/**
 * Fixed windows per key: at most `limit` events per window, for each window given. In memory,
 * per instance, as in the seed design: a runner that spreads its attempts over several instances
 * gets that many times the limit, which still bounds a runaway loop.
 */
export class WindowRateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }[]>();

  constructor(
    private readonly limits: readonly { windowMs: number; limit: number }[],
    private readonly now: () => number,
  ) {}

  /** Counts one event for `key`; false (and not counted) if any window is full. */
  take(key: string): boolean {
    const now = this.now();
    let counters = this.windows.get(key);
    if (counters === undefined) {
      counters = this.limits.map(() => ({ start: now, count: 0 }));
      this.windows.set(key, counters);
    }
    for (const [i, { windowMs }] of this.limits.entries()) {
      if (now - counters[i].start >= windowMs) counters[i] = { start: now, count: 0 };
    }
    if (counters.some((counter, i) => counter.count >= this.limits[i].limit)) return false;
    for (const counter of counters) counter.count++;
    return true;
  }

  /** Forgets keys whose every window has expired, so the map does not grow without bound. */
  prune(): void {
    const now = this.now();
    for (const [key, counters] of this.windows) {
      if (counters.every((counter, i) => now - counter.start >= this.limits[i].windowMs)) this.windows.delete(key);
    }
  }
}

/** A token bucket: `ratePerSecond` sustained, bursts up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
