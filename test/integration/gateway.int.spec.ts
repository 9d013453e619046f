import { createHash } from 'node:crypto';
import { RunnerGateway } from '../../src/modules/gateway/runner-gateway';
import { Liveness } from '../../src/modules/liveness/liveness';
import { Metrics } from '../../src/modules/metrics/metrics';
import { type TestApp, admin, bearer, projectorsCaughtUp, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';
import { TestRunner } from '../support/runner-client';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const NO_SUCH_JOB = '01a00000-0000-7000-8000-000000000000';

/**
 * Every frame the runner sent before has been handled, and none of them got it a job: frames of a
 * socket are handled in order, a job claimed for a `ready` is pushed while it is handled, and a
 * heartbeat for a job that does not exist is answered not_found (a job frame would come first).
 */
async function handledWithoutJob(socket: TestRunner): Promise<void> {
  expect(await socket.request({ type: 'heartbeat', job: NO_SUCH_JOB, attempt: 1 })).toMatchObject({ type: 'error', code: 'not_found' });
}

async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('runner gateway (one process, in-process bus)', () => {
  const suite = appSuite({
    RUNWAY_MAX_MESSAGE_BYTES: String(512 * 1024),
    RUNWAY_HEARTBEAT_INTERVAL_MS: '1000',
    RUNWAY_HEARTBEAT_TIMEOUT_MS: '10000',
    RUNWAY_CLAIM_TIMEOUT_MS: '20000',
    RUNWAY_JOB_TIMEOUT_GRACE_MS: '30000',
  });
  const { open, connect } = suite;
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => ({ t, f } = suite));

  /** A runner for a fresh spec, a tenant, and that runner waiting for work. */
  async function setup(plan = 'team') {
    const spec = await f.spec();
    const tenant = await f.tenant(plan);
    const runner = await f.runner([spec.slug]);
    const socket = await connect(runner.token);
    return { spec, tenant, runner, socket };
  }

  it('welcomes a runner, pushes a job when one is submitted, and records the run to completion with its output', async () => {
    const { spec, tenant, runner, socket } = await setup();
    socket.send({ type: 'ready' });
    // Nothing to do yet: the runner waits; the job is pushed when it is submitted, no polling.
    const submitted = await f.submit(tenant, spec.slug, { env: { A: '1' }, filePaths: ['out/result.json'] });
    const pushed = await socket.next('job', 2_000);
    expect(pushed.job).toEqual({
      id: submitted.id,
      attempt: 1,
      spec: spec.slug,
      image: null,
      cmd: ['./bench'],
      entrypoint: null,
      env: { A: '1' },
      timeout: 3600,
      filePaths: ['out/result.json'],
    });
    expect((await f.job(submitted.id)).status).toBe('claimed');

    expect(await socket.request({ type: 'running', job: submitted.id, attempt: 1 })).toEqual({
      type: 'ack',
      job: submitted.id,
      attempt: 1,
      of: 'running',
    });
    expect(await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 }, 'ack')).toMatchObject({ of: 'heartbeat' });
    const stdout = 'bench: 12.5 ns/iter\n';
    const file = JSON.stringify({ mean: 12.5 });
    expect(
      await socket.request(
        { type: 'completed', job: submitted.id, attempt: 1, exitCode: 0, stdout, stderr: '', files: { 'out/result.json': file } },
        'ack',
      ),
    ).toMatchObject({ of: 'completed' });

    const job = await f.job(submitted.id);
    expect(job).toMatchObject({ status: 'completed', exitCode: 0, runner: runner.id, failure: null });
    const output = (await t.http.get(`/v1/jobs/${submitted.id}/output`).set(bearer(tenant.key)).expect(200)).body;
    expect(output).toEqual({ exitCode: 0, stdout, stderr: '', files: { 'out/result.json': file }, truncated: false });

    const events = (await t.http.get(`/v1/jobs/${submitted.id}/events`).set(bearer(tenant.key)).expect(200)).body.items;
    expect(events.map((e: { type: string }) => e.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
    expect(events[2].data.fingerprint).toEqual({ cpuModel: 'Test CPU', cores: 4 });
    expect(events[2].metadata.actor).toBe(`runner:${runner.id}`);
    // The event keeps sizes and digests; the content is stored apart.
    expect(events[3].data.output).toEqual({
      stdout: { bytes: Buffer.byteLength(stdout), sha256: sha256(stdout) },
      stderr: { bytes: 0, sha256: sha256('') },
      files: [{ path: 'out/result.json', bytes: Buffer.byteLength(file), sha256: sha256(file) }],
      truncated: false,
    });
    expect(JSON.stringify(events)).not.toContain('12.5 ns/iter');
  });

  it('refuses a job definition heavier than 256 KiB (it must fit in an event and a JetStream message)', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const res = await t.http
      .post(`/v1/projects/${tenant.project.id}/jobs`)
      .set(bearer(tenant.key))
      .send({ spec: spec.slug, cmd: Array.from({ length: 5 }, () => 'x'.repeat(60_000)) })
      .expect(400);
    expect(res.body).toMatchObject({ code: 'validation_failed', detail: expect.stringContaining('256 KiB') });
  });

  it('records a failed run with its exit code', async () => {
    const { spec, tenant, socket } = await setup();
    const submitted = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
    await socket.request({ type: 'failed', job: submitted.id, attempt: 1, error: 'exit status 3', exitCode: 3, stderr: 'boom' }, 'ack');
    expect(await f.job(submitted.id)).toMatchObject({ status: 'failed', exitCode: 3, failure: 'nonzero_exit' });
    const output = (await t.http.get(`/v1/jobs/${submitted.id}/output`).set(bearer(tenant.key)).expect(200)).body;
    expect(output).toMatchObject({ exitCode: 3, stderr: 'boom', stdout: null });
  });

  it('refuses messages about another runner’s job or a stale attempt, and changes nothing', async () => {
    const { spec, tenant, socket } = await setup();
    const other = await connect((await f.runner([spec.slug])).token);
    const submitted = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
    const before = await f.eventTypes(submitted.id);

    for (const frame of [
      { type: 'heartbeat', job: submitted.id, attempt: 1 },
      { type: 'completed', job: submitted.id, attempt: 1, exitCode: 0 },
      { type: 'failed', job: submitted.id, attempt: 1, error: 'x' },
      { type: 'running', job: submitted.id, attempt: 1 },
    ]) {
      expect(await other.request(frame)).toMatchObject({ type: 'error', code: 'invalid_transition', job: submitted.id });
    }
    for (const frame of [
      { type: 'heartbeat', job: submitted.id, attempt: 2 },
      { type: 'completed', job: submitted.id, attempt: 2, exitCode: 0 },
    ]) {
      expect(await socket.request(frame)).toMatchObject({ type: 'error', code: 'invalid_transition', job: submitted.id });
    }
    expect(await socket.request({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({
      type: 'error',
      code: 'not_found',
    });
    expect(await f.eventTypes(submitted.id)).toEqual(before);
    expect((await f.job(submitted.id)).status).toBe('running');
    // The rightful runner goes on.
    await socket.request({ type: 'completed', job: submitted.id, attempt: 1, exitCode: 0 }, 'ack');
  });

  it('answers malformed frames with bad_message and keeps the socket open; closes it on an oversized frame (1009)', async () => {
    const { runner } = await setup();
    const socket = await TestRunner.connect(t.url, runner.token);
    open.push(socket);
    expect(await socket.request({ type: 'ready' })).toMatchObject({ type: 'error', code: 'bad_message', message: 'send hello first' });
    for (const frame of [
      'not json',
      '[1,2]',
      'null',
      JSON.stringify({ type: 'teleport' }),
      JSON.stringify({ noType: true }),
      JSON.stringify({ type: 'hello', version: 7 }),
      JSON.stringify({ type: 'heartbeat', job: 'nope', attempt: 1 }),
      JSON.stringify({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 0 }),
      JSON.stringify({ type: 'completed', job: '00000000-0000-7000-8000-000000000000', attempt: 1, exitCode: 2 }),
      JSON.stringify({ type: 'ready', extra: 1 }),
      JSON.stringify({ type: 'failed', job: '00000000-0000-7000-8000-000000000000', attempt: 1, error: 'x', files: { a: 1 } }),
    ]) {
      socket.send(frame);
      expect({ frame, reply: await socket.next() }).toMatchObject({ frame, reply: { type: 'error', code: 'bad_message' } });
    }
    expect(await socket.request({ type: 'hello', version: '1', capacity: 1, fingerprint: {} })).toEqual({
      type: 'welcome',
      runner: runner.id,
      heartbeatIntervalMs: 1000,
      heartbeatTimeoutMs: 10000,
      maxMessageBytes: 512 * 1024,
    });
    socket.send({ type: 'hello', version: '1', fingerprint: { blob: 'x'.repeat(600 * 1024) } });
    expect(await socket.whenClosed()).toMatchObject({ code: 1009 });
  });

  it('refuses unknown, revoked and archived runner tokens at the upgrade, and closes the socket of a rotated token', async () => {
    const { runner, socket } = await setup();
    await expect(TestRunner.connect(t.url, null)).rejects.toMatchObject({ status: 401 });
    await expect(TestRunner.connect(t.url, `runway_runner_${'0'.repeat(64)}`)).rejects.toMatchObject({ status: 401 });
    const key = (await f.org()).key;
    await expect(TestRunner.connect(t.url, key)).rejects.toMatchObject({ status: 403 });

    const rotated = (await t.http.post(`/v1/runners/${runner.id}/token`).set(admin).expect(201)).body.token;
    expect(await socket.whenClosed()).toMatchObject({ code: 1008 });
    await expect(TestRunner.connect(t.url, runner.token)).rejects.toMatchObject({ status: 401 });
    const again = await connect(rotated);
    await t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ archived: true }).expect(200);
    expect(await again.whenClosed()).toMatchObject({ code: 1008 });
    await expect(TestRunner.connect(t.url, rotated)).rejects.toMatchObject({ status: 401 });
  });

  it('pushes a cancel to the runner, frees the slot at once, and records the runner’s acknowledgment', async () => {
    const { spec, tenant, socket } = await setup('free');
    const submitted = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
    // 90 s of running, heartbeating as a live runner does (so no sweep can take it for lost).
    for (let i = 0; i < 18; i++) {
      t.advance(5_000);
      await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 }, 'ack');
    }
    const canceled = (await t.http.post(`/v1/jobs/${submitted.id}/cancel`).set(bearer(tenant.key)).expect(202)).body;
    expect(canceled).toMatchObject({ status: 'canceled', billedMinutes: 2 });
    expect(await socket.next('cancel', 2_000)).toEqual({ type: 'cancel', job: submitted.id, attempt: 1, reason: expect.any(String) });
    // The free org's slot is free at once: its next job can be claimed.
    const next = await f.submit(tenant, spec.slug);
    // A heartbeat for the canceled job is answered with the cancel again, not an error.
    expect(await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 })).toMatchObject({ type: 'cancel', job: submitted.id });
    expect(await socket.request({ type: 'canceled', job: submitted.id, attempt: 1 }, 'ack')).toMatchObject({ of: 'canceled' });
    expect(await f.eventTypes(submitted.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCanceled', 'JobCancelAcknowledged']);
    expect(await socket.request({ type: 'canceled', job: submitted.id, attempt: 1 })).toMatchObject({ type: 'error', code: 'invalid_transition' });
    socket.send({ type: 'ready' });
    expect((await socket.next('job')).job).toMatchObject({ id: next.id });
  });

  it('redelivers an unacknowledged cancel when the runner reconnects, and lets a reconnecting runner go on with its job', async () => {
    const { spec, tenant, runner, socket } = await setup();
    const first = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: first.id, attempt: 1 }, 'ack');
    await socket.close();

    // Reconnected: says running again and goes on.
    const back = await connect(runner.token);
    expect(await back.request({ type: 'running', job: first.id, attempt: 1 })).toMatchObject({ type: 'ack', of: 'running' });
    await back.request({ type: 'heartbeat', job: first.id, attempt: 1 }, 'ack');
    expect(await f.eventTypes(first.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted']);

    // Canceled while the runner is away: the cancel comes with the next welcome.
    await back.close();
    await t.http.post(`/v1/jobs/${first.id}/cancel`).set(admin).expect(202);
    const third = await TestRunner.connect(t.url, runner.token);
    open.push(third);
    third.send({ type: 'hello', version: 'test-1', capacity: 1, fingerprint: {} });
    await third.next('welcome');
    expect(await third.next('cancel')).toMatchObject({ job: first.id, attempt: 1 });
    await third.request({ type: 'canceled', job: first.id, attempt: 1 }, 'ack');
  });

  it('a runner that says hello without the jobs it held loses them at once and gets the next job', async () => {
    const { spec, tenant, runner, socket } = await setup();
    // Attempt 1 running when the runner goes away.
    const running = await f.submit(tenant, spec.slug, { maxAttempts: 3 });
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: running.id, attempt: 1 }, 'ack');
    await socket.close();
    const next = await f.submit(tenant, spec.slug, { maxAttempts: 3 });

    // Back after a restart that took the job with it: it holds nothing.
    const back = await TestRunner.connect(t.url, runner.token);
    open.push(back);
    back.send({ type: 'hello', version: 'test-1', capacity: 1, fingerprint: {}, jobs: [] });
    await back.next('welcome');
    // Lost at once (a job that ran is not retried), not after the heartbeat timeout.
    expect(await f.job(running.id)).toMatchObject({ status: 'failed', failure: 'runner_lost' });
    expect(await f.eventTypes(running.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobFailed']);
    // And it is free: its next ask gets the next job, with no time passing.
    expect(await back.request({ type: 'ready' })).toMatchObject({ type: 'job', job: { id: next.id } });

    // A claimed job it does not hold goes back to the queue for its next attempt.
    await back.close();
    const again = await TestRunner.connect(t.url, runner.token);
    open.push(again);
    again.send({ type: 'hello', version: 'test-1', capacity: 1, fingerprint: {}, jobs: [] });
    await again.next('welcome');
    expect(await f.job(next.id)).toMatchObject({ status: 'pending', attempt: 2 });
    const requeued = (await t.db.query<{ data: { reason: string } }>(`SELECT data FROM events WHERE stream_id = $1 AND type = 'JobRequeued'`, [next.id])).rows;
    expect(requeued.map((row) => row.data.reason)).toEqual(['runner_lost']);
    // A job it says it holds is left alone: running again goes on.
    const kept = (await again.request({ type: 'ready' })) as unknown as { job: { id: string; attempt: number } };
    expect(kept.job.id).toBe(next.id);
    await again.request({ type: 'running', job: next.id, attempt: 2 }, 'ack');
    await again.close();
    const holding = await TestRunner.connect(t.url, runner.token);
    open.push(holding);
    holding.send({ type: 'hello', version: 'test-1', capacity: 1, fingerprint: {}, jobs: [{ job: next.id, attempt: 2 }] });
    await holding.next('welcome');
    expect(await holding.request({ type: 'heartbeat', job: next.id, attempt: 2 })).toMatchObject({ type: 'ack' });
    expect(await f.job(next.id)).toMatchObject({ status: 'running', attempt: 2 });
    // A list that is not one is refused, and the socket stays open for a correct hello.
    expect(await holding.request({ type: 'hello', version: 'test-1', capacity: 1, fingerprint: {}, jobs: [{ job: 'x', attempt: 1 }] })).toMatchObject({
      type: 'error',
      code: 'bad_message',
    });
  });

  it('claims by tier, then fair share between organizations, then age; a free org gets one job at a time', async () => {
    const spec = await f.spec();
    const free = await f.tenant('free');
    const teamA = await f.tenant('team');
    const teamB = await f.tenant('team');
    const enterprise = await f.tenant('enterprise');
    const order: string[] = [];
    const submit = async (name: string, tenant: typeof free) => {
      t.advance(1_000);
      const job = await f.submit(tenant, spec.slug);
      order.push(name);
      return { name, id: job.id };
    };
    const jobs = [
      await submit('free-1', free),
      await submit('free-2', free),
      await submit('teamA-1', teamA),
      await submit('teamA-2', teamA),
      await submit('teamB-1', teamB),
      await submit('enterprise-1', enterprise),
    ];
    const names = new Map(jobs.map((j) => [j.id, j.name]));
    const claimed: string[] = [];
    const sockets: TestRunner[] = [];
    for (let i = 0; i < 5; i++) {
      const socket = await connect((await f.runner([spec.slug])).token);
      sockets.push(socket);
      socket.send({ type: 'ready' });
      claimed.push(names.get(((await socket.next('job')).job as { id: string }).id) as string);
    }
    // Enterprise first; then team: A (oldest), then B (fewer in flight than A), then A again;
    // then free-1; free-2 waits while free-1 is in flight.
    expect(claimed).toEqual(['enterprise-1', 'teamA-1', 'teamB-1', 'teamA-2', 'free-1']);
    const sixth = await connect((await f.runner([spec.slug])).token);
    sixth.send({ type: 'ready' });
    await handledWithoutJob(sixth);
    const free2 = jobs.find((j) => j.name === 'free-2')!.id;
    expect(await f.job(free2)).toMatchObject({ status: 'pending', runner: null });
    // free-1 ends: free-2 is pushed to the waiting runner.
    const freeJob = jobs.find((j) => j.name === 'free-1')!.id;
    await sockets[4].request({ type: 'running', job: freeJob, attempt: 1 }, 'ack');
    await sockets[4].request({ type: 'completed', job: freeJob, attempt: 1, exitCode: 0 }, 'ack');
    expect(names.get(((await sixth.next('job', 2_000)).job as { id: string }).id)).toBe('free-2');
  });

  it('hands new work to the runner that has waited longest, one claim at a time, and the others keep waiting', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant('enterprise');
    const sockets: TestRunner[] = [];
    for (let i = 0; i < 4; i++) {
      const socket = await connect((await f.runner([spec.slug])).token);
      socket.send({ type: 'ready' });
      // Frames are handled in order: once this is refused, the ready before it has been (and
      // found nothing to claim), so the runners wait in this order.
      await socket.request({ type: 'heartbeat', job: '01a00000-0000-7000-8000-000000000000', attempt: 1 }, 'error');
      sockets.push(socket);
    }
    const jobs: string[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await f.submit(tenant, spec.slug);
      expect(((await sockets[i].next('job', 2_000)).job as { id: string }).id).toBe(job.id);
      jobs.push(job.id);
    }
    await handledWithoutJob(sockets[3]);
    // The first finishes its job and asks again: it now waits behind the fourth.
    await sockets[0].request({ type: 'running', job: jobs[0], attempt: 1 }, 'ack');
    await sockets[0].request({ type: 'completed', job: jobs[0], attempt: 1, exitCode: 0, stdout: '', stderr: '', files: {} }, 'ack');
    sockets[0].send({ type: 'ready' });
    await sockets[0].request({ type: 'heartbeat', job: '01a00000-0000-7000-8000-000000000000', attempt: 1 }, 'error');
    const fourth = await f.submit(tenant, spec.slug);
    expect(((await sockets[3].next('job', 2_000)).job as { id: string }).id).toBe(fourth.id);
    await handledWithoutJob(sockets[0]);
    // Each job was claimed once, by the runner it was pushed to.
    const claims = await t.db.query<{ stream_id: string }>(`SELECT stream_id FROM events WHERE type = 'JobClaimed' AND stream_id = ANY($1::uuid[])`, [[...jobs, fourth.id]]);
    expect(claims.rows.map((row) => row.stream_id).sort()).toEqual([...jobs, fourth.id].sort());
    const fifth = await f.submit(tenant, spec.slug);
    expect(((await sockets[0].next('job', 2_000)).job as { id: string }).id).toBe(fifth.id);
  });

  it('never gives a runner more jobs than its capacity', async () => {
    const { spec, tenant, socket } = await setup();
    const first = await f.submit(tenant, spec.slug);
    t.advance(1_000); // the older goes first
    const second = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    expect((await socket.next('job')).job).toMatchObject({ id: first.id });
    socket.send({ type: 'ready' });
    await handledWithoutJob(socket);
    expect(await f.job(second.id)).toMatchObject({ status: 'pending', runner: null });
  });

  it('gives a runner of capacity 2 two jobs at once, and a third only once one of them ends', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant('enterprise');
    const runner = await f.runner([spec.slug]);
    const socket = await TestRunner.connect(t.url, runner.token);
    open.push(socket);
    socket.send({ type: 'hello', version: 'test-1', capacity: 2, fingerprint: {} });
    await socket.next('welcome');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      t.advance(1_000); // oldest first
      ids.push((await f.submit(tenant, spec.slug)).id);
    }
    const held: string[] = [];
    for (let i = 0; i < 2; i++) {
      socket.send({ type: 'ready' });
      held.push(((await socket.next('job')).job as { id: string }).id);
    }
    expect(held).toEqual(ids.slice(0, 2));
    expect((await f.job(ids[1])).runner).toBe(runner.id);
    // At its capacity: a third ask gets nothing, and the third job waits.
    socket.send({ type: 'ready' });
    await handledWithoutJob(socket);
    expect(await f.job(ids[2])).toMatchObject({ status: 'pending', runner: null });
    // One ends: the runner, still waiting, is pushed the third.
    await socket.request({ type: 'running', job: ids[0], attempt: 1 }, 'ack');
    await socket.request({ type: 'completed', job: ids[0], attempt: 1, exitCode: 0 }, 'ack');
    socket.send({ type: 'ready' });
    expect(((await socket.next('job', 2_000)).job as { id: string }).id).toBe(ids[2]);
    expect(await f.job(ids[2])).toMatchObject({ status: 'claimed', runner: runner.id });
  });

  it('claims over REST for runners without a socket: 204 when nothing comes, the job when one is submitted while waiting', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(204);
    const gateway = t.app.get(RunnerGateway, { strict: false });
    const metrics = t.app.get(Metrics, { strict: false });
    const wakeups = async () => {
      const { values } = await metrics.claimWakeups.get();
      const of = (cause: string) => values.find((value) => value.labels.cause === cause)?.value ?? 0;
      return { dispatch: of('dispatch'), sweep: of('sweep') };
    };
    expect(gateway.parkedClaims).toBe(0);
    const waiting = t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 10 });
    const answer = waiting.then((res) => res);
    // The server's own count: the claim is waiting to be woken.
    await until('the long-poll claim to be parked', () => gateway.parkedClaims === 1);
    const before = await wakeups();
    const submitted = await f.submit(tenant, spec.slug);
    const res = await answer;
    expect(gateway.parkedClaims).toBe(0);
    // Woken by the submission's dispatch message, not by the gateway's periodic sweep.
    const after = await wakeups();
    expect(after.dispatch - before.dispatch).toBe(1);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: submitted.id, attempt: 1, spec: spec.slug });
    await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 'soon' }).expect(400);
    await t.http.post('/v1/runner/claim').set(admin).send({}).expect(403);
  });

  describe('liveness (manual clock)', () => {
    let liveness: Liveness;
    beforeAll(() => {
      liveness = t.app.get(Liveness);
    });

    it('requeues a claimed job that never starts, until its last attempt fails with claim_timeout', async () => {
      const { spec, tenant, socket } = await setup();
      const submitted = await f.submit(tenant, spec.slug, { maxAttempts: 2 });
      socket.send({ type: 'ready' });
      await socket.next('job');
      // Heartbeats keep the runner alive, but it never says running.
      t.advance(20_001);
      await liveness.sweep();
      expect(await f.job(submitted.id)).toMatchObject({ status: 'pending', attempt: 2, runner: null });
      socket.send({ type: 'ready' });
      expect((await socket.next('job')).job).toMatchObject({ id: submitted.id, attempt: 2 });
      t.advance(20_001);
      await liveness.sweep();
      expect(await f.job(submitted.id)).toMatchObject({ status: 'failed', failure: 'claim_timeout', attempt: 2 });
      expect(await f.eventTypes(submitted.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobRequeued', 'JobClaimed', 'JobFailed']);
    });

    it('fails a running job whose runner went silent with heartbeat_timeout; heartbeats keep it alive', async () => {
      const { spec, tenant, socket } = await setup();
      const submitted = await f.submit(tenant, spec.slug, { maxAttempts: 3 });
      socket.send({ type: 'ready' });
      await socket.next('job');
      await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
      for (let i = 0; i < 3; i++) {
        t.advance(6_000);
        await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 }, 'ack');
        await liveness.sweep();
        expect((await f.job(submitted.id)).status).toBe('running');
      }
      t.advance(10_001);
      await liveness.sweep();
      // Once it ran, a lost attempt is not retried.
      expect(await f.job(submitted.id)).toMatchObject({ status: 'failed', failure: 'heartbeat_timeout', attempt: 1 });
      // Sweeping again (or on another instance) appends nothing more.
      await liveness.sweep();
      expect(await f.eventTypes(submitted.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobFailed']);
    });

    it('answers a sweep asked for while another is under way with a sweep that sees the time of the ask', async () => {
      const { spec, tenant, socket } = await setup();
      const submitted = await f.submit(tenant, spec.slug, { maxAttempts: 1 });
      socket.send({ type: 'ready' });
      await socket.next('job');
      await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
      // The first sweep reads the clock, then waits for the jobs table (another session locks it).
      const locker = await t.db.pool.connect();
      let first: Promise<void>;
      let second: Promise<void>;
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE');
        first = liveness.sweep();
        for (let i = 0; i < 200; i++) {
          const { rows } = await locker.query(`SELECT 1 FROM pg_locks WHERE relation = 'jobs'::regclass AND NOT granted`);
          if (rows.length > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        // Past the heartbeat timeout only now, after the first sweep read its time.
        t.advance(30_001);
        second = liveness.sweep();
      } finally {
        await locker.query('COMMIT');
        locker.release();
      }
      await first;
      await second;
      expect(await f.job(submitted.id)).toMatchObject({ status: 'failed', failure: 'heartbeat_timeout', attempt: 1 });
    });

    it('cancels a job running past its timeout and grace with job_timeout, and pushes the cancel', async () => {
      const { spec, tenant, socket } = await setup();
      const submitted = await f.submit(tenant, spec.slug, { timeout: 60 });
      socket.send({ type: 'ready' });
      await socket.next('job');
      await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
      for (let elapsed = 0; elapsed <= 90_000; elapsed += 5_000) {
        t.advance(5_000);
        await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 }, 'ack');
        await liveness.sweep();
      }
      expect(await f.job(submitted.id)).toMatchObject({ status: 'canceled', failure: 'job_timeout', billedMinutes: 2 });
      expect(await socket.next('cancel', 2_000)).toMatchObject({ job: submitted.id, attempt: 1 });
    });
  });

  it('writes nothing to PostgreSQL for heartbeats', async () => {
    const { spec, tenant, socket } = await setup();
    const submitted = await f.submit(tenant, spec.slug);
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: submitted.id, attempt: 1 }, 'ack');
    // The projectors finish what came before (their writes are not the heartbeats').
    await projectorsCaughtUp(t);
    // Count every statement that writes to any table of this database from here on.
    await t.db.query(`
      CREATE TABLE test_writes (table_name text, op text);
      CREATE FUNCTION test_count_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO test_writes VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$;
      DO $$ DECLARE t text; BEGIN
        FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'test_writes' LOOP
          EXECUTE format('CREATE TRIGGER test_count_write AFTER INSERT OR UPDATE OR DELETE ON %I
                          FOR EACH STATEMENT EXECUTE FUNCTION test_count_write()', t);
        END LOOP;
      END $$;`);
    try {
      // 100 heartbeats inside one heartbeat timeout (the manual clock does not move the gateway's
      // own alive timer, so more time would look like a lost gateway).
      for (let i = 0; i < 100; i++) {
        t.advance(50);
        await socket.request({ type: 'heartbeat', job: submitted.id, attempt: 1 }, 'ack');
      }
      await t.app.get(Liveness).sweep();
      expect((await t.db.query(`SELECT * FROM test_writes`)).rows).toEqual([]);
      // The counter does count: the next state change writes.
      await socket.request({ type: 'completed', job: submitted.id, attempt: 1, exitCode: 0 }, 'ack');
      expect((await t.db.query(`SELECT DISTINCT table_name FROM test_writes`)).rows.map((r) => r.table_name)).toEqual(
        expect.arrayContaining(['events', 'jobs']),
      );
    } finally {
      await t.db.query(`
        DO $$ DECLARE t text; BEGIN
          FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'test_writes' LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS test_count_write ON %I', t);
          END LOOP;
        END $$;
        DROP FUNCTION test_count_write() CASCADE;
        DROP TABLE test_writes;`);
    }
  });

  it('caps the frames a socket may send, without closing the socket', async () => {
    const capped = await startTestApp({ RUNWAY_SOCKET_MESSAGES_PER_SECOND: '5' });
    try {
      const cf = new Fixtures(capped);
      const spec = await cf.spec();
      const runner = await cf.runner([spec.slug]);
      const socket = await TestRunner.hello(capped.url, runner.token);
      open.push(socket);
      // A burst past the frame cap (5/s, bursts of 10) is refused frame by frame.
      for (let i = 0; i < 20; i++) socket.send({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 });
      const replies = [];
      for (let i = 0; i < 20; i++) replies.push(await socket.next());
      const limited = replies.filter((r) => r.code === 'rate_limited').length;
      expect(limited).toBeGreaterThanOrEqual(9);
      // The rest were handled: an unknown job is not found.
      expect(replies.filter((r) => r.code === 'not_found').length).toBe(20 - limited);
      expect(socket.closed).toBeNull();
      // Refilled after a second: handled again.
      capped.advance(1_000);
      expect(await socket.request({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({ code: 'not_found' });
    } finally {
      await capped.close();
    }
  });

  it('exposes the gateway’s metrics', async () => {
    const text = (await t.http.get('/metrics').expect(200)).text;
    for (const name of [
      'runner_job_claim_total',
      'job_queue_duration_seconds_bucket',
      'runner_heartbeat_timeout_total',
      'runner_job_timeout_total',
      'runway_queue_depth{tier="free"}',
      'runway_connected_runners',
    ]) {
      expect(text).toContain(name);
    }
  });
});
