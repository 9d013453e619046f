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
    extra: { connectionTimeoutMillis: 10_000 },
  });
}
