import type { DataSource, QueryRunner } from 'typeorm';
import { QueryFailedError } from 'typeorm';

/**
 * What repositories write SQL against: one open connection, inside a transaction or not.
 * A thin face over TypeORM's query runner so repositories read as plain SQL and get rows and
 * row counts the same way for every statement.
 */
export interface Sql {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResultRows<T>>;
}

export interface QueryResultRows<T> {
  rows: T[];
  rowCount: number;
}

class RunnerSql implements Sql {
  constructor(private readonly runner: QueryRunner) {}

  async query<T>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    const result = await this.runner.query(text, params as unknown[], true);
    return { rows: (result.records ?? []) as T[], rowCount: result.affected ?? 0 };
  }
}

/** The database: one-off statements, and transactions that commit or roll back as a whole. */
export class Db implements Sql {
  constructor(readonly dataSource: DataSource) {}

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    const runner = this.dataSource.createQueryRunner();
    try {
      return await new RunnerSql(runner).query<T>(text, params);
    } finally {
      await runner.release();
    }
  }

  /** Runs `work` in one READ COMMITTED transaction; any throw rolls it back and is rethrown. */
  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    const runner = this.dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.startTransaction();
      try {
        const result = await work(new RunnerSql(runner));
        await runner.commitTransaction();
        return result;
      } catch (error) {
        if (runner.isTransactionActive) await runner.rollbackTransaction();
        throw error;
      }
    } finally {
      await runner.release();
    }
  }
}

/** The PostgreSQL error code (SQLSTATE) of a failed query, if it is one. */
export function sqlState(error: unknown): string | undefined {
  if (error instanceof QueryFailedError) {
    return (error.driverError as { code?: string } | undefined)?.code;
  }
  return undefined;
}

/** The constraint a failed query violated, if any. */
export function violatedConstraint(error: unknown): string | undefined {
  if (error instanceof QueryFailedError) {
    return (error.driverError as { constraint?: string } | undefined)?.constraint;
  }
  return undefined;
}

export const UNIQUE_VIOLATION = '23505';
