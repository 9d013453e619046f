import type { Sql } from './db';

/**
 * A write to an inline view that follows events, made in the statement that appends them when it
 * can (one round trip, and no transaction of its own: a statement commits or fails whole), or as
 * a statement of its own in the append's transaction when not.
 *
 * Its rows are JSON values, bound as one jsonb array, so the writes of several commands appended
 * together (a group commit: EventStore.appendEach) merge by `name` into one write of all their
 * rows, and the statement's text does not depend on how many there are. `sql` must take effect
 * only for the rows whose stream's event went in: `wentIn(expr)` is SQL that is true where the
 * stream named by the SQL expression `expr` (a uuid) got its event.
 */
export interface InlineWrite {
  /** Writes of the same name have the same `sql`: a batch merges their rows. */
  readonly name: string;
  readonly rows: readonly unknown[];
  /** A data-modifying statement (INSERT/UPDATE, no RETURNING that anyone reads), given the placeholder of the rows (jsonb). */
  readonly sql: (rows: string, wentIn: (streamId: string) => string) => string;
}

/** The writes with their rows merged by name, in the order each name first appears. */
export function mergeInlineWrites(writes: readonly InlineWrite[]): InlineWrite[] {
  const merged = new Map<string, { name: string; rows: unknown[]; sql: InlineWrite['sql'] }>();
  for (const write of writes) {
    const held = merged.get(write.name);
    if (held === undefined) merged.set(write.name, { name: write.name, rows: [...write.rows], sql: write.sql });
    else held.rows.push(...write.rows);
  }
  return [...merged.values()];
}

/** Placeholders for a statement that already holds some. */
export class Placeholders {
  readonly values: unknown[];

  constructor(values: readonly unknown[] = []) {
    this.values = [...values];
  }

  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /** The writes (merged by name) as WITH items named `${prefix}0`, `${prefix}1`, ..., each taking effect where `wentIn` says. */
  withItems(writes: readonly InlineWrite[], wentIn: (streamId: string) => string, prefix = 'inline_'): string {
    return mergeInlineWrites(writes)
      .map((write, i) => `${prefix}${i} AS (${write.sql(`${this.param(JSON.stringify(write.rows))}::jsonb`, wentIn)})`)
      .join(',\n');
  }
}

/** Runs the writes (merged by name) one statement each, in the caller's transaction, for every row. */
export async function runInlineWrites(sql: Sql, writes: readonly InlineWrite[]): Promise<void> {
  for (const write of mergeInlineWrites(writes)) {
    if (write.rows.length === 0) continue;
    await sql.query(write.sql('$1::jsonb', () => 'true'), [JSON.stringify(write.rows)]);
  }
}
