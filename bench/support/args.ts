/**
 * Command-line flags for the benchmarks: each one declares its flags and their kinds, and gets
 * back the values given (absent flags stay undefined, so the benchmark applies its defaults).
 * An unknown flag, a missing value or a malformed one stops the benchmark with a message that
 * lists the flags it knows.
 */

/**
 * - `switch`: present or not (`--smoke`);
 * - `count`: a positive whole number (`--runs 3`);
 * - `whole`: a whole number, 0 or more (`--settle 0`);
 * - `number`: a positive number (`--seconds 2.5`);
 * - `list`: comma-separated words, empty ones dropped (`--rates 1000,5000,max`);
 * - `text`: any one value (`--json out.json`).
 */
export type FlagKind = 'switch' | 'count' | 'whole' | 'number' | 'list' | 'text';

type FlagValue<K extends FlagKind> = K extends 'switch' ? boolean : K extends 'count' | 'whole' | 'number' ? number : K extends 'list' ? string[] : string;

export type Flags<S extends Record<string, FlagKind>> = { [F in keyof S]?: FlagValue<S[F]> };

/**
 * The flags every benchmark takes: `npm run bench` (bench/run.ts) passes `--json FILE` to each,
 * and whatever the caller gave it (`--smoke`, `--runs N`, `--seconds S`).
 */
export const COMMON_FLAGS = { '--smoke': 'switch', '--runs': 'count', '--seconds': 'number', '--json': 'text' } as const satisfies Record<string, FlagKind>;

export function parseFlags<S extends Record<string, FlagKind>>(argv: readonly string[], spec: S): Flags<S> {
  const known = () => Object.entries(spec).map(([flag, kind]) => (kind === 'switch' ? flag : `${flag} ${kind.toUpperCase()}`)).join(', ');
  const given: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const kind = Object.hasOwn(spec, flag) ? spec[flag] : undefined;
    if (kind === undefined) throw new Error(`unknown flag ${flag} (known: ${known()})`);
    if (kind === 'switch') {
      given[flag] = true;
      continue;
    }
    const text = argv[++i];
    if (text === undefined) throw new Error(`${flag} needs a value`);
    if (kind === 'count' || kind === 'number') {
      const n = Number(text);
      if (!Number.isFinite(n) || n <= 0 || (kind === 'count' && !Number.isInteger(n))) {
        throw new Error(`${flag} needs a positive ${kind === 'count' ? 'whole number' : 'number'}, got ${text}`);
      }
      given[flag] = n;
    } else if (kind === 'whole') {
      const n = Number(text);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} needs a whole number (0 or more), got ${text}`);
      given[flag] = n;
    } else if (kind === 'list') {
      given[flag] = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
    } else {
      given[flag] = text;
    }
  }
  return given as Flags<S>;
}

/** The names in `given`, each one of `known` (in `known`'s order), for `list` flags that pick from a set. */
export function pick<T extends string>(flag: string, given: readonly string[], known: readonly T[]): T[] {
  for (const name of given) if (!(known as readonly string[]).includes(name)) throw new Error(`${flag}: unknown ${name} (known: ${known.join(', ')})`);
  return known.filter((name) => given.includes(name));
}

/** A comma-separated list of positive whole numbers (`--levels 1000,5000`), for `list` flags. */
export function counts(flag: string, values: readonly string[]): number[] {
  return values.map((text) => {
    const n = Number(text.replace(/_/g, ''));
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} needs positive whole numbers, got ${text}`);
    return n;
  });
}
