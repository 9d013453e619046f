import { KeyedTokenBuckets, TokenBucket } from './rate-limit';

describe('TokenBucket', () => {
  it('starts full: a burst of `burst`, then refuses, taking nothing when it refuses', () => {
    let now = 0;
    const bucket = new TokenBucket(1, 3, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true]);
    expect(bucket.take()).toBe(false);
    expect(bucket.take()).toBe(false);
    expect(bucket.has()).toBe(false);
    // A refusal took nothing: one second later exactly one token is there.
    now = 1_000;
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
  });

  it('refills at its rate, in fractions, up to the burst and never beyond', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 4, () => now); // one token every 500 ms
    for (let i = 0; i < 4; i++) bucket.take();
    now = 499;
    expect(bucket.has()).toBe(false);
    expect(bucket.retryAfterSeconds()).toBe(1);
    now = 500;
    expect(bucket.has()).toBe(true);
    expect(bucket.retryAfterSeconds()).toBe(0);
    // A long quiet spell refills to the burst, not more.
    now = 3_600_000;
    expect(bucket.full()).toBe(true);
    let taken = 0;
    while (bucket.take()) taken++;
    expect(taken).toBe(4);
  });

  it('a clock that goes back refills nothing and takes nothing away', () => {
    let now = 10_000;
    const bucket = new TokenBucket(1, 1, () => now);
    expect(bucket.take()).toBe(true);
    now = 5_000;
    expect(bucket.take()).toBe(false);
    now = 10_999;
    expect(bucket.take()).toBe(false);
    now = 11_000;
    expect(bucket.take()).toBe(true);
  });

  it('retryAfterSeconds rounds up the wait for the next whole token', () => {
    let now = 0;
    const bucket = new TokenBucket(0.1, 1, () => now); // 6 a minute
    bucket.take();
    expect(bucket.retryAfterSeconds()).toBe(10);
    now = 2_500;
    expect(bucket.retryAfterSeconds()).toBe(8); // 7.5 s left, rounded up
  });

  it('refund gives a token back, never past the burst', () => {
    const now = 0;
    const bucket = new TokenBucket(1, 2, () => now);
    bucket.take();
    bucket.take();
    bucket.refund();
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(false);
    // Refunds on a full bucket are lost, not banked.
    const full = new TokenBucket(1, 2, () => now);
    full.refund();
    full.refund();
    expect([full.take(), full.take(), full.take()]).toEqual([true, true, false]);
  });

  it('refuses a rate or burst that could never let anything through', () => {
    expect(() => new TokenBucket(0, 1, () => 0)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 0.5, () => 0)).toThrow(RangeError);
    expect(() => new TokenBucket(Number.NaN, 1, () => 0)).toThrow(RangeError);
  });
});

describe('KeyedTokenBuckets', () => {
  it('keeps one bucket per key: one key spent leaves the others whole', () => {
    let now = 0;
    const buckets = new KeyedTokenBuckets({ perMinute: 60, burst: 2 }, () => now);
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([true, true, false]);
    expect(buckets.has('a')).toBe(false);
    expect(buckets.retryAfterSeconds('a')).toBe(1);
    expect(buckets.take('b')).toBe(true);
    // A key never seen has a token, and asking makes no bucket for it.
    expect(buckets.has('c')).toBe(true);
    expect(buckets.retryAfterSeconds('c')).toBe(0);
    expect(buckets.size).toBe(2);
    now = 1_000;
    expect(buckets.take('a')).toBe(true);
  });

  it('forgets the buckets that are full again, at most once a minute, and keeps the busy ones', () => {
    let now = 0;
    // 6 a minute, bursts of 3: a spent bucket takes 30 s to refill.
    const buckets = new KeyedTokenBuckets({ perMinute: 6, burst: 3 }, () => now);
    for (const key of ['a', 'b', 'c']) buckets.take(key);
    expect(buckets.size).toBe(3);
    // Less than a minute: no pruning, whatever their state.
    now = 59_999;
    buckets.take('d');
    expect(buckets.size).toBe(4);
    // A minute on: 'a', 'b', 'c' are full again and forgotten; 'd', spent just now, stays.
    now = 60_000;
    buckets.take('d');
    buckets.take('d');
    expect(buckets.size).toBe(1);
    expect(buckets.has('d')).toBe(false);
    now = 120_000;
    for (let i = 0; i < 3; i++) buckets.take('e');
    expect(buckets.size).toBe(1); // only 'e': 'd' refilled by now too
    expect(buckets.has('e')).toBe(false);
    // A forgotten key starts again with a full burst, which is what it had.
    expect([buckets.take('a'), buckets.take('a'), buckets.take('a'), buckets.take('a')]).toEqual([true, true, true, false]);
  });
});
