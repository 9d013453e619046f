import { createHash } from 'node:crypto';
import { DatabaseError, type Pool, type PoolClient, type QueryConfig } from 'pg';
import { QueryFailedError } from 'typeorm';
import { UnavailableError } from '../../common/errors';

/**
 * What repositories write SQL against: one open connection, inside a transaction or not.
 * Repositories read as plain SQL and get rows and row counts the same way for every statement.
 */
export interface Sql {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResultRows<T>>;
}

export interface QueryResultRows<T> {
  rows: T[];
  rowCount: number;
}

/** How many distinct statements one process prepares at most (each connection keeps its own). */
const MAX_PREPARED = 500;
const preparedNames = new Map<string, string>();

/**
 * The statement as node-postgres takes it. A statement with parameters is prepared: named after
 * its text, so each connection parses and plans it once and afterwards only binds and executes
 * it (PostgreSQL keeps the plan, or re-plans per call where the parameters' values matter).
 * Statements without parameters go as simple queries, so they may hold several statements.
 * The text is all that names a statement, so two call sites of one text share it; past
 * MAX_PREPARED distinct texts (generated SQL) the rest go unprepared.
 */
export function statement(text: string, params: readonly unknown[]): QueryConfig {
  if (params.length === 0) return { text };
  let name = preparedNames.get(text);
  if (name === undefined && preparedNames.size < MAX_PREPARED) {
    name = `runway_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    preparedNames.set(text, name);
  }
  return { name, text, values: params as unknown[] };
}

/** SQL on one pooled connection, the transaction's. */
class ClientSql implements Sql {
  constructor(private readonly client: PoolClient) {}

  async query<T>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    try {
      const result = await this.client.query(statement(text, params));
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw unavailableOr(error);
    }
  }
}

/** SQLSTATE classes and codes that say the server, not the statement, failed. */
const UNAVAILABLE_STATES = /^(08|53|57P0[1-4]|58)/;
/** Node's socket errors and node-postgres's own messages for a connection that is gone or never came. */
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
  'Cannot use a pool after calling end',
  'Query read timeout',
  'the database is not open',
];

/**
 * Whether `error` means the database could not be reached or dropped the connection (it is down,
 * restarting, out of connections), as opposed to a statement it refused. Such a failure changed
 * nothing that committed and is worth retrying later.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (error instanceof UnavailableError) return true;
  if (error instanceof DatabaseError) return error.code !== undefined && UNAVAILABLE_STATES.test(error.code);
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && UNAVAILABLE_ERRNOS.has(code)) return true;
  if (error instanceof AggregateError && error.errors.some(isDatabaseUnavailable)) return true;
  return UNAVAILABLE_MESSAGES.some((text) => error.message.includes(text));
}

/** The error as callers see it: an `UnavailableError` (503) when the database is unreachable. */
function unavailableOr(error: unknown): unknown {
  if (error instanceof UnavailableError || !isDatabaseUnavailable(error)) return error;
  return new UnavailableError('the database is not available; try again shortly', 5, { cause: error });
}

/**
 * The database: one-off statements, and transactions that commit or roll back as a whole.
 * Straight on node-postgres's pool (createPool; TypeORM keeps the migrations, on the same pool):
 * a TypeORM query runner per statement cost as much JavaScript as the statement's own round trip.
 */
export class Db implements Sql {
  constructor(readonly pool: Pool) {}

  /** A failure to reach the database is thrown as `UnavailableError`; others as they come. */
  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    try {
      const result = await this.pool.query(statement(text, params));
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      throw unavailableOr(error);
    }
  }

  /**
   * Runs `work` in one READ COMMITTED transaction; any throw rolls it back and is rethrown (a
   * failure to reach the database as `UnavailableError`).
   */
  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw unavailableOr(error);
    }
    // A connection that drops while held here (the server restarts, the backend is terminated)
    // emits 'error' to the listener every pooled connection has (createPool): the query
    // in flight fails with it, and the connection is released as broken below.
    // A connection that could not even roll back (reset, timed out) is dropped, not reused.
    let broken: Error | undefined;
    try {
      await client.query('BEGIN').catch((error: unknown) => {
        if (!(error instanceof DatabaseError)) broken = error instanceof Error ? error : new Error(String(error));
        throw error;
      });
      try {
        const result = await work(new ClientSql(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
        throw unavailableOr(error);
      }
    } catch (error) {
      throw unavailableOr(error);
    } finally {
      client.release(broken);
    }
  }
}

function driverError(error: unknown): { code?: string; constraint?: string } | undefined {
  if (error instanceof DatabaseError) return error;
  if (error instanceof QueryFailedError) return error.driverError as { code?: string; constraint?: string } | undefined;
  return undefined;
}

/** The PostgreSQL error code (SQLSTATE) of a failed query, if it is one. */
export function sqlState(error: unknown): string | undefined {
  return driverError(error)?.code;
}

/** The constraint a failed query violated, if any. */
export function violatedConstraint(error: unknown): string | undefined {
  return driverError(error)?.constraint;
}

export const UNIQUE_VIOLATION = '23505';
