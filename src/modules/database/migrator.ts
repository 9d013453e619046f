import { Client } from 'pg';
import type { DataSource } from 'typeorm';

/** An arbitrary constant: the advisory lock that makes concurrent migrators take turns. */
const MIGRATION_LOCK = 7_236_531_001;

/**
 * Applies pending migrations. Several instances starting at once take turns on a session-level
 * advisory lock held on a connection of its own; the ones that wait find nothing left to do.
 */
export async function migrate(dataSource: DataSource, url: string, exclusiveConnection: boolean): Promise<string[]> {
  if (!exclusiveConnection) {
    // The embedded server has one connection and one process: nobody to race with.
    return (await dataSource.runMigrations({ transaction: 'each' })).map((m) => m.name);
  }
  const lock = new Client({ connectionString: url, application_name: 'runway-migrate' });
  // A lock connection that drops fails the migration with its error, not the process.
  let dropped: Error | null = null;
  lock.on('error', (error) => (dropped = error));
  await lock.connect();
  try {
    await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    const applied = (await dataSource.runMigrations({ transaction: 'each' })).map((m) => m.name);
    if (dropped !== null) throw new Error(`the migration lock's connection dropped: ${(dropped as Error).message}`);
    return applied;
  } finally {
    await lock.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await lock.end().catch(() => undefined);
  }
}
