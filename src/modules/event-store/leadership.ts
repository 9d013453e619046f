import { Client, DatabaseError } from 'pg';
import { type Db, type QueryResultRows, type Sql, statement } from '../database/db';

/** Being the one instance that does some work, for as long as `lost` stays false. */
export interface LeaderSession {
  /** SQL on the connection that holds leadership: once it fails, leadership may be gone. */
  readonly sql: Sql;
  readonly lost: boolean;
  /** Runs `work` in one transaction on that connection. */
  transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T>;
  release(): Promise<void>;
}

export interface Leadership {
  /** Tries once to become the leader; null when another instance is. */
  acquire(): Promise<LeaderSession | null>;
}

/** The advisory lock class (the first key) of leadership locks; the second key hashes the name. */
export const LEADERSHIP_LOCK_CLASS = 0x52454c59;

/** SQL on the lock's connection. A failure that is not PostgreSQL answering (a timeout, a reset) breaks the session. */
class ClientSql implements Sql {
  constructor(
    private readonly client: Client,
    private readonly broken: () => void,
  ) {}

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    try {
      const result = await this.client.query(statement(text, params));
      return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      // The connection's state is unknown, and with it whether the lock is still held.
      if (!(error instanceof DatabaseError)) this.broken();
      throw error;
    }
  }
}

class AdvisoryLockSession implements LeaderSession {
  readonly sql: Sql;
  private dropped = false;

  constructor(
    private readonly client: Client,
    private readonly name: string,
  ) {
    this.sql = new ClientSql(client, () => this.drop());
  }

  get lost(): boolean {
    return this.dropped;
  }

  async transaction<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    await this.sql.query('BEGIN');
    try {
      const result = await work(this.sql);
      await this.sql.query('COMMIT');
      return result;
    } catch (error) {
      await this.sql.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  drop(): void {
    this.dropped = true;
  }

  async release(): Promise<void> {
    if (!this.dropped) {
      await this.client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [LEADERSHIP_LOCK_CLASS, this.name]).catch(() => undefined);
    }
    this.dropped = true;
    await this.client.end().catch(() => undefined);
  }
}

/**
 * Leadership across instances: a session-level `pg_try_advisory_lock` held on a connection of
 * its own (not the pool's). PostgreSQL frees the lock when that connection ends, so a crashed or
 * cut-off leader lets another take over; the leader notices the same loss because its own work
 * goes through `session.sql`, which then fails.
 */
export class AdvisoryLockLeadership implements Leadership {
  constructor(
    private readonly url: string,
    private readonly name: string,
  ) {}

  async acquire(): Promise<LeaderSession | null> {
    const client = new Client({
      connectionString: this.url,
      application_name: 'runway-leader',
      keepAlive: true,
      connectionTimeoutMillis: 10_000,
      // A connection that stops answering must not hang the leader: its queries fail instead.
      query_timeout: 30_000,
    });
    const session = new AdvisoryLockSession(client, this.name);
    // Without a listener, a dropped idle connection would be an uncaught error.
    client.on('error', () => session.drop());
    client.on('end', () => session.drop());
    let locked = false;
    try {
      await client.connect();
      const result = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked', [
        LEADERSHIP_LOCK_CLASS,
        this.name,
      ]);
      locked = result.rows[0]?.locked === true;
    } finally {
      if (!locked) await client.end().catch(() => undefined);
    }
    return locked ? session : null;
  }
}

/**
 * Leadership without contention, for the embedded database: it serves one connection to one
 * process, so there is nobody to contend with (and no second connection to hold a lock on).
 */
export class SoleLeadership implements Leadership {
  constructor(private readonly db: Db) {}

  async acquire(): Promise<LeaderSession> {
    return { sql: this.db, lost: false, transaction: (work) => this.db.transaction(work), release: async () => undefined };
  }
}
