/**
 * Rebuild throughput: events per second that `ProjectionRebuilder.rebuild({swap: false})` replays
 * into every view (ALL_PROJECTIONS: the real path, shadow schema and comparison included) on a
 * log of a million events, against a plain keyset `SELECT` scan of the same rows in batches of
 * the same size, in one process on one database. See bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/rebuild/rebuild.bench.js [--smoke] [--runs N] [--rebuild-runs N]
 *     [--events N] [--writers N] [--regenerate] [--profile] [--catch-up] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { Client } from 'pg';
import { SystemClock } from '#src/common/clock';
import { UuidV7Generator } from '#src/common/ids';
import { formatRebuildReport } from '#src/commands/projections';
import { Database } from '#src/modules/database/database';
import { EventStore, LOG_START, type LogPosition } from '#src/modules/event-store/event-store';
import { AdvisoryLockLeadership } from '#src/modules/event-store/leadership';
import { Projector } from '#src/modules/projections/projector';
import { ProjectionRebuilder, type RebuildReport } from '#src/modules/projections/rebuild';
import { ALL_PROJECTIONS, ASYNC_PROJECTIONS, checkpointName } from '#src/modules/projections/registry';
import { HISTORY_VERSION, type HistoryReport, writeHistory } from './history';
import { TimedDb } from './sql-timer';
import { COMMON_FLAGS, parseFlags } from '../support/args';
import { SERVER_URL, withDatabase, withBenchmarkServer } from '../support/postgres';
import { collectProvenance, provenanceLine } from '../support/provenance';
import { median } from '../support/stats';

/** The rebuilder's batch (`BATCH` in src/modules/projections/rebuild.ts, not exported): the scans read the same. */
const BATCH = 5_000;
const FULL_EVENTS = 1_000_000;
const SMOKE_EVENTS = 20_000;

interface Options {
  smoke: boolean;
  runs: number;
  rebuildRuns: number;
  events: number;
  writers: number;
  regenerate: boolean;
  profile: boolean;
  catchUp: boolean;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  // --seconds: bench/run.ts passes it to every benchmark; runs here are whole passes, so it is ignored.
  const flags = parseFlags(argv, {
    ...COMMON_FLAGS,
    '--rebuild-runs': 'count',
    '--events': 'count',
    '--writers': 'count',
    '--regenerate': 'switch',
    '--profile': 'switch',
    '--catch-up': 'switch',
  });
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    runs: flags['--runs'] ?? 3,
    rebuildRuns: flags['--rebuild-runs'] ?? 1,
    events: flags['--events'] ?? FULL_EVENTS,
    writers: flags['--writers'] ?? 8,
    regenerate: flags['--regenerate'] ?? false,
    profile: flags['--profile'] ?? false,
    catchUp: flags['--catch-up'] ?? false,
    json: flags['--json'] ?? null,
  };
  // --smoke wins: CI must stay small whatever else is passed.
  if (options.smoke) Object.assign(options, { runs: 1, rebuildRuns: 1, events: SMOKE_EVENTS, profile: false });
  return options;
}

/** One pass over the whole log. */
interface Pass {
  events: number;
  seconds: number;
  eventsPerSec: number;
}

const pass = (events: number, seconds: number): Pass => ({ events, seconds, eventsPerSec: events / seconds });

function summarize(runs: readonly Pass[]) {
  return { events: median(runs.map((r) => r.events)), seconds: median(runs.map((r) => r.seconds)), eventsPerSec: median(runs.map((r) => r.eventsPerSec)), runs };
}

async function onServer<T>(work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

const log = (line: string) => console.log(line);

// ---------------------------------------------------------------------------------------------
// The log: generated once, kept between runs

interface Meta {
  version: number;
  target_events: string;
  events: string;
  generated_at: Date;
  report: GenerationReport;
}

interface GenerationReport {
  history: HistoryReport;
  /** The async projectors (runner status, billing) catching up with the whole log, as the projector role would. */
  projectors: { seconds: number; eventsPerSec: number };
  vacuumSeconds: number;
  /** Wall time of the whole generation: database, migrations, history, projectors, VACUUM ANALYZE. */
  seconds: number;
}

/** The benchmark database, migrated and holding the history: reused when it is the one asked for. */
async function prepare(options: Options): Promise<{ database: Database; name: string; reused: boolean; generation: GenerationReport }> {
  const name = options.smoke ? 'runway_bench_rebuild_smoke' : 'runway_bench_rebuild';
  const url = withDatabase(name);
  const exists = await onServer(async (c) => (await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [name])).rowCount === 1);
  if (exists && !options.regenerate) {
    const database = await Database.open({ databaseUrl: url, databasePoolSize: 4, dataDir: '' });
    const applied = await database.migrate();
    const meta = await readMeta(database);
    const events = Number((await database.db.query<{ n: string }>(`SELECT count(*) AS n FROM events`)).rows[0].n);
    const why =
      meta === null ? 'an unfinished generation'
      : meta.version !== HISTORY_VERSION ? `history version ${meta.version}, now ${HISTORY_VERSION}`
      : Number(meta.target_events) !== options.events ? `a target of ${meta.target_events} events, now ${options.events}`
      : Number(meta.events) !== events ? `${events} events where ${meta.events} were written`
      : null;
    if (why === null && meta !== null) {
      log(`reusing ${name}: ${events} events generated ${meta.generated_at.toISOString()} (--regenerate to start over)`);
      // A migration since (an index, a column) keeps the history; should it change what a view
      // holds, the rebuild's comparison says so and --regenerate writes the history anew.
      if (applied.length > 0) log(`  applied migrations since: ${applied.join(', ')}`);
      return { database, name, reused: true, generation: meta.report };
    }
    log(`regenerating ${name}: it holds ${why}`);
    await database.close();
  }

  const started = performance.now();
  await onServer(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`CREATE DATABASE ${name}`);
  });
  const database = await Database.open({ databaseUrl: url, databasePoolSize: 4, dataDir: '' });
  try {
    await database.migrate();
    await database.db.query(`CREATE TABLE bench_rebuild_meta (
      version int NOT NULL, target_events bigint NOT NULL, events bigint NOT NULL, generated_at timestamptz NOT NULL, report jsonb NOT NULL)`);
    log(`generating ${name}: at least ${options.events} events through EventStore.append, ${options.writers} writers`);
    const history = await writeHistory({
      url,
      db: database.db,
      targetEvents: options.events,
      writers: options.writers,
      progress: (events) => log(`  ${events} events, ${((performance.now() - started) / 1000).toFixed(0)} s`),
    });
    log(`  ${history.events} events (${history.jobs} jobs) in ${history.seconds.total.toFixed(1)} s; async projectors catching up`);
    const projectors = await catchUpProjectors(database, history.events);
    log(`  projectors caught up in ${projectors.seconds.toFixed(1)} s; VACUUM ANALYZE`);
    const vacuumStarted = performance.now();
    // Hint bits, visibility map and statistics, so no measured pass pays for the generation's writes.
    await onServerDatabase(url, (c) => c.query('VACUUM (ANALYZE)'));
    const vacuumSeconds = (performance.now() - vacuumStarted) / 1000;
    const generation: GenerationReport = { history, projectors, vacuumSeconds, seconds: (performance.now() - started) / 1000 };
    await database.db.query(`INSERT INTO bench_rebuild_meta VALUES ($1, $2, $3, now(), $4)`, [HISTORY_VERSION, options.events, history.events, JSON.stringify(generation)]);
    log(`generated in ${generation.seconds.toFixed(1)} s\n`);
    return { database, name, reused: false, generation };
  } catch (error) {
    await database.close();
    throw error;
  }
}

async function onServerDatabase<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function readMeta(database: Database): Promise<Meta | null> {
  const table = await database.db.query(`SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'bench_rebuild_meta'`);
  if (table.rows.length === 0) return null;
  return (await database.db.query<Meta>(`SELECT * FROM bench_rebuild_meta`)).rows[0] ?? null;
}

/**
 * Runs the real projectors (the projector role's) over the whole log until each has reached its
 * end. Their connections go to `url` (the database's own by default).
 */
async function catchUpProjectors(database: Database, events: number, url = database.url): Promise<GenerationReport['projectors']> {
  const clock = new SystemClock();
  const store = new EventStore(database.db, clock, new UuidV7Generator(clock));
  const end = await lastPosition(database);
  const started = performance.now();
  const projectors = ASYNC_PROJECTIONS.map((p) => new Projector(p, store, new AdvisoryLockLeadership(url, checkpointName(p)), clock));
  projectors.forEach((p) => p.start());
  try {
    const reached = (position: LogPosition | null) => position !== null && position.transactionId === end.transactionId && position.globalPosition === end.globalPosition;
    for (;;) {
      const failing = projectors.find((p) => p.status().failures > 3);
      if (failing) throw new Error(`projector ${failing.projection.name} keeps failing: ${failing.status().lastError}`);
      if (projectors.every((p) => reached(p.status().checkpoint))) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await Promise.all(projectors.map((p) => p.stop()));
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds, eventsPerSec: events / seconds };
}

/** Where `--catch-up` puts its copies of the async views and of `checkpoints`. */
const CATCH_UP_SCHEMA = 'runway_bench_catchup';

/**
 * The projector role after a long outage, measured without touching the live views: empty copies
 * of the async views' tables and of `checkpoints` in a schema of their own, first on the search
 * path of the projectors' connections (the log and the jobs view are read from public), the real
 * projectors following the whole log from its start into them, and the copies compared with the
 * live views row by row.
 */
async function catchUpIntoCopies(database: Database, events: number): Promise<GenerationReport['projectors'] & { equal: boolean }> {
  const tables = [...ASYNC_PROJECTIONS.flatMap((p) => [...p.tables]), 'checkpoints'];
  await database.db.transaction(async (tx) => {
    await tx.query(`DROP SCHEMA IF EXISTS ${CATCH_UP_SCHEMA} CASCADE`);
    await tx.query(`CREATE SCHEMA ${CATCH_UP_SCHEMA}`);
    for (const table of tables) await tx.query(`CREATE TABLE ${CATCH_UP_SCHEMA}.${table} (LIKE public.${table} INCLUDING ALL)`);
  });
  try {
    const url = new URL(database.url);
    url.searchParams.set('options', `-c search_path=${CATCH_UP_SCHEMA},public`);
    const result = await catchUpProjectors(database, events, url.toString());
    let equal = true;
    for (const table of ASYNC_PROJECTIONS.flatMap((p) => [...p.tables])) {
      const { rows } = await database.db.query<{ differing: string }>(
        `SELECT (SELECT count(*) FROM (SELECT * FROM public.${table} EXCEPT ALL SELECT * FROM ${CATCH_UP_SCHEMA}.${table}) d)
              + (SELECT count(*) FROM (SELECT * FROM ${CATCH_UP_SCHEMA}.${table} EXCEPT ALL SELECT * FROM public.${table}) d) AS differing`,
      );
      if (rows[0].differing !== '0') {
        log(`  ${table}: ${rows[0].differing} rows differ between the live view and the one the projector caught up`);
        equal = false;
      }
    }
    return { ...result, equal };
  } finally {
    await database.db.query(`DROP SCHEMA IF EXISTS ${CATCH_UP_SCHEMA} CASCADE`);
  }
}

async function lastPosition(database: Database): Promise<LogPosition> {
  const { rows } = await database.db.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM events ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1`,
  );
  return rows[0] ? { transactionId: rows[0].transaction_id, globalPosition: Number(rows[0].global_position) } : LOG_START;
}

// ---------------------------------------------------------------------------------------------
// The passes

/** The floor: the same rows, in the same order and batches, straight through node-postgres. */
async function plainScan(url: string): Promise<Pass> {
  const client = new Client({ connectionString: url, application_name: 'runway-bench-scan' });
  await client.connect();
  try {
    const started = performance.now();
    let after = { transactionId: '0', globalPosition: '0' };
    let events = 0;
    for (;;) {
      const { rows } = await client.query<{ transaction_id: string; global_position: string }>(
        `SELECT * FROM events WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
          ORDER BY transaction_id, global_position LIMIT $3`,
        [after.transactionId, after.globalPosition, BATCH],
      );
      if (rows.length === 0) break;
      events += rows.length;
      const last = rows[rows.length - 1];
      after = { transactionId: last.transaction_id, globalPosition: last.global_position };
    }
    return pass(events, (performance.now() - started) / 1000);
  } finally {
    await client.end();
  }
}

/** The rebuild's own reader without applying anything: `EventStore.readAll` through the app's Db. */
async function readAllScan(store: EventStore, database: Database): Promise<Pass> {
  const started = performance.now();
  let position = LOG_START;
  let events = 0;
  for (;;) {
    const batch = await store.readAll(position, BATCH, database.db);
    if (batch.events.length === 0) break;
    events += batch.events.length;
    position = batch.last;
  }
  return pass(events, (performance.now() - started) / 1000);
}

async function rebuild(database: Database, store: EventStore, reused: boolean, db = database.db): Promise<Pass & { report: RebuildReport }> {
  const started = performance.now();
  const report = await new ProjectionRebuilder(db, store, ALL_PROJECTIONS, new SystemClock()).rebuild({ swap: false });
  const seconds = (performance.now() - started) / 1000;
  if (!report.equal) {
    log(formatRebuildReport(report));
    throw new Error(`the rebuilt views differ from the live ones${reused ? ' (the history was generated by an earlier build: try --regenerate)' : ''}`);
  }
  return { ...pass(report.events, seconds), report };
}

// ---------------------------------------------------------------------------------------------

function printTable(caption: string, rows: readonly { name: string; pass: Pass; ratio: number | null }[]): void {
  const header = ['pass', 'events', 'seconds', 'events/s', 'vs scan'];
  const cells = rows.map((r) => [r.name, r.pass.events.toLocaleString('en-US'), r.pass.seconds.toFixed(2), Math.round(r.pass.eventsPerSec).toLocaleString('en-US'), r.ratio === null ? '' : r.ratio.toFixed(3)]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: readonly string[]) => c.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  log(caption);
  log(line(header));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) log(line(c));
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  // Migrations and followers log through Nest's logger, which would break up the output.
  Logger.overrideLogger(['error', 'warn']);
  const { database, name, reused, generation } = await prepare(options);
  try {
    const clock = new SystemClock();
    const store = new EventStore(database.db, clock, new UuidV7Generator(clock));
    const provenance = await collectProvenance({
      notes: [
        'ProjectionRebuilder and the scans in this process, through node-postgres; no Runway server',
        `the log ${reused ? 'reused from an earlier generation' : 'generated by this run'} (its writers with synchronous_commit=off: set-up, not measured)`,
      ],
    });
    const where = provenanceLine(provenance);
    log(
      `rebuild benchmark on ${name} (${generation.history.events.toLocaleString('en-US')} events, ${generation.history.jobs.toLocaleString('en-US')} jobs)\n${where}`,
    );

    if (options.profile) {
      // One rebuild with every statement timed; run under `node --cpu-prof` for the JavaScript side.
      const timed = new TimedDb(database.db);
      const result = await rebuild(database, new EventStore(timed, clock, new UuidV7Generator(clock)), reused, timed);
      const statements = timed.report();
      const sqlMs = statements.reduce((n, s) => n + s.ms, 0);
      log(`\nrebuild (profiled): ${result.events} events in ${result.seconds.toFixed(1)} s = ${Math.round(result.eventsPerSec)} events/s`);
      log(`time in SQL statements (round trip as the caller waits for it): ${(sqlMs / 1000).toFixed(1)} s; the rest (${(result.seconds - sqlMs / 1000).toFixed(1)} s) is JavaScript between them\n`);
      log('     calls    total s   mean us  statement');
      for (const s of statements.slice(0, 20)) {
        log(`${String(s.calls).padStart(10)} ${(s.ms / 1000).toFixed(2).padStart(10)} ${((s.ms * 1000) / s.calls).toFixed(0).padStart(9)}  ${s.statement}`);
      }
      if (options.json !== null) writeFileSync(options.json, `${JSON.stringify({ provenance, options, profile: { ...result, statements } }, null, 2)}\n`);
      return;
    }

    if (options.catchUp) {
      log(`projectors (${ASYNC_PROJECTIONS.map((p) => p.name).join(', ')}) catching up from the start of the log into copies of their views ...`);
      const catchUp = await catchUpIntoCopies(database, generation.history.events);
      log(`caught up in ${catchUp.seconds.toFixed(1)} s = ${Math.round(catchUp.eventsPerSec)} events/s; the views they built ${catchUp.equal ? 'equal' : 'DIFFER from'} the live ones`);
      if (options.json !== null) writeFileSync(options.json, `${JSON.stringify({ provenance, options, catchUp }, null, 2)}\n`);
      if (!catchUp.equal) throw new Error('the caught-up views differ from the live ones');
      return;
    }

    // Warm-up: the first pass pulls the table into the caches; discarded.
    log('warm-up scan (discarded) ...');
    await plainScan(database.url);
    const scans: Pass[] = [];
    const reads: Pass[] = [];
    const rebuilds: (Pass & { report: RebuildReport })[] = [];
    for (let i = 0; i < Math.max(options.runs, options.rebuildRuns); i++) {
      if (i < options.runs) {
        scans.push(await plainScan(database.url));
        log(`run ${i + 1}: plain scan ${Math.round(scans[i].eventsPerSec)} events/s (${scans[i].seconds.toFixed(1)} s)`);
      }
      if (i < options.rebuildRuns) {
        // readAll passes cost about what the rebuild's reads do, so they go with the rebuild runs.
        reads.push(await readAllScan(store, database));
        log(`run ${i + 1}: readAll loop ${Math.round(reads[i].eventsPerSec)} events/s (${reads[i].seconds.toFixed(1)} s)`);
        rebuilds.push(await rebuild(database, store, reused));
        log(`run ${i + 1}: rebuild ${Math.round(rebuilds[i].eventsPerSec)} events/s (${rebuilds[i].seconds.toFixed(1)} s, views equal)`);
      }
    }
    const scan = summarize(scans);
    const readAll = summarize(reads);
    const rebuilt = summarize(rebuilds.map(({ events, seconds, eventsPerSec }) => ({ events, seconds, eventsPerSec })));
    const ratio = rebuilt.eventsPerSec / scan.eventsPerSec;
    log('');
    printTable(where, [
      { name: 'plain SELECT scan (pg, keyset)', pass: scan, ratio: 1 },
      { name: 'EventStore.readAll loop', pass: readAll, ratio: readAll.eventsPerSec / scan.eventsPerSec },
      { name: 'rebuild({swap: false}), all views', pass: rebuilt, ratio },
    ]);
    log(`\nmedians of ${options.runs} plain scan run(s) and ${options.rebuildRuns} readAll and rebuild run(s), batches of ${BATCH}; vs scan: events/s over the plain scan's.`);
    log(`rebuild / scan = ${ratio.toFixed(3)}; the rebuilt views equal the live ones (${rebuilds[0].report.tables.map((t) => `${t.table} ${t.rebuiltRows}`).join(', ')})`);
    log(
      `generation: ${generation.seconds.toFixed(1)} s${reused ? ' (earlier, reused now)' : ''}: history ${generation.history.seconds.total.toFixed(1)} s, ` +
        `projectors catching up ${generation.projectors.seconds.toFixed(1)} s (${Math.round(generation.projectors.eventsPerSec)} events/s), VACUUM ANALYZE ${generation.vacuumSeconds.toFixed(1)} s`,
    );
    if (options.json !== null) {
      writeFileSync(
        options.json,
        `${JSON.stringify({ provenance, options, database: { name, reused }, generation, batch: BATCH, scan, readAll, rebuild: { ...rebuilt, tables: rebuilds[0].report.tables }, ratio }, null, 2)}\n`,
      );
      log(`results written to ${options.json}`);
    }
  } finally {
    await database.close();
  }
}

withBenchmarkServer(main).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
