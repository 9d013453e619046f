import { performance } from 'node:perf_hooks';
import type { Pool } from 'pg';
import { LEADERSHIP_LOCK_CLASS } from '../../src/modules/event-store/leadership';
import { ASYNC_PROJECTIONS, checkpointName } from '../../src/modules/projections/registry';
import {
  type JobView,
  LoopingRunner,
  RestFixtures,
  type Tenant,
  clusterEnv,
  logReader,
  note,
  randomPrefix,
  startInstances,
  waitFor,
} from '../support/cluster';
import { type TestDatabase, createTestDatabase } from '../support/postgres';
import { type RunwayProcess, assertBuilt, runRunway, stopAll } from '../support/process';
import { TestRunner } from '../support/runner-client';

/**
 * The async projections (runner status, billing) under many concurrent writers and several
 * instances: three `runway serve` processes (the compiled build) share one database, each with
 * the projector role; leadership (an advisory lock per projector) lets one of them run each
 * projector. Submissions, cancels, claims and completions come from many clients and runners on
 * every instance at once; the instance leading a projector is killed mid-way and another takes
 * it over. In the end each projector's checkpoint is at the end of the log and
 * `runway projections rebuild --check` finds the views equal to a fresh replay.
 */

const PREFIX = randomPrefix();
const NAMES = ASYNC_PROJECTIONS.map(checkpointName);

let database: TestDatabase;
let pool: Pool;
const sockets: TestRunner[] = [];

beforeAll(async () => {
  assertBuilt();
  database = await createTestDatabase();
  pool = logReader(database.url);
});

afterAll(async () => {
  const steps: (() => Promise<unknown>)[] = [
    () =>
      Promise.all(
        sockets.splice(0).map(async (runner) => {
          if (runner.closed === null) runner.socket.terminate();
          await runner.whenClosed();
        }),
      ),
    () => stopAll(),
    () => (pool ? pool.end() : Promise.resolve()),
    () => (database ? database.drop() : Promise.resolve()),
  ];
  for (const step of steps) await step().catch((error: unknown) => process.stderr.write(`cleanup: ${(error as Error).message}\n`));
}, 30_000);

/** The projectors `proc` has logged it took the lead of, in order (RUNWAY_LOG_LEVEL=log: the log follower's "leading"). */
function ledBy(proc: RunwayProcess): string[] {
  return [...proc.stdout.matchAll(/\[LogFollower (projection:[^\]\s]+)\] leading/g)].map((match) => match[1]);
}

/** How many database sessions hold each projector's leadership lock now. */
async function lockHolders(): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ name: string; n: number }>(
    `SELECT p.name, count(l.pid)::int AS n
       FROM unnest($2::text[]) AS p(name)
       LEFT JOIN pg_locks l
         ON l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::bigint = $1::bigint AND l.objid::bigint = (hashtext(p.name)::bigint & 4294967295) AND l.objsubid = 2
      GROUP BY p.name`,
    [LEADERSHIP_LOCK_CLASS, NAMES],
  );
  return Object.fromEntries(rows.map((row) => [row.name, row.n]));
}

const oneHolderEach = Object.fromEntries(NAMES.map((name) => [name, 1]));

/** Waits until the jobs are all in a final state (read from the jobs view). */
async function allFinal(ids: readonly string[], timeoutMs: number): Promise<Record<string, number>> {
  let statuses: Record<string, number> = {};
  await waitFor(
    () => `all ${ids.length} jobs to end (now ${JSON.stringify(statuses)})`,
    async () => {
      const { rows } = await pool.query<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status`, [ids]);
      statuses = Object.fromEntries(rows.map((row) => [row.status, row.n]));
      const final = (statuses.completed ?? 0) + (statuses.failed ?? 0) + (statuses.canceled ?? 0);
      return final === ids.length ? statuses : undefined;
    },
    timeoutMs,
    100,
  );
  return statuses;
}

describe('async projections: three instances with the projector role, many concurrent writers, the leader killed mid-way', () => {
  let instances: RunwayProcess[] = [];

  beforeAll(async () => {
    const env = clusterEnv(database.url, PREFIX, {
      // "leading" is logged at log level.
      RUNWAY_LOG_LEVEL: 'log',
      // The runners of the killed instance are given up on soon: their claimed jobs are requeued,
      // running ones fail. (Runners of the live instances heartbeat; those of the dead one cannot.)
      RUNWAY_HEARTBEAT_INTERVAL_MS: '500',
      RUNWAY_HEARTBEAT_TIMEOUT_MS: '3000',
    });
    instances = await startInstances(env, [{ roles: 'api,gateway,projector' }, { roles: 'api,gateway,projector' }, { roles: 'api,gateway,projector' }]);
  }, 60_000);

  afterAll(async () => {
    await stopAll();
  }, 30_000);

  it('lets one instance run each projector, moves it when that instance dies, and ends with every checkpoint at the end of the log and the views equal to a replay', async () => {
    // Leadership: each projector is led by exactly one instance, and holds exactly one lock.
    await waitFor(
      () => `each projector to be led (logged: ${JSON.stringify(instances.map(ledBy))})`,
      async () => {
        const led = instances.flatMap(ledBy);
        return NAMES.every((name) => led.includes(name)) ? true : undefined;
      },
      15_000,
      50,
    );
    for (const name of NAMES) expect({ name, leaders: instances.filter((proc) => ledBy(proc).includes(name)).length }).toEqual({ name, leaders: 1 });
    expect(await lockHolders()).toEqual(oneHolderEach);

    const apis = instances.map((proc) => new RestFixtures(proc.url));
    const [spec, idle] = await Promise.all([apis[0].spec(), apis[1].spec()]); // nobody serves `idle`: its jobs wait, and are canceled
    const tenants: Tenant[] = await Promise.all([
      ...Array.from({ length: 4 }, (_, i) => apis[i % 3].tenant('free')),
      apis[1].tenant('team', { maxConcurrency: 2 }),
      apis[2].tenant('team'),
      apis[0].tenant('enterprise'),
    ]);
    const workMs = () => 1 + Math.floor(Math.random() * 15);
    const loopers: LoopingRunner[] = [];
    /** Runners on `on`, looping: ready, running, completed, ready... */
    async function runners(on: readonly RunwayProcess[], n: number): Promise<void> {
      const registered = await Promise.all(Array.from({ length: n }, (_, i) => new RestFixtures(on[i % on.length].url).runner([spec.slug])));
      const started = await Promise.all(
        registered.map(async (reg, i) => {
          const socket = await TestRunner.hello(on[i % on.length].url, reg.token);
          sockets.push(socket);
          return new LoopingRunner(socket, reg.id, workMs);
        }),
      );
      for (const looper of started) looper.start();
      loopers.push(...started);
    }
    const jobs: JobView[] = [];
    /** `n` submissions at once, spread over `on` and the tenants; one in eight on the idle spec, canceled at once. */
    async function submissions(on: readonly RestFixtures[], n: number): Promise<void> {
      await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const api = on[i % on.length];
          const tenant = tenants[i % tenants.length];
          if (i % 8 === 7) {
            const job = await api.submit(tenant, idle.slug);
            jobs.push(await api.cancel(job.id));
          } else jobs.push(await api.submit(tenant, spec.slug, { maxAttempts: 3 }));
        }),
      );
    }
    const completed = async () =>
      (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'completed'`, [jobs.map((job) => job.id)])).rows[0].n;

    // Phase 1: 12 runners over the three instances, 120 submissions over the three APIs at once.
    await runners(instances, 12);
    await submissions(apis, 120);

    // Mid-way (a third of the work done), the instance leading the billing projector dies.
    await waitFor(() => 'a third of the jobs to complete', async () => ((await completed()) >= 40 ? true : undefined), 30_000, 20);
    const billing = checkpointName(ASYNC_PROJECTIONS.find((projection) => projection.name === 'billing')!);
    const leader = instances.find((proc) => ledBy(proc).includes(billing))!;
    const lost = ledBy(leader);
    const survivors = instances.filter((proc) => proc !== leader);
    const killedAt = performance.now();
    leader.child.kill('SIGKILL');
    await leader.exited;

    // Phase 2, while another instance takes over: more submissions on the survivors and 4 more runners on them.
    await Promise.all([runners(survivors, 4), submissions(survivors.map((proc) => new RestFixtures(proc.url)), 80)]);

    // Another instance took over every projector the dead one led (it logged "leading"), and one lock each is held again.
    await waitFor(
      () => `the projectors of the killed instance (${lost.join(', ')}) to be taken over (logged: ${JSON.stringify(survivors.map(ledBy))})`,
      async () => {
        const led = survivors.flatMap(ledBy);
        return lost.every((name) => led.includes(name)) ? true : undefined;
      },
      20_000,
      50,
    );
    const takeoverMs = performance.now() - killedAt;
    expect(await lockHolders()).toEqual(oneHolderEach);
    for (const name of NAMES) expect({ name, leaders: survivors.filter((proc) => ledBy(proc).includes(name)).length }).toEqual({ name, leaders: 1 });

    // Every job ends: those held by runners of the dead instance time out (requeued and run elsewhere if only claimed, failed if running).
    const statuses = await allFinal(
      jobs.map((job) => job.id),
      60_000,
    );
    expect(statuses.completed).toBeGreaterThan(150);
    expect(statuses.canceled).toBe(25);
    for (const looper of loopers) looper.stop();
    expect(loopers.flatMap((looper) => looper.unexpected)).toEqual([]);

    // The runners leave; each is recorded as disconnected (by its gateway, or as lost with the dead one).
    await Promise.all(sockets.map((socket) => socket.close()));
    await waitFor(
      () => 'every runner to be recorded as disconnected',
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM (
             SELECT DISTINCT ON (stream_id) type FROM events WHERE type IN ('RunnerConnected', 'RunnerDisconnected')
              ORDER BY stream_id, stream_position DESC) last
            WHERE type = 'RunnerConnected'`,
        );
        return rows[0].n === 0 ? true : undefined;
      },
      15_000,
      100,
    );

    // Each projector's checkpoint reaches the last event of the log, in the log's order.
    let behind: unknown[] = [];
    await waitFor(
      () => `each projector's checkpoint to reach the end of the log (behind: ${JSON.stringify(behind)})`,
      async () => {
        const { rows } = await pool.query<{ name: string; checkpoint: string | null; last: string }>(
          `WITH last AS (SELECT transaction_id, global_position FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1)
           SELECT p.name, c.transaction_id::text || '/' || c.global_position AS checkpoint, l.transaction_id::text || '/' || l.global_position AS last
             FROM unnest($1::text[]) AS p(name) CROSS JOIN last l LEFT JOIN checkpoints c ON c.name = p.name`,
          [NAMES],
        );
        behind = rows.filter((row) => row.checkpoint !== row.last);
        return behind.length === 0 ? rows : undefined;
      },
      15_000,
      50,
    );

    // The views equal a fresh replay of the whole log (the CLI, on the same database).
    const check = await runRunway(['projections', 'rebuild', '--check'], clusterEnv(database.url, PREFIX), 60_000);
    expect({ code: check.code, verdict: /the rebuilt views equal the live ones/.test(check.stdout) }).toEqual({ code: 0, verdict: true });
    expect(check.stdout).toMatch(/runner_status/);
    expect(check.stdout).toMatch(/job_billing/);
    note(`projectors: ${jobs.length} jobs, ${JSON.stringify(statuses)}; projectors of the killed instance (${lost.join(', ')}) taken over ${Math.round(takeoverMs)} ms after the kill\n${check.stdout}`);
  }, 150_000);
});
