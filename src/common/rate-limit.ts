/**
 * Token buckets: a sustained rate with bursts. A bucket holds up to `burst` tokens and gains
 * `ratePerSecond` a second; each event takes one, and an event that finds it empty is refused.
 * Time comes from `now` (milliseconds), so tests drive it with a manual clock.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number,
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) throw new RangeError(`a token bucket needs rate > 0 and burst >= 1, got ${ratePerSecond}/${burst}`);
    this.tokens = burst;
    this.last = now();
  }

  /** Takes a token; false (and nothing taken) when there is none. */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Gives back a token taken for an event that turned out not to count. */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }

  /** Whether a token is there now, without taking it. */
  has(): boolean {
    this.refill();
    return this.tokens >= 1;
  }

  /** Seconds until a token is there (0 if one is), rounded up: a `Retry-After`. */
  retryAfterSeconds(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.ratePerSecond);
  }

  /** Whether the bucket is full again: forgetting it then changes nothing. */
  full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }

  private refill(): void {
    const now = this.now();
    // A clock stepped back refills nothing until it is past the last refill again (time is not counted twice).
    if (now <= this.last) return;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
  }
}

/** A limit as configured: `perMinute` sustained, bursts of `burst`. */
export interface RateLimit {
  perMinute: number;
  burst: number;
}

/**
 * One token bucket per key (a runner, a credential, a source address), made on first use and
 * forgotten once full again, so memory holds only the keys that were recently busy. In memory,
 * per instance: a caller that spreads over several instances gets that many times the limit,
 * which still bounds a runaway loop.
 */
export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();
  private lastPrune: number;

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number,
  ) {
    this.lastPrune = now();
  }

  take(key: string): boolean {
    return this.bucket(key).take();
  }

  /** Whether `key` has a token now, without taking it (a key never seen has). */
  has(key: string): boolean {
    return this.buckets.get(key)?.has() ?? true;
  }

  retryAfterSeconds(key: string): number {
    return this.buckets.get(key)?.retryAfterSeconds() ?? 0;
  }

  /** How many keys are remembered (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private bucket(key: string): TokenBucket {
    this.prune();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = new TokenBucket(this.limit.perMinute / 60, this.limit.burst, this.now);
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  /** At most once a minute: drops the buckets that are full again. */
  private prune(): void {
    const now = this.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const [key, bucket] of this.buckets) if (bucket.full()) this.buckets.delete(key);
  }
}
