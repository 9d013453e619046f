import type { Sql } from './db';

/** Allocates the placeholders of a statement being composed, and says how to read the guard. */
export interface StatementParts {
  /** `$n` for `value`, numbered after everything the statement holds before it. */
  param(value: unknown): string;
  /**
   * A boolean SQL expression, true when the write must take effect: in the append's statement,
   * whether the events went in (a refused append writes nothing else either); standalone, `true`.
   */
  readonly guard: string;
}

/**
 * A write to an inline view, made in the same statement as the events it follows when it can be
 * (one round trip, and no transaction of its own: a single statement commits or fails whole), or
 * as a statement of its own inside the append's transaction when not. The SQL is a
 * data-modifying statement (INSERT/UPDATE, no RETURNING the caller needs) that must take effect
 * only where `parts.guard` holds; it allocates its placeholders in a fixed order (the text names
 * the prepared statement).
 */
export type InlineWrite = (parts: StatementParts) => string;

/** Placeholders for a statement that already holds `taken` of them. */
export class Placeholders {
  readonly values: unknown[];

  constructor(values: readonly unknown[] = []) {
    this.values = [...values];
  }

  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /** The writes as WITH items named `${prefix}0`, `${prefix}1`, ..., each taking effect where `guard` holds. */
  withItems(writes: readonly InlineWrite[], guard: string, prefix = 'inline_'): string {
    const parts: StatementParts = { param: (value) => this.param(value), guard };
    return writes.map((write, i) => `${prefix}${i} AS (${write(parts)})`).join(',\n');
  }
}

/** Runs the writes one statement each (in the caller's transaction), unguarded. */
export async function runInlineWrites(sql: Sql, writes: readonly InlineWrite[]): Promise<void> {
  for (const write of writes) {
    const placeholders = new Placeholders();
    const text = write({ param: (value) => placeholders.param(value), guard: 'true' });
    await sql.query(text, placeholders.values);
  }
}
