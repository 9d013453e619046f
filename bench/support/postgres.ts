import { Client, Pool, type PoolConfig } from 'pg';
import { processCpuMs } from './cpu';

/** The PostgreSQL server the benchmarks create their databases on. */
export const SERVER_URL = process.env.RUNWAY_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** SERVER_URL pointed at another database on the same server. */
export function withDatabase(dbName: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${dbName}`;
  return url.toString();
}

/**
 * A pool whose connections' errors are heard. A pool's `end()` resolves once its connections are
 * told to end, not once they have: a `DROP DATABASE ... WITH (FORCE)` right after it can still
 * terminate one, and PostgreSQL's message for that would be an unhandled 'error' event.
 */
export function benchPool(config: PoolConfig): Pool {
  const pool = new Pool(config);
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** The advisory lock a benchmark holds on its server while it runs (any 64-bit key of ours). */
const BENCHMARK_LOCK = 7_262_170_001;

/**
 * Runs `benchmark` once no other benchmark runs on this PostgreSQL server, holding the server for
 * it: a session advisory lock on a connection of its own, let go when the benchmark ends (or by
 * PostgreSQL when the connection does, however the process ends). The benchmarks' databases have
 * fixed names (rebuild keeps its generated history between runs) and each one's figures mean
 * something only on a server nothing else loads, so two runs at once (a full run and a smoke run,
 * say) take turns instead of dropping each other's databases. `npm run bench` runs each benchmark
 * in a process of its own, each taking the server in turn.
 */
export async function withBenchmarkServer<T>(benchmark: () => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: SERVER_URL, application_name: 'runway-bench-lock' });
  client.on('error', (error) => console.error(`benchmark lock connection: ${error.message}`));
  await client.connect();
  try {
    const { rows } = await client.query<{ held: boolean }>('SELECT pg_try_advisory_lock($1) AS held', [BENCHMARK_LOCK]);
    if (!rows[0].held) {
      console.log('another benchmark runs on this PostgreSQL server; waiting for it to finish');
      await client.query('SELECT pg_advisory_lock($1)', [BENCHMARK_LOCK]);
    }
    return await benchmark();
  } finally {
    await client.end().catch(() => undefined);
  }
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

/**
 * A database's cumulative activity counters, as PostgreSQL's statistics have them:
 * `pg_stat_database` (transactions committed and rolled back; rows inserted, updated and deleted
 * by queries on the database) and the sums of `n_tup_ins`, `n_tup_upd` (HOT updates included)
 * and `n_tup_del` over its `pg_stat_user_tables`. Row counts include rows of transactions that
 * rolled back: a write that was tried counts even if it did not stay.
 */
export interface DatabaseCounters {
  xactCommit: number;
  xactRollback: number;
  tupInserted: number;
  tupUpdated: number;
  tupDeleted: number;
  tablesInserted: number;
  tablesUpdated: number;
  tablesDeleted: number;
}

/**
 * Reads `DatabaseCounters` of one database, through one connection to that database (the
 * per-table statistics are only visible from inside it), one statement per read.
 *
 * Two things to know when comparing reads. PostgreSQL 15 backends publish their counts when they
 * go idle, at most once a second, and a backend that stays idle with counts still unpublished
 * publishes them 10 s later (PGSTAT_MIN_INTERVAL, PGSTAT_IDLE_INTERVAL): a read can miss what
 * happened in the last 10 s, so a caller that wants a window's whole effect reads 10 s after it.
 * And each read is itself a committed transaction in the database; `since()` takes those out.
 */
export class DatabaseCounterProbe {
  private reads = 0;

  private constructor(private readonly client: Client) {}

  static async open(dbName: string): Promise<DatabaseCounterProbe> {
    const client = new Client({ connectionString: withDatabase(dbName), application_name: 'runway-bench-counters' });
    await client.connect();
    return new DatabaseCounterProbe(client);
  }

  async read(): Promise<DatabaseCounters & { probeReads: number }> {
    const { rows } = await this.client.query<Record<keyof DatabaseCounters, string>>(
      `SELECT d.xact_commit AS "xactCommit", d.xact_rollback AS "xactRollback",
              d.tup_inserted AS "tupInserted", d.tup_updated AS "tupUpdated", d.tup_deleted AS "tupDeleted",
              t.ins AS "tablesInserted", t.upd AS "tablesUpdated", t.del AS "tablesDeleted"
         FROM pg_stat_database d,
              (SELECT COALESCE(sum(n_tup_ins), 0) AS ins, COALESCE(sum(n_tup_upd), 0) AS upd, COALESCE(sum(n_tup_del), 0) AS del
                 FROM pg_stat_user_tables) t
        WHERE d.datname = current_database()`,
    );
    const counters = Object.fromEntries(Object.entries(rows[0]).map(([name, value]) => [name, Number(value)])) as unknown as DatabaseCounters;
    // Reads before this one: their commits are what this probe added to xact_commit so far.
    return { ...counters, probeReads: this.reads++ };
  }

  /**
   * `after` minus `before`, counter by counter, less this probe's own commits in between. Exact
   * when reads are more than a second apart: the probe's backend then publishes each read's
   * commit as it goes idle after it, before the next read.
   */
  static since(before: DatabaseCounters & { probeReads: number }, after: DatabaseCounters & { probeReads: number }): DatabaseCounters {
    const delta = {} as Record<keyof DatabaseCounters, number>;
    for (const name of Object.keys(after) as (keyof DatabaseCounters | 'probeReads')[]) {
      if (name !== 'probeReads') delta[name] = after[name] - before[name];
    }
    delta.xactCommit -= after.probeReads - before.probeReads;
    return delta;
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

/**
 * Rows inserted, updated and deleted in `dbName` so far (pg_stat_database, read from the
 * maintenance database so the reads add nothing to `dbName`'s own counters).
 */
export async function rowsWritten(dbName: string): Promise<number> {
  const [row] = await onServer<{ n: string }>(`SELECT tup_inserted + tup_updated + tup_deleted AS n FROM pg_stat_database WHERE datname = $1`, [dbName]);
  return Number(row?.n ?? 0);
}

/**
 * Resolves once `dbName`'s row counters (`rowsWritten`) have not moved for `quietMs`, polled
 * every 250 ms; fails after `timeoutMs`. With `quietMs` over 10 s, every backend has published
 * what it wrote before (see DatabaseCounterProbe), so the writes of whatever came before are all
 * in the counters.
 */
export async function waitForNoWrites(dbName: string, quietMs: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = await rowsWritten(dbName);
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) throw new Error(`${dbName} still had rows written within ${quietMs} ms after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = await rowsWritten(dbName);
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
}
