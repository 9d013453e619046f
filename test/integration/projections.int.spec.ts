import { createHash, randomUUID } from 'node:crypto';
import { ManualClock } from '../../src/common/clock';
import { UuidV7Generator } from '../../src/common/ids';
import type { JobSubmittedData } from '../../src/events/job-events';
import { upcast } from '../../src/events/upcasters';
import { decodeJobEvent } from '../../src/events/decoders';
import { evolve } from '../../src/machines/job.machine';
import { CommandHandler } from '../../src/modules/event-store/command-handler';
import { EventStore } from '../../src/modules/event-store/event-store';
import { Liveness } from '../../src/modules/liveness/liveness';
import { ProjectionRebuilder } from '../../src/modules/projections/rebuild';
import { ALL_PROJECTIONS, ASYNC_PROJECTIONS, checkpointName } from '../../src/modules/projections/registry';
import { type TestApp, admin, bearer, projectorsCaughtUp } from '../support/app';
import { note } from '../support/cluster';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';
import { TestRunner } from '../support/runner-client';
import { transactionElsewhere } from '../support/postgres';

/** A small deterministic generator, so a failing history can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

describe('projections: views derived from the log, rebuilt and compared', () => {
  const suite = appSuite({
    RUNWAY_HEARTBEAT_TIMEOUT_MS: '10000',
    RUNWAY_CLAIM_TIMEOUT_MS: '20000',
    RUNWAY_JOB_TIMEOUT_GRACE_MS: '5000',
    RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '100000',
  });
  const { open } = suite;
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => ({ t, f } = suite));

  const caughtUp = () => projectorsCaughtUp(t);

  const rebuilder = () =>
    new ProjectionRebuilder(t.db, t.app.get(EventStore), ALL_PROJECTIONS, t.clock);

  /** Every row of every view, for comparing before and after a swap. */
  async function snapshot(): Promise<Record<string, unknown[]>> {
    const out: Record<string, unknown[]> = {};
    for (const table of ALL_PROJECTIONS.flatMap((p) => [...p.tables])) {
      out[table] = (await t.db.query(`SELECT to_jsonb(x) AS row FROM ${table} x ORDER BY to_jsonb(x)::text`)).rows;
    }
    return out;
  }

  /**
   * One random history, the same for the same seed: every step waits for what it causes before
   * the next. Runners claim over REST without waiting (`pollTimeout: 0`: a job or 204 at once)
   * and never say `ready`, so the gateway pushes nothing in the background; every cancel the log
   * sends a runner is waited for on its socket (and answered or not) before anything else; only
   * the test's own liveness sweeps fire deadlines (the background timer is stopped), on the manual
   * clock; and the clock moves between submissions, so the queue's order (by submission time)
   * does not come down to random ids. Fresh specs, tenants and runners each time, so a second
   * history on the same app cannot touch the first one's jobs. Returns the jobs in submission
   * order with each one's event types.
   */
  async function history(seed: number, rounds: number): Promise<{ jobs: string[]; types: string[][] }> {
    const next = random(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)];
    const specs = [await f.spec(), await f.spec()];
    const tenants = [];
    for (let i = 0; i < 3; i++) tenants.push(await f.tenant('free'));
    tenants.push(await f.tenant('team', { maxConcurrency: 2 }), await f.tenant('enterprise'));
    // Admin history too: a plan change, a revoked key, a renamed and an archived runner.
    await t.http.patch(`/v1/orgs/${tenants[0].org.id}`).set(admin).send({ plan: 'team' }).expect(200);
    await t.http.delete(`/v1/orgs/${tenants[1].org.id}/keys/${(await t.http.post(`/v1/orgs/${tenants[1].org.id}/keys`).set(admin).send({})).body.id}`).set(admin).expect(204);
    const runners = [];
    for (let i = 0; i < 5; i++) runners.push(await f.runner(i % 2 === 0 ? [specs[0].slug] : [specs[0].slug, specs[1].slug]));
    await t.http.patch(`/v1/runners/${runners[4].id}`).set(admin).send({ name: 'renamed', archived: true }).expect(200);
    const sockets: TestRunner[] = [];
    for (const r of runners.slice(0, 4)) sockets.push(await TestRunner.hello(t.url, r.token, { cpuModel: `cpu-${r.slug}` }));
    open.push(...sockets);
    const socketOf = new Map(runners.slice(0, 4).map((r, i) => [r.id, sockets[i]]));

    // Cancels the log sent to a runner since the last look: each one's frame, taken from the runner's socket.
    let seen = Number((await t.db.query<{ n: string }>(`SELECT coalesce(max(global_position), 0) AS n FROM events`)).rows[0].n);
    async function cancelsDelivered(): Promise<void> {
      const { rows } = await t.db.query<{ job: string; runner: string | null; attempt: number; position: string }>(
        `SELECT stream_id AS job, data->>'runnerId' AS runner, (data->>'attempt')::int AS attempt, global_position AS position
           FROM events WHERE global_position > $1 ORDER BY global_position`,
        [seen],
      );
      const delivered: { job: string; attempt: number; socket: TestRunner }[] = [];
      for (const row of rows) {
        seen = Math.max(seen, Number(row.position));
        const socket = row.runner === null ? undefined : socketOf.get(row.runner);
        if (socket === undefined || socket.closed !== null) continue;
        const { rows: canceled } = await t.db.query(`SELECT 1 FROM events WHERE global_position = $1 AND type = 'JobCanceled'`, [row.position]);
        if (canceled.length === 0) continue;
        // Each socket gets its cancels in the order they were committed.
        expect(await socket.next('cancel')).toMatchObject({ type: 'cancel', job: row.job, attempt: row.attempt });
        delivered.push({ job: row.job, attempt: row.attempt, socket });
      }
      // Answered or not in submission order: one sweep fires its timeouts in whatever order
      // PostgreSQL returns the in-flight jobs, which must not decide who draws which number.
      delivered.sort((x, y) => jobs.indexOf(x.job) - jobs.indexOf(y.job));
      for (const { job, attempt, socket } of delivered) {
        if (next() < 0.6) expect((await socket.request({ type: 'canceled', job, attempt })).type).toMatch(/^(ack|error)$/);
      }
    }

    const jobs: string[] = [];
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < 3; i++) {
        const tenant = pick(tenants);
        const job = await f.submit(tenant, pick(specs).slug, {
          maxAttempts: 1 + Math.floor(next() * 3),
          timeout: 60,
        });
        jobs.push(job.id);
        t.advance(1);
        if (next() < 0.1) await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(tenant.key)).expect(202);
      }
      // Each runner asks for work and does something with what it gets.
      for (const [i, socket] of sockets.entries()) {
        const claim = await t.http.post('/v1/runner/claim').set(bearer(runners[i].token)).send({ pollTimeout: 0 });
        if (claim.status === 204) continue;
        expect(claim.status).toBe(200);
        const { id, attempt } = claim.body as { id: string; attempt: number };
        const roll = next();
        if (roll < 0.15) continue; // takes it and goes silent: a claim timeout later
        expect(await socket.request({ type: 'running', job: id, attempt })).toMatchObject({ type: 'ack', of: 'running' });
        t.advance(Math.floor(next() * 150_000));
        if (roll < 0.55) await socket.request({ type: 'completed', job: id, attempt, exitCode: 0, stdout: `round ${round}` }, 'ack');
        else if (roll < 0.75) await socket.request({ type: 'failed', job: id, attempt, error: 'exit status 2', exitCode: 2 }, 'ack');
        else if (roll < 0.85) {
          await t.http.post(`/v1/jobs/${id}/cancel`).set(admin).expect(202);
          await cancelsDelivered();
        } // else: left running, for a heartbeat or job timeout
      }
      t.advance(Math.floor(next() * 30_000));
      await t.app.get(Liveness).sweep();
      await cancelsDelivered();
    }
    // The runners leave, and every timeout fires, until nothing moves any more.
    await Promise.all(open.splice(0).map((runner) => runner.close()));
    const count = async () => Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM events`)).rows[0].n);
    for (let settled = 0, before = -1; settled < 2; ) {
      t.advance(3_600_000);
      await t.app.get(Liveness).sweep();
      await caughtUp();
      const now = await count();
      settled = now === before ? settled + 1 : 0;
      before = now;
    }
    const { rows } = await t.db.query<{ job: string; types: string[] }>(
      `SELECT stream_id AS job, array_agg(type ORDER BY stream_position) AS types FROM events WHERE stream_id = ANY($1::uuid[]) GROUP BY stream_id`,
      [jobs],
    );
    const typesOf = new Map(rows.map((row) => [row.job, row.types]));
    return { jobs, types: jobs.map((job) => typesOf.get(job) ?? []) };
  }

  const SEED = Number(process.env.RUNWAY_TEST_SEED ?? 20261130);

  it(`rebuilds a long random history into views equal to the live ones, row for row; the same seed gives the same history (seed ${SEED})`, async () => {
    // Only this test's sweeps fire deadlines: a background sweep between a move of the manual
    // clock and the step after it would make the history depend on timing.
    clearInterval((t.app.get(Liveness) as unknown as { timer: NodeJS.Timeout }).timer);
    const first = await history(SEED, 40);
    const second = await history(SEED, 40);
    // Same seed, same history: per job (in submission order), the same events.
    expect(second.types).toEqual(first.types);
    note(`projections history: seed ${SEED}, ${first.jobs.length} jobs, event types per job sha256 ${createHash('sha256').update(JSON.stringify(first.types)).digest('hex')}`);
    const jobs = [...first.jobs, ...second.jobs];

    const { rows } = await t.db.query<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM jobs GROUP BY status`);
    const statuses = Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
    // The history covers the lifecycle.
    for (const status of ['completed', 'failed', 'canceled']) expect(statuses[status]).toBeGreaterThan(0);
    const kinds = new Set(first.types.flat());
    for (const type of ['JobRequeued', 'JobCancelAcknowledged', 'JobStarted']) expect(kinds).toContain(type);
    const events = Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM events`)).rows[0].n);
    expect(events).toBeGreaterThan(800);

    const before = await snapshot();
    const check = await rebuilder().rebuild({ swap: false });
    expect(check.tables.filter((table) => table.onlyLive > 0 || table.onlyRebuilt > 0)).toEqual([]);
    expect(check).toMatchObject({ equal: true, swapped: false, events });
    expect(check.tables.find((table) => table.table === 'jobs')).toMatchObject({ liveRows: jobs.length, rebuiltRows: jobs.length });
    expect(check.tables.find((table) => table.table === 'job_billing')!.liveRows).toBeGreaterThan(0);

    const swapped = await rebuilder().rebuild({ swap: true });
    expect(swapped).toMatchObject({ equal: true, swapped: true });
    expect(await snapshot()).toEqual(before);
    // The projectors go on from the rebuilt position.
    await caughtUp();
  }, 120_000);

  it('shows a changed view row as a difference, and a rebuild puts it right', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const job = await f.submit(tenant, spec.slug);
    await caughtUp();
    await t.db.query(`UPDATE jobs SET status = 'running', attempt = 3 WHERE id = $1`, [job.id]);
    await t.db.query(`UPDATE orgs SET plan = 'enterprise' WHERE id = $1`, [tenant.org.id]);

    const check = await rebuilder().rebuild({ swap: false });
    expect(check.equal).toBe(false);
    const differing = check.tables.filter((table) => table.onlyLive > 0).map((table) => table.table).sort();
    expect(differing).toEqual(['jobs', 'orgs']);
    expect((await f.job(job.id)).status).toBe('running'); // --check changes nothing

    const repaired = await rebuilder().rebuild({ swap: true });
    expect(repaired.equal).toBe(false); // it reports what it found...
    expect(await f.job(job.id)).toMatchObject({ status: 'pending', attempt: 1 }); // ...and puts it right
    expect((await rebuilder().rebuild({ swap: false })).equal).toBe(true);
  }, 60_000);

  it('shows where each runner is: offline, idle, busy, with its fingerprint and when it was last seen', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const view = async () => (await t.http.get(`/v1/runners/${runner.id}`).set(admin).expect(200)).body;
    expect(await view()).toMatchObject({ state: 'offline', lastSeenAt: null, currentJob: null, fingerprint: null });

    const socket = await TestRunner.hello(t.url, runner.token, { cpuModel: 'AMD EPYC 9654', cores: 96, governor: 'performance' });
    open.push(socket);
    await caughtUp();
    expect(await view()).toMatchObject({
      state: 'idle',
      lastSeenAt: t.clock.now().toISOString(),
      fingerprint: { cpuModel: 'AMD EPYC 9654', cores: 96, governor: 'performance' },
    });

    const job = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    t.advance(4_000);
    await socket.request({ type: 'heartbeat', job: job.id, attempt: 1 }, 'ack');
    await caughtUp();
    // Seen at its last heartbeat (not written to the log, heard by liveness).
    expect(await view()).toMatchObject({ state: 'busy', currentJob: job.id, lastSeenAt: t.clock.now().toISOString() });
    // The fingerprint is in JobStarted too, so an audit shows which hardware ran the benchmark.
    const started = (await t.http.get(`/v1/jobs/${job.id}/events`).set(admin).expect(200)).body.items[2];
    expect(started).toMatchObject({ type: 'JobStarted', data: { fingerprint: { cpuModel: 'AMD EPYC 9654' } } });

    await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');
    t.advance(1_000);
    await socket.close();
    // The gateway records the disconnect once it hears the close: wait for that event, then the view.
    for (let i = 0; ; i++) {
      const { rows } = await t.db.query(`SELECT 1 FROM events WHERE stream_id = $1 AND type = 'RunnerDisconnected'`, [runner.id]);
      if (rows.length > 0) break;
      if (i === 200) throw new Error('no RunnerDisconnected within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await caughtUp();
    expect(await view()).toMatchObject({ state: 'offline', currentJob: null, lastSeenAt: t.clock.now().toISOString() });
    const types = (await t.db.query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_position`, [runner.id])).rows;
    expect(types.map((r) => r.type)).toEqual(['RunnerRegistered', 'RunnerConnected', 'RunnerDisconnected']);
  });

  it('reads a stored version-1 event as the current version, in commands, projections and rebuilds', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const clock = new ManualClock('2026-02-01T00:00:00.000Z');
    const store = new EventStore(t.db, clock, new UuidV7Generator(clock));
    const jobId = randomUUID();
    // JobSubmitted as version 1 wrote it: no `idempotency`.
    const v1: Omit<JobSubmittedData, 'idempotency'> = {
      jobId,
      orgId: tenant.org.id,
      projectId: tenant.project.id,
      spec: spec.slug,
      specId: spec.id,
      plan: 'team',
      priority: 200,
      image: null,
      cmd: ['make', 'bench'],
      entrypoint: null,
      env: {},
      timeout: 600,
      filePaths: [],
      maxAttempts: 1,
      sourceIp: null,
      submittedAt: '2026-02-01T00:00:00.000Z',
    };
    await t.db.transaction((tx) =>
      store.append(tx, { id: jobId, type: 'job' }, 0, [{ type: 'JobSubmitted', schemaVersion: 1, data: v1 }], {
        correlationId: 'v1',
        causationId: null,
        actor: 'system',
      }),
    );
    const [stored] = await store.readStream(jobId);
    expect(stored).toMatchObject({ schemaVersion: 1 });
    expect(stored.data).not.toHaveProperty('idempotency');
    expect(upcast(stored)).toMatchObject({ type: 'JobSubmitted', schemaVersion: 2, data: { ...v1, idempotency: null } });

    const { state } = await t.app.get(CommandHandler).load(jobId, evolve, decodeJobEvent);
    expect(state).toMatchObject({ jobId, status: 'pending', idempotency: null, cmd: ['make', 'bench'] });
    // The stored event still verifies: it is read as it was hashed.
    await expect(store.verifyStream(jobId)).resolves.toEqual({ valid: true, eventCount: 1 });
    // A rebuild folds it into the jobs view, and a command on it works.
    await rebuilder().rebuild({ swap: true });
    expect(await f.job(jobId)).toMatchObject({ status: 'pending', spec: spec.slug });
    await t.http.post(`/v1/jobs/${jobId}/cancel`).set(bearer(tenant.key)).expect(202);
  });

  it('keeps projecting while a write transaction is open in another database, and reports the gate’s age for this one’s alone', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const ageOfGate = async () => {
      const text = (await t.http.get('/metrics').expect(200)).text;
      const line = /^runway_log_gate_age_seconds (\S+)$/m.exec(text);
      if (line === null) throw new Error('no runway_log_gate_age_seconds in /metrics');
      return Number(line[1]);
    };
    await caughtUp();
    const elsewhere = await transactionElsewhere();
    try {
      // The billing projector's job_billing row comes only from the log, behind the gate.
      const job = await f.submit(tenant, spec.slug);
      await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(tenant.key)).expect(202);
      await caughtUp();
      expect(await ageOfGate()).toBe(0);
    } finally {
      await elsewhere.end();
    }
    // A transaction of this database's, with an id, holds the gate: its age shows.
    const blocker = await t.db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT pg_current_xact_id()');
      expect(await ageOfGate()).toBeGreaterThan(0);
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    expect(await ageOfGate()).toBe(0);
  });

  it('reports how far behind each log follower is', async () => {
    await caughtUp();
    const text = (await t.http.get('/metrics').expect(200)).text;
    for (const projection of ASYNC_PROJECTIONS) {
      expect(text).toContain(`runway_log_follower_lag_events{follower="${checkpointName(projection)}"} 0`);
      expect(text).toContain(`runway_log_follower_lag_seconds{follower="${checkpointName(projection)}"} 0`);
    }
  });
});
