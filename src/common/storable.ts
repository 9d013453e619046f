/**
 * What PostgreSQL can store of a client's JSON: `jsonb` and `text` refuse U+0000 and lone UTF-16
 * surrogates (which have no UTF-8 form), and deeply nested values break parsers and validators
 * (class-transformer recurses). Every JSON body and runner frame is checked here once, at the edge,
 * so such input is refused as the client's mistake instead of failing in the database.
 *
 * No dependencies: the API, the gateway and the runner agent may all import it.
 */

/** The most containers (objects and arrays) one JSON value may nest. */
export const MAX_JSON_DEPTH = 64;

/** What is wrong with a value, and where: `cmd[2]`, `env.HOME`, or `` for the value itself. */
export interface Unstorable {
  field: string;
  message: string;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const wellFormed: (text: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (text) => (text as unknown as { isWellFormed(): boolean }).isWellFormed()
    : (text) => !LONE_SURROGATE.test(text);

/** Why a string cannot be stored as text, or null when it can. */
export function textProblem(text: string): string | null {
  if (text.includes('\u0000')) return 'contains a NUL character (U+0000)';
  if (!wellFormed(text)) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  return null;
}

/** `text` with NUL and lone surrogates replaced by U+FFFD, to name a field in an answer. */
export function printable(text: string): string {
  const replaced = text.replaceAll('\u0000', '\uFFFD');
  return wellFormed(replaced) ? replaced : Array.from(replaced, (c) => (textProblem(c) === null ? c : '\uFFFD')).join('');
}

const child = (field: string, key: string) => (field === '' ? key : `${field}.${key}`);

/**
 * The first thing in a parsed JSON value that cannot be stored: a string or an object key with
 * NUL or a lone surrogate, or nesting deeper than `maxDepth`. Null when all of it can.
 */
export function findUnstorable(value: unknown, field = '', maxDepth = MAX_JSON_DEPTH): Unstorable | null {
  return walk(value, field, maxDepth, maxDepth);
}

function walk(value: unknown, field: string, depthLeft: number, maxDepth: number): Unstorable | null {
  if (typeof value === 'string') {
    const problem = textProblem(value);
    return problem === null ? null : { field, message: `${field || 'the value'} ${problem}` };
  }
  if (value === null || typeof value !== 'object') return null;
  if (depthLeft <= 0) return { field, message: `${field || 'the value'} is nested deeper than ${maxDepth} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = walk(value[i], `${field}[${i}]`, depthLeft - 1, maxDepth);
      if (found !== null) return found;
    }
    return null;
  }
  for (const key of Object.keys(value)) {
    const keyProblem = textProblem(key);
    if (keyProblem !== null) {
      const named = child(field, printable(key));
      return { field: named, message: `the field name ${JSON.stringify(named)} ${keyProblem}` };
    }
    const found = walk((value as Record<string, unknown>)[key], child(field, key), depthLeft - 1, maxDepth);
    if (found !== null) return found;
  }
  return null;
}
