import { Database } from '../../src/modules/database/database';
import { databaseUrl, withServer } from './postgres';

/**
 * Creates this run's migrated template database; every integration test file clones it, so
 * files run in parallel on databases of their own. Named after the run's process, so two runs on
 * one server do not collide.
 */
export default async function globalSetup(): Promise<void> {
  const template = `runway_${process.pid}_template`;
  await withServer(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${template}"`);
  });
  const database = await Database.open({ databaseUrl: databaseUrl(template), databasePoolSize: 2, dataDir: '' });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  process.env.RUNWAY_TEST_TEMPLATE = template;
}
