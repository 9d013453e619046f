import { withServer } from './postgres';

/** Drops this run's template and any database a test file left behind. */
export default async function globalTeardown(): Promise<void> {
  const prefix = `runway_${process.pid}_`;
  await withServer(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`,
      [prefix],
    );
    for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
  });
}
