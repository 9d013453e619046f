import { ValidationError, invalidField } from '../../common/errors';

/** The longest range one usage request may cover. */
export const MAX_USAGE_RANGE_DAYS = 366;
const DAY_MS = 24 * 60 * 60 * 1000;

// Calendar date, optionally a time (minutes, seconds, fractions optional) and a zone.
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?$/;

/**
 * An ISO-8601 instant: a date (`2026-05-01`, UTC midnight) or a date and time with `Z` or an
 * offset (`2026-05-01T14:00:00+02:00`); a time without a zone is read as UTC, as every time in
 * the API is. Null for anything else, an impossible date (`2026-02-30`) included, which
 * `new Date()` would silently roll over.
 */
export function parseInstant(text: string): Date | null {
  const m = ISO_8601.exec(text);
  if (m === null) return null;
  const [year, month, day] = [m[1], m[2], m[3]].map(Number);
  const [hour, minute, second] = [m[4], m[5], m[6]].map((part) => Number(part ?? 0));
  const millis = Number((m[7] ?? '').padEnd(3, '0').slice(0, 3));
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return null;
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second, millis));
  // Date.UTC reads years 0-99 as 1900-1999; setUTCFullYear puts them back.
  date.setUTCFullYear(year);
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return null;
  const zone = m[8] ?? 'Z';
  if (zone === 'Z') return date;
  const [offsetHours, offsetMinutes] = zone.slice(1).split(':').map(Number);
  if (offsetHours > 23 || offsetMinutes > 59) return null;
  const sign = zone.startsWith('-') ? -1 : 1;
  return new Date(date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000);
}

/**
 * The range `[from, to)` a usage request asks for: `from` defaults to the start of the current
 * UTC month, `to` to now. Refuses unreadable times, an empty or reversed range, and ranges longer
 * than MAX_USAGE_RANGE_DAYS.
 */
export function resolveUsageRange(query: { from?: string; to?: string }, now: Date): { from: Date; to: Date } {
  const read = (field: 'from' | 'to', text: string | undefined, fallback: Date): Date => {
    if (text === undefined) return fallback;
    const at = parseInstant(text);
    if (at === null) {
      const message = `${field} must be an ISO-8601 date or time, such as 2026-05-01 or 2026-05-01T00:00:00Z`;
      throw invalidField(field, message);
    }
    return at;
  };
  const from = read('from', query.from, new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)));
  const to = read('to', query.to, now);
  if (from.getTime() >= to.getTime()) {
    const message = `from (${from.toISOString()}) must be before to (${to.toISOString()})`;
    throw new ValidationError(message, [{ field: 'from', message: 'must be before to' }]);
  }
  if (to.getTime() - from.getTime() > MAX_USAGE_RANGE_DAYS * DAY_MS) {
    const message = `the range may cover at most ${MAX_USAGE_RANGE_DAYS} days`;
    throw new ValidationError(message, [{ field: 'to', message: `at most ${MAX_USAGE_RANGE_DAYS} days after from` }]);
  }
  return { from, to };
}
