/**
 * Append throughput: events per second through EventStore.append against plain
 * `BEGIN; INSERT one row; COMMIT` per second from node-postgres, with 1 and 8 concurrent
 * writers, in one process on one database. See bench/README.md for how to read the ratio.
 *
 *   npm run build && npm run build:bench && node dist-bench/append/append.bench.js [--smoke] [--runs N] [--seconds S] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import type { Pool } from 'pg';
import { COMMON_FLAGS, parseFlags } from '../support/args';
import { benchPool, onServer, withDatabase, withBenchmarkServer } from '../support/postgres';
import { type Provenance, collectProvenance, provenanceLine } from '../support/provenance';
import { median, percentile, printTable } from '../support/stats';
import { SystemClock } from '#src/common/clock';
import { UuidV7Generator } from '#src/common/ids';
import { type DomainEvent, type EventMetadata, GENESIS_HASH } from '#src/events/envelope';
import { Database } from '#src/modules/database/database';
import { EventStore } from '#src/modules/event-store/event-store';

const BENCH_DB = 'runway_bench_append';
const WRITER_COUNTS = [1, 8] as const;
// One connection more than the most writers, so a writer never waits for the pool.
const POOL_SIZE = Math.max(...WRITER_COUNTS) + 1;

interface Options {
  runs: number;
  seconds: number;
  json: string | null;
  smoke: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const flags = parseFlags(argv, COMMON_FLAGS);
  // --smoke wins over --runs/--seconds: CI must stay tiny whatever else is passed.
  if (flags['--smoke']) return { runs: 1, seconds: 0.3, json: flags['--json'] ?? null, smoke: true };
  return { runs: flags['--runs'] ?? 3, seconds: flags['--seconds'] ?? 3, json: flags['--json'] ?? null, smoke: false };
}

/** One timed run of one kind of writer: what it did and how long each operation took. */
interface RunResult {
  ops: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

/** Performs one operation for writer `w`; a writer's calls never overlap. */
type Operation = (w: number) => Promise<void>;

/** Runs `writers` closed loops of `op` for `seconds`: each writer starts its next operation when the last ends. */
async function timedRun(writers: number, seconds: number, op: Operation): Promise<RunResult> {
  const latencies: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await op(w);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  // Divide by the time until the last operation ended, not by `seconds`: the final ones overrun it.
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    ops: latencies.length,
    opsPerSec: latencies.length / elapsed,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

// A fixed pad makes the JSON payload about 200 bytes for both sides (measured and printed at start).
const PAD = 'x'.repeat(150);
const payload = (w: number, seq: number) => ({ writer: w, seq, kind: 'bench', pad: PAD });

const METADATA: EventMetadata = { correlationId: 'bench-append', causationId: null, actor: 'system' };

/** Appends one event per transaction, each writer to a stream of its own: never a conflict. */
function storeWriters(store: EventStore, database: Database, ids: UuidV7Generator, writers: number): Operation {
  // Fresh streams per run; the first append of each takes the create-stream path, one in thousands.
  const streams = Array.from({ length: writers }, () => ({ id: ids.next(), type: 'bench' }));
  const versions = new Array<number>(writers).fill(0);
  // Each writer knows its stream's head, as the command handler does (it read or wrote the
  // stream last), so an append is one statement.
  const heads = new Array<string>(writers).fill(GENESIS_HASH);
  return async (w) => {
    const event: DomainEvent<'BenchAppended'> = { type: 'BenchAppended', schemaVersion: 1, data: payload(w, versions[w]) };
    const result = await database.db.transaction((tx) =>
      store.append(tx, streams[w], versions[w], [event], METADATA, { prevHash: heads[w] }),
    );
    versions[w] = result.nextVersion;
    heads[w] = result.envelopes[0].hash;
  };
}

/** The floor: one row of the same size per transaction, straight through a pg Pool. */
function baselineWriters(pool: Pool, ids: UuidV7Generator, clock: SystemClock): Operation {
  let seq = 0;
  return async (w) => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO bench_baseline (uid, payload, created_at) VALUES ($1, $2, $3)', [
        ids.next(),
        JSON.stringify(payload(w, seq++)),
        clock.now().toISOString(),
      ]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  };
}

interface ConfigResult {
  writers: number;
  store: RunResult & { runs: RunResult[] };
  baseline: RunResult & { runs: RunResult[] };
  /** Median of the per-run store/baseline ratios of ops/s. */
  ratio: number;
}

function summarize(runs: RunResult[]): RunResult & { runs: RunResult[] } {
  return {
    ops: median(runs.map((r) => r.ops)),
    opsPerSec: median(runs.map((r) => r.opsPerSec)),
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    runs,
  };
}

function printResults(provenance: Provenance, results: readonly ConfigResult[]): void {
  const ms = (v: number) => `${v.toFixed(2)} ms`;
  printTable(
    provenanceLine(provenance),
    ['writers', 'store ops/s', 'base ops/s', 'store/base', 'store p50', 'store p99', 'base p50', 'base p99'],
    results.map((r) => [
      String(r.writers),
      r.store.opsPerSec.toFixed(0),
      r.baseline.opsPerSec.toFixed(0),
      r.ratio.toFixed(2),
      ms(r.store.p50Ms),
      ms(r.store.p99Ms),
      ms(r.baseline.p50Ms),
      ms(r.baseline.p99Ms),
    ]),
  );
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  // Database.migrate logs each migration through Nest's logger, which would break up the table on stdout.
  Logger.overrideLogger(['error', 'warn']);

  await onServer(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`);
  await onServer(`CREATE DATABASE ${BENCH_DB}`);
  const url = withDatabase(BENCH_DB);
  let database: Database | null = null;
  let pool: Pool | null = null;
  try {
    database = await Database.open({ databaseUrl: url, databasePoolSize: POOL_SIZE, dataDir: '' });
    await database.migrate();
    // Same shape as an event row at its core: a sequence id, a uuid, jsonb, a timestamptz.
    await database.db.query(`CREATE TABLE bench_baseline (
      id         bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
      uid        uuid NOT NULL,
      payload    jsonb NOT NULL,
      created_at timestamptz NOT NULL)`);
    pool = benchPool({ connectionString: url, max: POOL_SIZE, application_name: 'runway-bench-baseline' });

    const settings = await database.db.query<{ version: string; sync: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync`,
    );
    const provenance = await collectProvenance({ notes: ['EventStore.append and the baseline in this process, through node-postgres; no Runway server'] });
    const clock = new SystemClock();
    const ids = new UuidV7Generator(clock);
    const store = new EventStore(database.db, clock, ids);
    const baselinePool = pool;
    const db = database;
    console.log(
      `append benchmark: ${options.runs} run(s) of ${options.seconds}s per side after a warm-up; ` +
        `PostgreSQL ${settings.rows[0].version}, synchronous_commit=${settings.rows[0].sync}, ` +
        `payload ${JSON.stringify(payload(0, 0)).length} bytes, pool ${POOL_SIZE}\n`,
    );

    const results: ConfigResult[] = [];
    for (const writers of WRITER_COUNTS) {
      const runStore = () => timedRun(writers, options.seconds, storeWriters(store, db, ids, writers));
      const runBaseline = () => timedRun(writers, options.seconds, baselineWriters(baselinePool, ids, clock));
      // Warm-up: connections, JIT, plan caches and the first pages of each table, discarded.
      await runStore();
      await runBaseline();
      const storeRuns: RunResult[] = [];
      const baselineRuns: RunResult[] = [];
      for (let run = 0; run < options.runs; run++) {
        // Alternate which side goes first, so neither always runs on the slightly bigger tables or warmer cache.
        if (run % 2 === 0) {
          storeRuns.push(await runStore());
          baselineRuns.push(await runBaseline());
        } else {
          baselineRuns.push(await runBaseline());
          storeRuns.push(await runStore());
        }
      }
      // Each pair ran back to back, so the per-run ratio cancels drift that the two medians would not.
      const ratio = median(storeRuns.map((s, i) => s.opsPerSec / baselineRuns[i].opsPerSec));
      results.push({ writers, store: summarize(storeRuns), baseline: summarize(baselineRuns), ratio });
    }

    printResults(provenance, results);
    console.log('\nops/s, p50 and p99: medians over runs; store/base: median of the per-run ratios of ops/s.');
    if (options.json !== null) {
      writeFileSync(options.json, `${JSON.stringify({ provenance, options, poolSize: POOL_SIZE, results }, null, 2)}\n`);
      console.log(`results written to ${options.json}`);
    }
  } finally {
    await pool?.end();
    await database?.close();
    await onServer(`DROP DATABASE IF EXISTS ${BENCH_DB} WITH (FORCE)`);
  }
}

withBenchmarkServer(main).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
