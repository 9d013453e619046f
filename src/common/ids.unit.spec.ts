import { ManualClock } from './clock';
import { UUID_PATTERN, UuidV7Generator } from './ids';

const at = '2026-03-01T10:00:00.000Z';
const msOf = (id: string) => Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16);

describe('UuidV7Generator', () => {
  it('makes version-7, variant-10 UUIDs that start with the clock’s milliseconds', () => {
    const clock = new ManualClock(at);
    const id = new UuidV7Generator(clock).next();
    expect(id).toMatch(UUID_PATTERN);
    expect(id[14]).toBe('7');
    expect(['8', '9', 'a', 'b']).toContain(id[19]);
    expect(msOf(id)).toBe(Date.parse(at));
  });

  it('sorts ids in the order it made them, within one millisecond and across', () => {
    const clock = new ManualClock(at);
    const ids = new UuidV7Generator(clock);
    const made: string[] = [];
    for (let i = 0; i < 2000; i++) {
      made.push(ids.next());
      if (i % 500 === 499) clock.advance(1);
    }
    expect(new Set(made).size).toBe(made.length);
    expect([...made].sort()).toEqual(made);
  });

  it('keeps counting from the last id when the clock steps back', () => {
    const clock = new ManualClock(at);
    const ids = new UuidV7Generator(clock);
    const first = ids.next();
    clock.set(new Date(Date.parse(at) - 60_000));
    const second = ids.next();
    expect(second > first).toBe(true);
    expect(msOf(second)).toBe(Date.parse(at));
  });

  it('moves to the next millisecond when a millisecond’s count runs out', () => {
    const clock = new ManualClock(at);
    const ids = new UuidV7Generator(clock);
    const first = ids.next();
    (ids as unknown as { counter: bigint }).counter = (1n << 74n) - 1n;
    const second = ids.next();
    expect(second > first).toBe(true);
    expect(msOf(second)).toBe(Date.parse(at) + 1);
    expect(second.replace(/-/g, '').slice(12)).toBe('7000' + '8000000000000000');
  });
});
