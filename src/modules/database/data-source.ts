import type { ClientBase } from 'pg';
import { DataSource } from 'typeorm';
import { MIGRATIONS } from '../../../migrations';

/** TypeORM's data source: a connection pool and the migrations. `synchronize` is never on. */
export function createDataSource(url: string, poolSize: number, applicationName = 'runway'): DataSource {
  return new DataSource({
    type: 'postgres',
    url,
    applicationName,
    poolSize,
    synchronize: false,
    migrationsRun: false,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    migrationsTransactionMode: 'each',
    // Failed queries surface as errors to the caller; logging them here would print parameters (token hashes).
    logging: false,
    extra: {
      connectionTimeoutMillis: 10_000,
      // Every connection of the pool hears its own errors, always. The pool listens only while a
      // connection is idle, and a connection can be handed out and hear the server end it (a
      // restart, pg_terminate_backend) in the same read from the socket, before its new holder
      // listens: unheard, that 'error' ends the process. The holder's next query fails instead.
      onConnect: (client: ClientBase) => void client.on('error', () => undefined),
    },
  });
}
