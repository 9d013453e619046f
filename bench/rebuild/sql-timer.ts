import { Db, type QueryResultRows, type Sql } from '#src/modules/database/db';

export interface StatementStats {
  /** The statement, white space folded, cut to 100 characters. */
  statement: string;
  calls: number;
  ms: number;
}

/**
 * A `Db` that times every statement sent through it (and through its transactions), grouped by
 * statement text: where a replay's wall time goes, on the database side. Only for `--profile`:
 * the timing itself costs a little per statement.
 */
export class TimedDb extends Db {
  private readonly stats = new Map<string, StatementStats>();

  constructor(inner: Db) {
    super(inner.pool);
  }

  override query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    return this.timed(text, () => super.query<T>(text, params));
  }

  override transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    return super.transaction((tx) => work({ query: (text, params) => this.timed(text, () => tx.query(text, params)) }));
  }

  /** Every statement, most time first. */
  report(): StatementStats[] {
    return [...this.stats.values()].sort((a, b) => b.ms - a.ms);
  }

  private async timed<R>(text: string, run: () => Promise<R>): Promise<R> {
    const started = performance.now();
    try {
      return await run();
    } finally {
      const statement = text.replace(/\s+/g, ' ').trim().slice(0, 100);
      const entry = this.stats.get(statement) ?? { statement, calls: 0, ms: 0 };
      entry.calls++;
      entry.ms += performance.now() - started;
      this.stats.set(statement, entry);
    }
  }
}
