import { Client } from 'pg';
import { processCpuMs } from './cpu';

/** The PostgreSQL server the benchmarks create their databases on. */
export const SERVER_URL = process.env.RUNWAY_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** SERVER_URL pointed at another database on the same server. */
export function withDatabase(dbName: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${dbName}`;
  return url.toString();
}

/** Runs one statement on the server's maintenance database (SERVER_URL). */
export async function onServer<T extends Record<string, unknown> = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: SERVER_URL, application_name: 'runway-bench' });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** Drops `dbName` if it exists (closing its connections) and creates it empty; returns its URL. */
export async function freshDatabase(dbName: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(dbName)) throw new Error(`not a plain database name: ${dbName}`);
  await onServer(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await onServer(`CREATE DATABASE ${dbName}`);
  return withDatabase(dbName);
}

export async function dropDatabase(dbName: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(dbName)) throw new Error(`not a plain database name: ${dbName}`);
  await onServer(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
}

/** What moves every figure: the server version and whether each commit waits for its WAL flush. */
export async function serverSettings(): Promise<{ version: string; synchronousCommit: string; maxConnections: number }> {
  const [row] = await onServer<{ version: string; sync: string; max: string }>(
    `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync,
            current_setting('max_connections') AS max`,
  );
  return { version: row.version, synchronousCommit: row.sync, maxConnections: Number(row.max) };
}

/** What a database's backends did during a run. */
export interface DatabaseUsage {
  /** Most connections open to the database at once (every backend, idle ones too). */
  peakConnections: number;
  /** CPU time the database's backends used (from /proc; 0 where PostgreSQL runs elsewhere), ms. */
  backendCpuMs: number;
}

/**
 * Samples the backends of `dbName` every `everyMs` until stopped: how many there are, and the CPU
 * each has used (a backend seen first during the run counts from 0). Backends of connections
 * whose application_name starts with `runway-bench` (the benchmark's own checks) are left out.
 * One connection of its own, to the maintenance database.
 */
export async function databaseSampler(dbName: string, everyMs = 100): Promise<{ stop(): Promise<DatabaseUsage> }> {
  const client = new Client({ connectionString: SERVER_URL, application_name: 'runway-bench-sampler' });
  await client.connect();
  const pidsNow = async () =>
    (
      await client.query<{ pid: number; mine: boolean }>(
        `SELECT pid, COALESCE(application_name, '') LIKE 'runway-bench%' AS mine FROM pg_stat_activity WHERE datname = $1`,
        [dbName],
      )
    ).rows;
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let peak = 0;
  const sample = async (initial: boolean) => {
    const rows = (await pidsNow().catch(() => [])).filter((row) => !row.mine);
    peak = Math.max(peak, rows.length);
    for (const { pid } of rows) {
      const cpu = processCpuMs(pid);
      if (cpu === null) continue;
      if (!first.has(pid)) first.set(pid, initial ? cpu : 0);
      last.set(pid, cpu);
    }
  };
  await sample(true);
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, everyMs));
      await sample(false);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await sample(false);
      await client.end();
      let backendCpuMs = 0;
      for (const [pid, cpu] of last) backendCpuMs += cpu - (first.get(pid) ?? 0);
      return { peakConnections: peak, backendCpuMs };
    },
  };
}
