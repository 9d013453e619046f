import { type ClientBase, Pool, type PoolClient } from 'pg';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../../migrations';

/** The backend process ids of each pool's open connections (createPool keeps them). */
const backendsOf = new WeakMap<Pool, ReadonlySet<number>>();

/**
 * The PostgreSQL backends of `pool`'s open connections: a notification one of them sent is this
 * process's own (LogNotifications leaves those out; the process rang for its commits itself).
 */
export function poolBackends(pool: Pool): ReadonlySet<number> {
  return backendsOf.get(pool) ?? new Set();
}

/** Runway's connection pool (node-postgres): every statement, and TypeORM's migrations, go through it. */
export function createPool(url: string, poolSize: number, applicationName = 'runway'): Pool {
  const backends = new Set<number>();
  const pool = new Pool({
    connectionString: url,
    application_name: applicationName,
    max: poolSize,
    connectionTimeoutMillis: 10_000,
    // Runway's statements are prepared (db.ts `statement`) and their best plans do not depend on
    // the values bound: plan each once per connection, not at every execution. Left to itself,
    // PostgreSQL planned the hot statements anew at every call (custom plans): the claim's
    // candidates cost 0.28 ms of planning for 0.09 ms of running. A cached plan is made again
    // when its tables' statistics change (ANALYZE, autovacuum), so plans follow tables as they
    // grow. The exception is a table filled inside long transactions before any ANALYZE sees
    // it: the rebuild's copies, whose transactions go back to custom plans (rebuild.ts).
    options: '-c plan_cache_mode=force_generic_plan',
    // Every connection of the pool hears its own errors, always. The pool listens only while a
    // connection is idle, and a connection can be handed out and hear the server end it (a
    // restart, pg_terminate_backend) in the same read from the socket, before its new holder
    // listens: unheard, that 'error' ends the process. The holder's next query fails instead.
    onConnect: (client: ClientBase) => {
      client.on('error', () => undefined);
      const pid = (client as ClientBase & { processID?: number | null }).processID;
      if (typeof pid === 'number') {
        backends.add(pid);
        client.once('end', () => backends.delete(pid));
      }
    },
  });
  backendsOf.set(pool, backends);
  // An idle connection the server ended: the pool drops it and opens another when one is needed.
  pool.on('error', () => undefined);
  return pool;
}

/**
 * TypeORM's data source, for the migrations (`synchronize` is never on), on Runway's pool.
 * TypeORM takes the node-postgres module it uses as its `driver` option; it is given one whose
 * `Pool` lends TypeORM connections from `pool` and leaves `pool` open when the data source is
 * destroyed, so the process has one pool (the embedded server takes one connection at a time).
 */
export function createDataSource(pool: Pool): DataSource {
  return new DataSource({
    type: 'postgres',
    driver: { Pool: lendingPool(pool) },
    synchronize: false,
    migrationsRun: false,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    migrationsTransactionMode: 'each',
    // Failed queries surface as errors to the caller; logging them here would print parameters (token hashes).
    logging: false,
  });
}

type Lend = (error: Error | undefined, client: PoolClient | undefined, release: (error?: Error | boolean) => void) => void;

/** The part of node-postgres's `Pool` that TypeORM uses (connect, on, end), on a pool it does not own. */
function lendingPool(pool: Pool) {
  return class LendingPool {
    connect(lend: Lend): void {
      pool.connect(lend);
    }

    /** TypeORM's listener for the pool's errors; the pool has its own (createPool). */
    on(): this {
      return this;
    }

    /** The data source is destroyed; the pool stays open for its owner to end. */
    end(done?: (error?: Error) => void): void {
      done?.();
    }
  };
}
