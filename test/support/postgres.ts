import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The PostgreSQL server tests run against (a maintenance database on it). */
export const SERVER_URL = process.env.RUNWAY_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function databaseUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Runs `work` with a client on the maintenance database. */
export async function withServer<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** The migrated template of this test run (set by the global setup). */
export function templateName(): string {
  const name = process.env.RUNWAY_TEST_TEMPLATE;
  if (!name) throw new Error('RUNWAY_TEST_TEMPLATE is not set: run integration tests through jest (global setup)');
  return name;
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** A database of its own for one test file, cloned from the migrated template. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const template = templateName();
  const name = `${template.replace(/_template$/, '')}_${randomBytes(4).toString('hex')}`;
  await withServer((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  return {
    name,
    url: databaseUrl(name),
    drop: () => withServer((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/**
 * A write transaction left open in another database of the test server (its maintenance
 * database), as a migration or a batch job there would hold one: it has a transaction id, older
 * than any this test writes next. `end` commits it and closes its connection.
 */
export async function transactionElsewhere(): Promise<{ xid: string; end(): Promise<void> }> {
  const client = new Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
    return {
      xid: rows[0].xid,
      end: async () => {
        try {
          await client.query('COMMIT');
        } finally {
          await client.end();
        }
      },
    };
  } catch (error) {
    await client.end();
    throw error;
  }
}
