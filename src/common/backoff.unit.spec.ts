import { Backoff } from './backoff';

describe('Backoff (exponential, full jitter)', () => {
  it('grows from the minimum to the maximum and never leaves [min, ceiling]', () => {
    const highest = new Backoff(250, 30_000, () => 1);
    expect(Array.from({ length: 10 }, () => highest.next())).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
    const lowest = new Backoff(250, 30_000, () => 0);
    expect(Array.from({ length: 5 }, () => lowest.next())).toEqual([250, 250, 250, 250, 250]);
  });

  it('spreads delays uniformly between the minimum and the ceiling', () => {
    const half = new Backoff(100, 10_000, () => 0.5);
    expect([half.next(), half.next(), half.next()]).toEqual([150, 250, 450]);
  });

  it('starts over after a reset', () => {
    const backoff = new Backoff(250, 30_000, () => 1);
    backoff.next();
    backoff.next();
    expect(backoff.failures).toBe(2);
    backoff.reset();
    expect(backoff.next()).toBe(500);
  });

  it('does not overflow after very many failures', () => {
    const backoff = new Backoff(250, 30_000, () => 1);
    for (let i = 0; i < 10_000; i++) backoff.next();
    expect(backoff.next()).toBe(30_000);
  });

  it('refuses nonsense bounds', () => {
    expect(() => new Backoff(0, 10)).toThrow(RangeError);
    expect(() => new Backoff(100, 10)).toThrow(RangeError);
  });
});
