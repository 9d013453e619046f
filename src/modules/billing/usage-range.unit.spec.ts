import { ValidationError } from '../../common/errors';
import { parseInstant, resolveUsageRange } from './usage-range';

describe('parseInstant', () => {
  it.each([
    ['2026-05-01', '2026-05-01T00:00:00.000Z'],
    ['2026-05-01T12:30', '2026-05-01T12:30:00.000Z'],
    ['2026-05-01T12:30:15Z', '2026-05-01T12:30:15.000Z'],
    ['2026-05-01T12:30:15.123456Z', '2026-05-01T12:30:15.123Z'],
    ['2026-05-01T14:00:00+02:00', '2026-05-01T12:00:00.000Z'],
    ['2026-05-01T00:00:00-05:30', '2026-05-01T05:30:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
  ])('reads %s as %s', (text, iso) => {
    expect(parseInstant(text)?.toISOString()).toBe(iso);
  });

  it.each(['', 'yesterday', '2026-5-1', '2026-02-30', '2025-02-29', '2026-13-01', '2026-00-10', '2026-05-01T24:00:00Z',
    '2026-05-01T12:60Z', '2026-05-01T12:00:00+24:00', '2026-05-01 12:00:00', '1714564800', '2026-05-01T12:00:00.Z'])(
    'refuses %j',
    (text) => {
      expect(parseInstant(text)).toBeNull();
    },
  );
});

describe('resolveUsageRange', () => {
  const now = new Date('2026-05-17T09:15:00.000Z');
  const iso = (range: { from: Date; to: Date }) => ({ from: range.from.toISOString(), to: range.to.toISOString() });

  it('defaults to the start of the current UTC month until now', () => {
    expect(iso(resolveUsageRange({}, now))).toEqual({ from: '2026-05-01T00:00:00.000Z', to: '2026-05-17T09:15:00.000Z' });
  });

  it('takes a range of up to 366 days', () => {
    expect(iso(resolveUsageRange({ from: '2024-01-01', to: '2025-01-01' }, now))).toEqual({
      from: '2024-01-01T00:00:00.000Z',
      to: '2025-01-01T00:00:00.000Z',
    });
  });

  it.each([
    [{ from: '2026-05-02', to: '2026-05-02' }, /before to/],
    [{ from: '2026-05-03', to: '2026-05-02' }, /before to/],
    [{ from: '2026-06-01' }, /before to/],
    [{ to: '2026-04-30' }, /before to/],
    [{ from: '2024-01-01', to: '2025-01-01T00:00:00.001Z' }, /366 days/],
    [{ from: 'soon' }, /from must be an ISO-8601/],
    [{ to: '2026-02-30' }, /to must be an ISO-8601/],
  ])('refuses %j', (query, message) => {
    expect(() => resolveUsageRange(query, now)).toThrow(ValidationError);
    expect(() => resolveUsageRange(query, now)).toThrow(message);
  });
});
