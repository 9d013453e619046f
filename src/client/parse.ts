/**
 * Readers of command-line values: each takes the text as typed and returns the value the API
 * wants, or throws an ArgumentError saying what was expected. Pure, so they are unit tested.
 */

/** A value on the command line that cannot be read; the command exits 2 (usage). */
export class ArgumentError extends Error {
  override readonly name = 'ArgumentError';
}

/** `K=V` (the value may be empty or contain `=`) into `{...previous, K: V}`; repeatable. */
export function parseEnvPair(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = text.indexOf('=');
  if (at <= 0) throw new ArgumentError(`expected NAME=VALUE, got "${text}"`);
  const name = text.slice(0, at);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new ArgumentError(`"${name}" is not a variable name (letters, digits and _, not starting with a digit)`);
  }
  if (Object.prototype.hasOwnProperty.call(previous, name)) throw new ArgumentError(`${name} is given twice`);
  return { ...previous, [name]: text.slice(at + 1) };
}

/** For repeatable options: each occurrence appends its value. */
export function collect(value: string, previous: readonly string[] = []): string[] {
  return [...previous, value];
}

/** A whole number in [min, max]. */
export function parseInteger(text: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^[+-]?\d+$/.test(text.trim())) throw new ArgumentError(`expected a whole number, got "${text}"`);
  const value = Number(text.trim());
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new ArgumentError(max === Number.MAX_SAFE_INTEGER ? `expected a whole number of at least ${min}, got ${text}` : `expected a whole number from ${min} to ${max}, got ${text}`);
  }
  return value;
}

/** Seconds per day, hour, minute, second: the order of the duration's parts. */
const DURATION_FACTORS = [86_400, 3_600, 60, 1];

/**
 * Seconds, from a plain number of seconds (`900`) or a duration of whole units, largest first
 * (`90s`, `15m`, `1h30m`, `2d`).
 */
export function parseDurationSeconds(text: string): number {
  const trimmed = text.trim().toLowerCase();
  if (/^\d+$/.test(trimmed)) return parseInteger(trimmed, 1);
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(trimmed);
  if (trimmed === '' || match === null) throw new ArgumentError(`expected seconds or a duration such as 90s, 15m or 1h30m, got "${text}"`);
  const [, d, h, m, s] = match;
  const seconds = [d, h, m, s].reduce((sum, part, i) => sum + Number(part ?? 0) * DURATION_FACTORS[i], 0);
  if (seconds < 1 || !Number.isSafeInteger(seconds)) throw new ArgumentError(`expected a duration of at least 1s, got "${text}"`);
  return seconds;
}

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/** Bytes, from a number of bytes or a size with a unit: `32GiB`, `32Gi` (2^30), `500GB`, `500G` (10^9). */
export function parseBytes(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match?.[2].toLowerCase() ?? '';
  if (match === null || !(unit in BYTE_UNITS)) {
    throw new ArgumentError(`expected bytes or a size such as 32GiB or 500GB, got "${text}"`);
  }
  const bytes = Number(match[1]) * BYTE_UNITS[unit];
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new ArgumentError(`expected a whole number of bytes of at least 1, got "${text}" (${bytes})`);
  return bytes;
}

/**
 * `none` (no limit) or a whole number of at least 1. Not null for none: commander turns an option
 * parser's null into ''.
 */
export function parseLimit(text: string): number | 'none' {
  return text.trim().toLowerCase() === 'none' ? 'none' : parseInteger(text, 1);
}
