/**
 * The two PostgreSQL job queues the benchmarks set Runway beside, and how each is configured:
 * at its defaults, and tuned as its documentation advises for throughput.
 *
 * - graphile-worker 0.18 (https://worker.graphile.org/docs/performance): `localQueue.size`
 *   (jobs fetched and locked in one query, handed to the workers locally), `completeJobBatchDelay`
 *   and `failJobBatchDelay` (completions written in batches), and `maxPoolSize` of at least
 *   `concurrentJobs + 2`. The performance page's own settings are `localQueue: {size: 500}`,
 *   `completeJobBatchDelay: 0`, `failJobBatchDelay: 0`.
 * - pg-boss 12: `work()` fetches one job per worker and then waits `pollingIntervalSeconds` (2 s)
 *   by default ("1 job every 2 seconds"). Tuned: `batchSize` jobs per fetch with
 *   `burstWhenBatchFull` (fetch again at once while fetches come back full), and LISTEN/NOTIFY
 *   (`useListenNotify` on the instance, `notify: true` on the queue) so an idle worker wakes
 *   when a job is sent instead of at its next poll.
 */
import { EventEmitter } from 'node:events';
import { Logger, type Runner, type WorkerEvents, type WorkerUtils, makeWorkerUtils, run } from 'graphile-worker';
import { PgBoss } from 'pg-boss';
import { benchPool } from './postgres';

export type PeerKind = 'graphile' | 'pgboss';
export type PeerVariant = 'default' | 'tuned';

export interface PeerSettings {
  /** graphile-worker `localQueue.size` when tuned. */
  graphileLocalQueue: number;
  /** pg-boss `batchSize` when tuned. */
  bossBatchSize: number;
}

export const DEFAULT_PEER_SETTINGS: PeerSettings = { graphileLocalQueue: 500, bossBatchSize: 25 };

export const QUEUE = 'noop';

/** graphile-worker logs every completed job at INFO by default: silenced for both variants. */
export const silentLogger = new Logger(() => () => undefined);

/** A short description of a peer's configuration, N being its concurrency, for the output. */
export function describePeer(kind: PeerKind, variant: PeerVariant, settings: PeerSettings): string {
  if (kind === 'graphile') {
    return variant === 'default'
      ? 'graphile-worker 0.18: concurrency N, maxPoolSize 10, no local queue, each completion its own query (defaults)'
      : `graphile-worker 0.18: concurrency N, maxPoolSize max(10, N + 2), localQueue.size ${settings.graphileLocalQueue}, completeJobBatchDelay 0, failJobBatchDelay 0`;
  }
  return variant === 'default'
    ? 'pg-boss 12: localConcurrency N, batchSize 1, pollingIntervalSeconds 2, pool 10 (defaults)'
    : `pg-boss 12: localConcurrency N, batchSize ${settings.bossBatchSize}, burstWhenBatchFull, useListenNotify + queue notify: true, pool 10`;
}

/** graphile-worker's `maxPoolSize` when it is not set. */
const GRAPHILE_DEFAULT_POOL = 10;

/** The docs: "10 or concurrentJobs + 2, whichever is larger". */
function graphilePoolSize(concurrency: number): number {
  return Math.max(GRAPHILE_DEFAULT_POOL, concurrency + 2);
}

/** A running worker side of a peer: `stop()` shuts it down gracefully. */
export interface PeerWorker {
  stop(): Promise<void>;
}

/**
 * Starts the peer's workers on `url` (creating its schema), calling `onJob` as each job's task
 * starts (a no-op job: the task returns at once).
 */
export async function startPeerWorker(
  kind: PeerKind,
  variant: PeerVariant,
  url: string,
  concurrency: number,
  settings: PeerSettings,
  onJob: () => void,
  events?: WorkerEvents,
): Promise<PeerWorker> {
  if (kind === 'graphile') {
    const tuned = variant === 'tuned';
    // The workers' pool is ours (graphile-worker's own `maxPoolSize` default of 10, or the tuned
    // size), so its connections' errors are heard after the runner stops: the database is dropped
    // right after, and a connection still closing would report its termination to nobody.
    const pool = benchPool({ connectionString: url, max: tuned ? graphilePoolSize(concurrency) : GRAPHILE_DEFAULT_POOL });
    const runner: Runner = await run({
      pgPool: pool,
      concurrency,
      noHandleSignals: true,
      logger: silentLogger,
      parsedCronItems: [],
      taskList: { [QUEUE]: async () => onJob() },
      ...(events === undefined ? {} : { events }),
      ...(tuned ? { preset: { worker: { localQueue: { size: settings.graphileLocalQueue }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } } : {}),
    });
    return {
      stop: async () => {
        await runner.stop();
        await pool.end();
      },
    };
  }
  const tuned = variant === 'tuned';
  const boss = new PgBoss(tuned ? { connectionString: url, useListenNotify: true } : { connectionString: url });
  boss.on('error', (error) => console.error(`pg-boss: ${error.message}`));
  await boss.start();
  await boss.createQueue(QUEUE, tuned ? { notify: true } : {});
  const handler = async (jobs: unknown[]) => {
    for (let i = 0; i < jobs.length; i++) onJob();
  };
  await boss.work(QUEUE, tuned ? { localConcurrency: concurrency, batchSize: settings.bossBatchSize, burstWhenBatchFull: true } : { localConcurrency: concurrency }, handler);
  return { stop: () => boss.stop({ graceful: true, close: true, timeout: 10_000 }) };
}

/** The submitting side of a peer: adds one no-op job per call. */
export interface PeerProducer {
  add(): Promise<void>;
  /** Jobs completed in the database, and jobs not completed yet (queued or running). */
  counts(): Promise<{ completed: number; open: number }>;
  /** Removes the jobs nobody has started (after a capped run). */
  dropQueued(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A producer in this process, with `connections` for `connections` concurrent submitters. Its
 * counts come straight from the peer's tables: graphile-worker deletes a job when it completes
 * (so completed = added - still there); pg-boss keeps it with state `completed`.
 */
export async function startPeerProducer(kind: PeerKind, url: string, connections: number): Promise<PeerProducer> {
  if (kind === 'graphile') {
    // A pool of our own, so it is surely closed (and its errors heard) before the database is dropped.
    const pool = benchPool({ connectionString: url, max: connections + 1 });
    const utils: WorkerUtils = await makeWorkerUtils({ pgPool: pool, logger: silentLogger });
    let added = 0;
    const left = async () => {
      const { rows } = await utils.withPgClient((client) => client.query<{ n: string }>(`SELECT count(*) AS n FROM graphile_worker._private_jobs`));
      return Number(rows[0].n);
    };
    return {
      async add() {
        await utils.addJob(QUEUE, {});
        added += 1;
      },
      async counts() {
        const open = await left();
        return { completed: added - open, open };
      },
      async dropQueued() {
        await utils.withPgClient((client) => client.query(`DELETE FROM graphile_worker._private_jobs WHERE locked_at IS NULL`));
        added = await left();
      },
      close: async () => {
        await utils.release();
        await pool.end();
      },
    };
  }
  const boss = new PgBoss({ connectionString: url, max: connections + 1, supervise: false, schedule: false, migrate: false });
  let closing = false;
  // Once closing, a connection the database's drop ends is expected.
  boss.on('error', (error) => closing || console.error(`pg-boss producer: ${error.message}`));
  await boss.start();
  const db = boss.getDb();
  return {
    async add() {
      await boss.send(QUEUE, {});
    },
    async counts() {
      const { rows } = await db.executeSql(
        `SELECT count(*) FILTER (WHERE state = 'completed') AS completed, count(*) FILTER (WHERE state <> 'completed') AS open
           FROM pgboss.job WHERE name = $1`,
        [QUEUE],
      );
      const row = rows[0] as { completed: string; open: string };
      return { completed: Number(row.completed), open: Number(row.open) };
    },
    async dropQueued() {
      await boss.deleteQueuedJobs(QUEUE);
    },
    close: () => {
      closing = true;
      return boss.stop({ graceful: false, close: true });
    },
  };
}

export const newEvents = (): WorkerEvents => new EventEmitter() as WorkerEvents;
