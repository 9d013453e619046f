import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Pool } from 'pg';
import WebSocket from 'ws';
import {
  type JobView,
  type LoggedEvent,
  LoopingRunner,
  RestFixtures,
  type Tenant,
  call,
  clusterEnv,
  deleteStream,
  eventTypes,
  jobEvents,
  jobsStreamName,
  logReader,
  metricSum,
  note,
  natsConnect,
  randomPrefix,
  readStream,
  scrape,
  startInstances,
  streamCount,
  waitFor,
} from '../support/cluster';
import { type TestDatabase, createTestDatabase } from '../support/postgres';
import { type ChildEnv, type RunwayProcess, assertBuilt, stopAll } from '../support/process';
import { TestRunner } from '../support/runner-client';

/**
 * Runway as it is deployed: several `runway serve` processes (the compiled build), each with
 * some of the roles, on one PostgreSQL database and one NATS server with JetStream. Everything
 * is driven through the public interfaces (REST, runner WebSockets, JetStream); what happened is
 * checked from the event log, read in its commit-safe order (transaction id, global position).
 *
 * One database and one NATS prefix for the whole file: the JetStream stream holds the job events
 * of every test, and after each test it must equal the log's job events exactly.
 */

const PREFIX = randomPrefix();
const STREAM = jobsStreamName(PREFIX);

let database: TestDatabase;
let pool: Pool;
let nc: NatsConnection;
let jsm: JetStreamManager;
const sockets: TestRunner[] = [];

const env = (extra: ChildEnv = {}) => clusterEnv(database.url, PREFIX, extra);

/** Every instance this file started, for their logs. */
const started: RunwayProcess[] = [];

async function start(base: ChildEnv, instances: readonly { roles: string; env?: ChildEnv }[]): Promise<RunwayProcess[]> {
  const processes = await startInstances(base, instances);
  started.push(...processes);
  return processes;
}

/** No instance logged an error (the gateway, liveness and relay log and carry on, so a failure could hide). */
function expectNoErrorsLogged(processes: readonly RunwayProcess[]): void {
  const errors = processes.flatMap((proc) =>
    `${proc.stdout}\n${proc.stderr}`
      .split('\n')
      .filter((line) => /\bERROR\b/.test(line))
      .map((line) => `${proc.args.join(' ')} (port ${proc.port}): ${line}`),
  );
  expect(errors).toEqual([]);
}

async function connectRunner(url: string, token: string): Promise<TestRunner> {
  const runner = await TestRunner.hello(url, token);
  sockets.push(runner);
  return runner;
}

async function closeSockets(): Promise<void> {
  await Promise.all(
    sockets.splice(0).map(async (runner) => {
      if (runner.closed === null) runner.socket.terminate();
      await runner.whenClosed();
    }),
  );
}

/**
 * Resolves once the gateway has handled every frame the runner sent before: frames of a socket
 * are handled in order, and a heartbeat for a job that does not exist is answered `not_found`
 * without changing anything.
 */
async function handledSoFar(runner: TestRunner): Promise<void> {
  expect(await runner.request({ type: 'heartbeat', job: randomUUID(), attempt: 1 })).toMatchObject({ type: 'error', code: 'not_found' });
}

/** Sends a heartbeat for the job every `everyMs` while the socket is open; returns the stop. */
function heartbeats(runner: TestRunner, job: string, attempt: number, everyMs: number): () => void {
  const timer = setInterval(() => {
    if (runner.socket.readyState === WebSocket.OPEN) runner.send({ type: 'heartbeat', job, attempt });
  }, everyMs);
  return () => clearInterval(timer);
}

const count = (events: readonly LoggedEvent[], type: string) => events.filter((event) => event.type === type).length;

/**
 * Waits until the relay has published every job event of the log, then checks that the stream
 * holds each exactly once: message id = event id = the envelope's id, the subject names the
 * job's org, project, id and event type, and each job's messages come in the job's own order.
 */
async function expectStreamHoldsTheLog(): Promise<void> {
  const events = await jobEvents(pool);
  let held = 0;
  await waitFor(
    () => `the JetStream stream ${STREAM} to hold the ${events.length} job events of the log (it holds ${held})`,
    async () => {
      held = await streamCount(jsm, STREAM);
      return held >= events.length ? held : undefined;
    },
    15_000,
    100,
  );
  const messages = await readStream(jsm, STREAM);
  expect(messages.length).toBe(events.length);

  const ids = messages.map((message) => message.msgId);
  expect(new Set(ids).size).toBe(messages.length);
  expect([...ids].sort()).toEqual(events.map((event) => event.id).sort());

  const owners = new Map<string, { orgId: string; projectId: string }>();
  for (const event of events) if (event.type === 'JobSubmitted') owners.set(event.streamId, { orgId: event.data.orgId as string, projectId: event.data.projectId as string });
  const byId = new Map(events.map((event) => [event.id, event]));
  const wrong: string[] = [];
  const streamOrder = new Map<string, string[]>();
  for (const message of messages) {
    const event = byId.get(message.msgId as string)!;
    const owner = owners.get(event.streamId)!;
    const subject = `${PREFIX}.jobs.${owner.orgId}.${owner.projectId}.${event.streamId}.${event.type}`;
    if (message.envelope.id !== event.id) wrong.push(`message ${message.seq}: envelope ${message.envelope.id} under message id ${event.id}`);
    if (message.subject !== subject) wrong.push(`message ${message.seq}: subject ${message.subject}, expected ${subject}`);
    streamOrder.set(event.streamId, [...(streamOrder.get(event.streamId) ?? []), event.id]);
  }
  expect(wrong).toEqual([]);
  // Per job, the stream's order is the job's own order (stream position).
  const logOrder = new Map<string, LoggedEvent[]>();
  for (const event of events) logOrder.set(event.streamId, [...(logOrder.get(event.streamId) ?? []), event]);
  for (const [job, jobEventsInLog] of logOrder) {
    const expected = [...jobEventsInLog].sort((a, b) => a.position - b.position).map((event) => event.id);
    expect({ job, order: streamOrder.get(job) }).toEqual({ job, order: expected });
  }
}

beforeAll(async () => {
  assertBuilt();
  database = await createTestDatabase();
  pool = logReader(database.url);
  ({ nc, jsm } = await natsConnect());
});

afterAll(async () => {
  if (process.env.RUNWAY_TEST_DUMP) {
    for (const proc of started) process.stderr.write(`=== ${proc.args.join(' ')} (port ${proc.port}) ===\n${proc.stdout}${proc.stderr}\n`);
  }
  const steps: (() => Promise<unknown>)[] = [
    () => closeSockets(),
    () => stopAll(),
    () => (jsm ? deleteStream(jsm, STREAM) : Promise.resolve()),
    () => (nc ? nc.close() : Promise.resolve()),
    () => (pool ? pool.end() : Promise.resolve()),
    () => (database ? database.drop() : Promise.resolve()),
  ];
  for (const step of steps) await step().catch((error: unknown) => process.stderr.write(`cleanup: ${(error as Error).message}\n`));
}, 30_000);

describe('limits hold across instances (3 instances with every role, 33 runners)', () => {
  let instances: RunwayProcess[] = [];
  const free: Tenant[] = [];
  let teamCapped: Tenant;
  let teamOpen: Tenant;
  let enterprise: Tenant;
  const jobs: JobView[] = [];

  beforeAll(async () => {
    instances = await start(env(), [{ roles: 'api,gateway,relay' }, { roles: 'api,gateway,relay' }, { roles: 'api,gateway,relay' }]);
  }, 60_000);

  afterAll(async () => {
    await closeSockets();
    await stopAll();
  }, 30_000);

  it('never lets a free org have two jobs in flight, a capped team org more than its cap, or a runner two jobs; every job completes once', async () => {
    const began = performance.now();
    const apis = instances.map((instance) => new RestFixtures(instance.url));
    const on = (i: number) => apis[i % apis.length];
    const spec = await apis[0].spec();

    // 12 free orgs with 4-6 jobs each, a team org capped at 2, an uncapped team org, an enterprise org.
    const made = await Promise.all([
      ...Array.from({ length: 12 }, (_, i) => on(i).tenant('free')),
      on(0).tenant('team', { maxConcurrency: 2 }),
      on(1).tenant('team'),
      on(2).tenant('enterprise'),
    ]);
    free.push(...made.slice(0, 12));
    [teamCapped, teamOpen, enterprise] = made.slice(12);
    const work: { tenant: Tenant; n: number }[] = [
      ...free.map((tenant, i) => ({ tenant, n: 4 + (i % 3) })),
      { tenant: teamCapped, n: 8 },
      { tenant: teamOpen, n: 8 },
      { tenant: enterprise, n: 8 },
    ];
    const submissions = work.flatMap(({ tenant, n }) => Array.from({ length: n }, () => tenant));
    // Shuffled, so every org has jobs early and late.
    for (let i = submissions.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [submissions[i], submissions[j]] = [submissions[j], submissions[i]];
    }

    // 33 runners, connected round-robin to the 3 instances. Free jobs take a few ms, so free orgs
    // go from 0 to 1 job in flight (the racy moment) as often as possible; team and enterprise
    // jobs take a little longer, so the capped team org really sits at its cap while others wait.
    const slow = new Set<string>();
    const workMs = (id: string) => (slow.has(id) ? 150 + Math.floor(Math.random() * 150) : 2 + Math.floor(Math.random() * 20));
    const registered = await Promise.all(Array.from({ length: 33 }, (_, i) => on(i).runner([spec.slug])));
    const runners = await Promise.all(
      registered.map(async (runner, i) => new LoopingRunner(await connectRunner(instances[i % instances.length].url, runner.token), runner.id, workMs)),
    );

    // Two thirds of the jobs wait before any runner is ready, so the first claims all race; the
    // rest are submitted while the runners work, racing claims against submissions.
    const early = Math.floor((submissions.length * 2) / 3);
    const submit = (tenant: Tenant, i: number) =>
      on(i)
        .submit(tenant, spec.slug)
        .then((job) => {
          if (tenant.org.plan !== 'free') slow.add(job.id);
          jobs.push(job);
        });
    await Promise.all(submissions.slice(0, early).map((tenant, i) => submit(tenant, i)));
    for (const runner of runners) runner.start();
    await Promise.all(submissions.slice(early).map((tenant, i) => submit(tenant, early + i)));
    const ids = jobs.map((job) => job.id);
    expect(ids).toHaveLength(submissions.length);
    expect(submissions.length).toBeGreaterThanOrEqual(80);

    let statuses: Record<string, number> = {};
    await waitFor(
      () => `all ${ids.length} jobs to complete (now ${JSON.stringify(statuses)})`,
      async () => {
        const { rows } = await pool.query<{ status: string; n: number }>(
          `SELECT status, count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status`,
          [ids],
        );
        statuses = Object.fromEntries(rows.map((row) => [row.status, row.n]));
        return statuses.completed === ids.length ? true : undefined;
      },
      45_000,
      100,
    );
    const workedMs = performance.now() - began;
    for (const runner of runners) runner.stop();

    // The runners saw nothing but their loop: no errors, no cancels, no job pushed twice.
    expect(runners.flatMap((runner) => runner.unexpected)).toEqual([]);
    const pushed = runners.flatMap((runner) => runner.jobs);
    expect(pushed.map((job) => job.id).sort()).toEqual([...ids].sort());
    expect(pushed.every((job) => job.attempt === 1)).toBe(true);

    // Replay the log in commit order and track what was in flight.
    const events = await jobEvents(pool, ids);
    const orgOf = new Map<string, string>();
    const limitOf = new Map<string, number>([...free.map((t) => [t.org.id, 1] as [string, number]), [teamCapped.org.id, 2]]);
    const inFlight = new Map<string, Set<string>>(); // org -> jobs claimed or running
    const held = new Map<string, Set<string>>(); // runner -> jobs claimed or running
    const holder = new Map<string, string>(); // job -> runner
    const peak = new Map<string, number>();
    let peakTotal = 0;
    let total = 0;
    const violations: string[] = [];
    for (const event of events) {
      const job = event.streamId;
      switch (event.type) {
        case 'JobSubmitted':
          orgOf.set(job, event.data.orgId as string);
          break;
        case 'JobClaimed': {
          const org = orgOf.get(job)!;
          const runner = event.data.runnerId as string;
          if (event.data.attempt !== 1) violations.push(`job ${job} claimed at attempt ${event.data.attempt}`);
          const orgJobs = inFlight.get(org) ?? new Set<string>();
          orgJobs.add(job);
          inFlight.set(org, orgJobs);
          peak.set(org, Math.max(peak.get(org) ?? 0, orgJobs.size));
          const limit = limitOf.get(org);
          if (limit !== undefined && orgJobs.size > limit) violations.push(`org ${org} had ${orgJobs.size} jobs in flight (limit ${limit}): ${[...orgJobs].join(', ')}`);
          const runnerJobs = held.get(runner) ?? new Set<string>();
          runnerJobs.add(job);
          held.set(runner, runnerJobs);
          holder.set(job, runner);
          if (runnerJobs.size > 1) violations.push(`runner ${runner} held ${runnerJobs.size} jobs: ${[...runnerJobs].join(', ')}`);
          peakTotal = Math.max(peakTotal, ++total);
          break;
        }
        case 'JobStarted':
          if (holder.get(job) !== event.data.runnerId) violations.push(`job ${job} started by ${event.data.runnerId}, held by ${holder.get(job)}`);
          break;
        case 'JobCompleted':
        case 'JobFailed':
        case 'JobCanceled':
        case 'JobRequeued': {
          if (!inFlight.get(orgOf.get(job)!)?.delete(job)) violations.push(`job ${job} ended (${event.type}) without being in flight`);
          const runner = holder.get(job);
          if (runner !== undefined) held.get(runner)?.delete(job);
          holder.delete(job);
          total--;
          break;
        }
        default:
          violations.push(`unexpected ${event.type} for job ${job}`);
      }
    }
    expect(violations).toEqual([]);

    // Every job: submitted, claimed once (attempt 1), started, completed once; nothing else.
    const perJob = new Map<string, string[]>();
    for (const event of [...events].sort((a, b) => a.position - b.position)) perJob.set(event.streamId, [...(perJob.get(event.streamId) ?? []), event.type]);
    const odd = ids.filter((id) => JSON.stringify(perJob.get(id)) !== JSON.stringify(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']));
    expect(odd.map((id) => ({ id, events: perJob.get(id) }))).toEqual([]);
    expect(count(events, 'JobCompleted')).toBe(ids.length);
    expect(count(events, 'JobClaimed')).toBe(ids.length);

    // The limits were pressed, not just never reached: the capped org sat at its cap, the
    // uncapped ones went past it, and the runners worked side by side.
    expect(peak.get(teamCapped.org.id)).toBe(2);
    expect(Math.max(peak.get(teamOpen.org.id) ?? 0, peak.get(enterprise.org.id) ?? 0)).toBeGreaterThan(2);
    expect(peakTotal).toBeGreaterThanOrEqual(4);
    note(
      `limits: ${ids.length} jobs on ${runners.length} runners in ${Math.round(workedMs)} ms; ` +
        `peak in flight ${peakTotal}; capped team peak ${peak.get(teamCapped.org.id)}, open team ${peak.get(teamOpen.org.id)}, enterprise ${peak.get(enterprise.org.id)}; ` +
        `jobs per runner ${runners.map((runner) => runner.completed).join(',')}`,
    );

    // Claims and queue times in /metrics, on each instance that claimed.
    const texts = await Promise.all(instances.map((instance) => scrape(instance.url)));
    const claims = texts.map((text) => metricSum(text, 'runner_job_claim_total'));
    const queued = texts.map((text) => metricSum(text, 'job_queue_duration_seconds_count'));
    note(`metrics: runner_job_claim_total per instance ${claims.join(', ')}; job_queue_duration_seconds_count ${queued.join(', ')}`);
    for (const i of instances.keys()) {
      expect({ instance: i, claims: claims[i] > 0, queued: queued[i] > 0 }).toEqual({ instance: i, claims: true, queued: true });
    }
    // Each claim is counted once, by the instance whose gateway made it.
    expect(claims.reduce((a, b) => a + b, 0)).toBe(jobs.length);
    expect(queued.reduce((a, b) => a + b, 0)).toBe(jobs.length);
    const byTier = (tier: string) => texts.reduce((sum, text) => sum + metricSum(text, 'runner_job_claim_total', { tier }), 0);
    expect({ free: byTier('free'), team: byTier('team'), enterprise: byTier('enterprise') }).toEqual({
      free: jobs.filter((job) => free.some((t) => t.org.id === job.org)).length,
      team: 16,
      enterprise: 8,
    });

    await expectStreamHoldsTheLog();
    expectNoErrorsLogged(instances);
  }, 90_000);
});

describe('roles apart: the API on one instance, the runner gateway on another', () => {
  let a: RunwayProcess; // api, relay
  let b: RunwayProcess; // gateway

  beforeAll(async () => {
    [a, b] = await start(env(), [{ roles: 'api,relay' }, { roles: 'gateway' }]);
  }, 60_000);

  afterAll(async () => {
    await closeSockets();
    await stopAll();
  }, 30_000);

  it('pushes a job submitted on A to a waiting runner on B, and a cancel on A back to it', async () => {
    const f = new RestFixtures(a.url);
    const spec = await f.spec();
    const tenant = await f.tenant('team');
    const registered = await f.runner([spec.slug]);
    // B serves runners but not the API; A serves the API but no runner sockets.
    expect((await call(b.url, 'GET', '/v1/specs')).status).toBe(404);
    await expect(TestRunner.connect(a.url, registered.token)).rejects.toMatchObject({ status: 404 });

    const runner = await connectRunner(b.url, registered.token);
    runner.send({ type: 'ready' });
    await handledSoFar(runner); // the runner is waiting: nothing was claimable when it said ready

    const submittedAt = performance.now();
    const job = await f.submit(tenant, spec.slug);
    const pushed = await runner.next('job', 5_000);
    const pushMs = performance.now() - submittedAt;
    expect(pushed.job).toMatchObject({ id: job.id, attempt: 1, spec: spec.slug, cmd: ['./bench'] });

    expect(await runner.request({ type: 'running', job: job.id, attempt: 1 })).toEqual({ type: 'ack', job: job.id, attempt: 1, of: 'running' });
    expect(await f.job(job.id)).toMatchObject({ status: 'running', runner: registered.id });

    const canceledAt = performance.now();
    expect(await f.cancel(job.id)).toMatchObject({ status: 'canceled' });
    const cancel = await runner.next('cancel', 5_000);
    const cancelMs = performance.now() - canceledAt;
    expect(cancel).toEqual({ type: 'cancel', job: job.id, attempt: 1, reason: expect.any(String) });

    expect(await runner.request({ type: 'canceled', job: job.id, attempt: 1 })).toEqual({ type: 'ack', job: job.id, attempt: 1, of: 'canceled' });
    const events = await jobEvents(pool, [job.id]);
    expect(events.map((event) => event.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCanceled', 'JobCancelAcknowledged']);
    expect(events[4]).toMatchObject({ data: { runnerId: registered.id, attempt: 1 }, metadata: { actor: `runner:${registered.id}` } });
    note(`roles apart: job pushed ${pushMs.toFixed(1)} ms after the submit began; cancel delivered ${cancelMs.toFixed(1)} ms after the cancel began`);
  });

  it('wakes a REST long-poll claim on B for a job submitted on A', async () => {
    const f = new RestFixtures(a.url);
    const spec = await f.spec();
    const tenant = await f.tenant('team');
    const registered = await f.runner([spec.slug]);

    const parked = async () => metricSum(await scrape(b.url), 'runway_parked_claims');
    const dispatchWakeups = async () => metricSum(await scrape(b.url), 'runway_claim_wakeups_total', { cause: 'dispatch' });
    expect(await parked()).toBe(0);
    const claim = call(b.url, 'POST', '/v1/runner/claim', { token: registered.token, body: { pollTimeout: 20 }, timeoutMs: 25_000 });
    // B's own count: the claim is parked, waiting for work.
    await waitFor(() => 'the claim to be parked on B', async () => ((await parked()) === 1 ? true : undefined), 5_000, 10);
    const wokenBefore = await dispatchWakeups();
    const submittedAt = performance.now();
    const job = await f.submit(tenant, spec.slug);
    const answer = await claim;
    const answeredAt = performance.now();
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ id: job.id, attempt: 1, spec: spec.slug });
    // Woken: no longer parked; woken by the dispatch message from A, not by B's periodic sweep.
    expect(await parked()).toBe(0);
    expect((await dispatchWakeups()) - wokenBefore).toBe(1);
    expect(await f.job(job.id)).toMatchObject({ status: 'claimed', runner: registered.id });
    note(`roles apart: long-poll claim answered ${(answeredAt - submittedAt).toFixed(1)} ms after the submit began`);

    // Leave nothing in flight for the liveness checks of later tests.
    await f.cancel(job.id);
    await expectStreamHoldsTheLog();
    expectNoErrorsLogged([a, b]);
  });
});

describe('an instance dies under a running job', () => {
  const liveness = { RUNWAY_HEARTBEAT_INTERVAL_MS: '200', RUNWAY_HEARTBEAT_TIMEOUT_MS: '1500' };
  /** Runners (and jobs) per gateway: several jobs time out together, so both API instances sweep them at once. */
  const PER_GATEWAY = 4;
  let a: RunwayProcess; // api, relay
  let a2: RunwayProcess; // api
  let b1: RunwayProcess; // gateway
  let b2: RunwayProcess; // gateway

  beforeAll(async () => {
    [a, a2, b1, b2] = await start(env(liveness), [{ roles: 'api,relay' }, { roles: 'api' }, { roles: 'gateway' }, { roles: 'gateway' }]);
  }, 60_000);

  afterAll(async () => {
    await closeSockets();
    await stopAll();
  }, 30_000);

  const TIMEOUT_MS = Number(liveness.RUNWAY_HEARTBEAT_TIMEOUT_MS);

  /**
   * Waits until each of `apis` has completed `n` liveness sweeps that began after `after` (a
   * performance.now() time, default now): counted by their runway_liveness_sweeps_total, taken
   * first at a scrape after `after`. A sweep under way at that scrape may still add one, so the
   * count must grow by n + 1. Returns how long it took from `after`.
   */
  async function sweptAfter(apis: readonly RunwayProcess[], n: number, after = performance.now()): Promise<number> {
    const sweeps = async () => Promise.all(apis.map(async (api) => metricSum(await scrape(api.url), 'runway_liveness_sweeps_total')));
    let base: number[] | null = null;
    let now: number[] = [];
    await waitFor(
      () => `${n} liveness sweeps on each API instance after ${base === null ? 'the deadline' : `sweep counts ${JSON.stringify(base)}`} (now ${JSON.stringify(now)})`,
      async () => {
        if (performance.now() <= after) return undefined;
        now = await sweeps();
        base ??= now;
        return now.every((count, i) => count >= base![i] + n + 1) ? true : undefined;
      },
      10_000,
      20,
    );
    return performance.now() - after;
  }

  /** Waits until none of `ids` is `status` any more (read on the API); returns the jobs and how long it took. */
  async function leave(f: RestFixtures, ids: string[], status: string, since: number): Promise<{ jobs: JobView[]; ms: number }> {
    let last: JobView[] = [];
    await waitFor(
      () => `jobs to leave ${status}: ${JSON.stringify(last.map((job) => job.status))}`,
      async () => {
        last = await Promise.all(ids.map((id) => f.job(id)));
        return last.every((job) => job.status !== status) ? true : undefined;
      },
      8_000,
      25,
    );
    return { jobs: last, ms: performance.now() - since };
  }

  it('fails the running jobs, and requeues the claimed ones, once the gateway holding their runners is killed; each timeout is appended once', async () => {
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE status IN ('claimed', 'running')`);
    expect(rows[0].n).toBe(0); // nothing else for the liveness sweeps to time out

    const f = new RestFixtures(a.url);
    const [spec1, spec2] = await Promise.all([f.spec(), f.spec()]);
    const tenant = await f.tenant('team');
    const [regs1, regs2] = await Promise.all([
      Promise.all(Array.from({ length: PER_GATEWAY }, () => f.runner([spec1.slug]))),
      Promise.all(Array.from({ length: PER_GATEWAY }, () => f.runner([spec2.slug]))),
    ]);
    const on1 = await Promise.all(regs1.map((reg) => connectRunner(b1.url, reg.token)));
    const on2 = await Promise.all(regs2.map((reg) => connectRunner(b2.url, reg.token)));
    expect(on1[0].received[0]).toMatchObject({ type: 'welcome', heartbeatIntervalMs: 200, heartbeatTimeoutMs: 1500 });

    // On B1: each runner takes a job (maxAttempts 1) and says running. On B2: each takes one (maxAttempts 2) and never starts it.
    const jobs1 = await Promise.all(on1.map(() => f.submit(tenant, spec1.slug, { maxAttempts: 1 })));
    const jobs2 = await Promise.all(on2.map(() => f.submit(tenant, spec2.slug, { maxAttempts: 2 })));
    const stops: (() => void)[] = [];
    const holders = new Map<string, string>(); // job -> runner id
    try {
      await Promise.all(
        [...on1.map((runner, i) => ({ runner, reg: regs1[i], start: true })), ...on2.map((runner, i) => ({ runner, reg: regs2[i], start: false }))].map(
          async ({ runner, reg, start }) => {
            runner.send({ type: 'ready' });
            const { id, attempt } = (await runner.next('job', 5_000)).job as { id: string; attempt: number };
            expect(attempt).toBe(1);
            holders.set(id, reg.id);
            if (start) await runner.request({ type: 'running', job: id, attempt }, 'ack');
            stops.push(heartbeats(runner, id, attempt, 200));
          },
        ),
      );
      const ids1 = jobs1.map((job) => job.id);
      const ids2 = jobs2.map((job) => job.id);
      expect([...holders.keys()].sort()).toEqual([...ids1, ...ids2].sort());

      // Past the heartbeat timeout (from when the last job was held), both API instances swept
      // twice: the heartbeats, forwarded from B1 and B2 over NATS, kept every job alive.
      const heldAt = performance.now();
      const keptMs = await sweptAfter([a, a2], 2, heldAt + TIMEOUT_MS);
      note(`instance death: jobs alive ${Math.round(keptMs)} ms past the heartbeat timeout, two sweeps on each API instance later`);
      expect((await Promise.all(ids1.map((id) => f.job(id)))).map((job) => job.status)).toEqual(ids1.map(() => 'running'));
      expect((await Promise.all(ids2.map((id) => f.job(id)))).map((job) => job.status)).toEqual(ids2.map(() => 'claimed'));
      for (const runner of [...on1, ...on2]) {
        const recent = runner.received.slice(-5);
        expect(recent.every((frame) => frame.type === 'ack' && frame.of === 'heartbeat')).toBe(true);
      }

      // B1 dies with the sockets of the running jobs.
      const killed1 = performance.now();
      b1.child.kill('SIGKILL');
      const failed = await leave(f, ids1, 'running', killed1);
      for (const job of failed.jobs) expect(job).toMatchObject({ status: 'failed', failure: 'heartbeat_timeout', attempt: 1 });
      await Promise.all(on1.map((runner) => runner.whenClosed()));

      // B2 dies with the sockets of the claimed, never started jobs: maxAttempts 2, so they are requeued.
      const killed2 = performance.now();
      b2.child.kill('SIGKILL');
      const requeued = await leave(f, ids2, 'claimed', killed2);
      for (const job of requeued.jobs) expect(job).toMatchObject({ status: 'pending', attempt: 2, runner: null });
      note(`instance death: running jobs failed ${Math.round(failed.ms)} ms after the kill; claimed jobs requeued ${Math.round(requeued.ms)} ms after the kill`);

      // Give each API instance several chances to fire the timeouts again: three sweeps each after they were appended.
      await sweptAfter([a, a2], 3);
      for (const id of ids1) {
        const events = await jobEvents(pool, [id]);
        expect(events.map((event) => event.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobFailed']);
        expect(events[3]).toMatchObject({ data: { runnerId: holders.get(id), attempt: 1, failure: 'heartbeat_timeout' }, metadata: { actor: 'system' } });
      }
      for (const id of ids2) {
        const events = await jobEvents(pool, [id]);
        expect(events.map((event) => event.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobRequeued']);
        expect(events[2]).toMatchObject({
          data: { previousRunnerId: holders.get(id), previousAttempt: 1, attempt: 2, reason: 'heartbeat_timeout' },
          metadata: { actor: 'system' },
        });
        expect(await f.job(id)).toMatchObject({ status: 'pending', attempt: 2 });
      }

      // Two API instances watched the same jobs; between them, each timeout was counted once.
      const [textA, textA2] = await Promise.all([scrape(a.url), scrape(a2.url)]);
      const timeouts = [textA, textA2].map((text) => metricSum(text, 'runner_heartbeat_timeout_total', { kind: 'heartbeat' }));
      note(`instance death: runner_heartbeat_timeout_total{kind="heartbeat"} A=${timeouts[0]} A2=${timeouts[1]}`);
      expect(timeouts[0] + timeouts[1]).toBe(2 * PER_GATEWAY);
      expect(metricSum(textA, 'runner_heartbeat_timeout_total') + metricSum(textA2, 'runner_heartbeat_timeout_total')).toBe(2 * PER_GATEWAY);
    } finally {
      for (const stop of stops) stop();
    }

    await expectStreamHoldsTheLog();
    expectNoErrorsLogged([a, a2, b1, b2]);
  }, 40_000);
});

describe('a runner reconnects to another instance and goes on', () => {
  let x: RunwayProcess;
  let y: RunwayProcess;

  beforeAll(async () => {
    [x, y] = await start(env(), [{ roles: 'api,gateway,relay' }, { roles: 'api,gateway,relay' }]);
  }, 60_000);

  afterAll(async () => {
    await closeSockets();
    await stopAll();
  }, 30_000);

  async function runningOnX() {
    const f = new RestFixtures(x.url);
    const spec = await f.spec();
    const tenant = await f.tenant('free');
    const registered = await f.runner([spec.slug]);
    const onX = await connectRunner(x.url, registered.token);
    onX.send({ type: 'ready' });
    const job = await new RestFixtures(y.url).submit(tenant, spec.slug);
    expect((await onX.next('job', 5_000)).job).toMatchObject({ id: job.id, attempt: 1 });
    await onX.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    await onX.request({ type: 'heartbeat', job: job.id, attempt: 1 }, 'ack');
    return { f, registered, onX, job };
  }

  async function goesOnOnY(registered: { id: string; token: string }, job: JobView) {
    const onY = await connectRunner(y.url, registered.token);
    expect(await onY.request({ type: 'running', job: job.id, attempt: 1 })).toEqual({ type: 'ack', job: job.id, attempt: 1, of: 'running' });
    expect(await onY.request({ type: 'heartbeat', job: job.id, attempt: 1 })).toMatchObject({ type: 'ack', of: 'heartbeat' });
    expect(await onY.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0, stdout: 'done\n' })).toMatchObject({ type: 'ack', of: 'completed' });
    return onY;
  }

  it('after a disconnect from X: says running again on Y (ack), then completed; the job completes once', async () => {
    const { f, registered, onX, job } = await runningOnX();
    await onX.close();
    const onY = await goesOnOnY(registered, job);

    expect(await eventTypes(pool, job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
    expect(await f.job(job.id)).toMatchObject({ status: 'completed', exitCode: 0, runner: registered.id, attempt: 1 });
    // Done once: a second completed is refused and changes nothing.
    expect(await onY.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 })).toMatchObject({ type: 'error', code: 'invalid_transition' });
    expect(await eventTypes(pool, job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
  });

  it('with its socket on X still open: the new connection on Y replaces it (X closes it, 4000) and goes on', async () => {
    const { f, registered, onX, job } = await runningOnX();
    const onY = await goesOnOnY(registered, job);
    expect(await onX.whenClosed()).toMatchObject({ code: 4000 });
    expect(onY.closed).toBeNull();

    expect(await eventTypes(pool, job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
    expect(await f.job(job.id)).toMatchObject({ status: 'completed', runner: registered.id });
    await expectStreamHoldsTheLog();
    expectNoErrorsLogged([x, y]);
  });
});
