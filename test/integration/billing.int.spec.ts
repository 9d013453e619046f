import { billingViews } from '../../src/modules/jobs/job.views';
import { Liveness } from '../../src/modules/liveness/liveness';
import { checkpointName } from '../../src/modules/projections/registry';
import { ADMIN_TOKEN, type TestApp, admin, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';
import { TestRunner } from '../support/runner-client';

const PROBLEM = /application\/problem\+json/;
const START_OF_MONTH = '2026-05-01T00:00:00.000Z'; // the manual clock starts on 2026-05-01T12:00Z

type Tenant = Awaited<ReturnType<Fixtures['tenant']>>;
type Project = Tenant['project'];

describe('usage (billed minutes per organization)', () => {
  const suite = appSuite({
    // Long enough that no heartbeat timeout fires while the clock jumps over a run.
    RUNWAY_HEARTBEAT_TIMEOUT_MS: '3600000',
    RUNWAY_CLAIM_TIMEOUT_MS: '20000',
    RUNWAY_JOB_TIMEOUT_GRACE_MS: '30000',
  });
  const { connect } = suite;
  let t: TestApp;
  let f: Fixtures;
  let liveness: Liveness;
  beforeAll(() => {
    ({ t, f } = suite);
    liveness = t.app.get(Liveness);
  });

  /** A spec, a runner for it, connected. */
  async function runner() {
    const spec = await f.spec();
    const registered = await f.runner([spec.slug]);
    const socket = await connect(registered.token);
    return { spec, runner: registered, socket };
  }

  /** Submits a job to `project`, has `socket` claim it and report it running at the clock's time. */
  async function startJob(socket: TestRunner, tenant: Tenant, project: Project, spec: string, extra: Record<string, unknown> = {}) {
    const job = await f.submit({ key: tenant.key, project }, spec, extra);
    socket.send({ type: 'ready' });
    expect((await socket.next('job')).job).toMatchObject({ id: job.id, attempt: 1 });
    await socket.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    return job.id;
  }

  async function complete(socket: TestRunner, job: string): Promise<void> {
    await socket.request({ type: 'completed', job, attempt: 1, exitCode: 0 }, 'ack');
  }

  /** Waits (bounded) until the billing projector has applied every committed event. */
  async function billingCaughtUp(): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const { rows } = await t.db.query<{ behind: string }>(
        `SELECT count(*) AS behind FROM events e
          WHERE NOT EXISTS (SELECT 1 FROM checkpoints c
                             WHERE c.name = $1 AND (e.transaction_id, e.global_position) <= (c.transaction_id, c.global_position))`,
        [checkpointName(billingViews)],
      );
      if (Number(rows[0].behind) === 0) return;
      if (Date.now() > deadline) throw new Error(`the billing projector is still ${rows[0].behind} events behind`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  const usage = (org: string, token: string, query: Record<string, string> = {}) =>
    t.http.get(`/v1/orgs/${org}/usage`).query(query).set(bearer(token));

  it('bills each job that ran ceil(run time / 60 s) to its completion, failure, cancel or timeout, and no job that never ran', async () => {
    const { spec, socket } = await runner();
    const tenant = await f.tenant();
    const a = tenant.project;
    const b = await f.project(tenant.key);
    const billed: Record<string, number> = {};

    // 30 s -> 1 minute; 61 s -> 2; done within the same millisecond -> 0; failed after 45 s -> 1.
    let job = await startJob(socket, tenant, a, spec.slug);
    t.advance(30_000);
    await complete(socket, job);
    billed[job] = 1;
    job = await startJob(socket, tenant, a, spec.slug);
    t.advance(61_000);
    await complete(socket, job);
    billed[job] = 2;
    job = await startJob(socket, tenant, b, spec.slug);
    await complete(socket, job);
    billed[job] = 0;
    job = await startJob(socket, tenant, a, spec.slug);
    t.advance(45_000);
    await socket.request({ type: 'failed', job, attempt: 1, error: 'exit status 3', exitCode: 3 }, 'ack');
    billed[job] = 1;

    // Canceled by the org after 90 s of running: billed to the cancel, not to the runner's acknowledgment.
    job = await startJob(socket, tenant, b, spec.slug);
    t.advance(90_000);
    await t.http.post(`/v1/jobs/${job}/cancel`).set(bearer(tenant.key)).expect(202);
    expect(await socket.next('cancel')).toMatchObject({ job });
    t.advance(5_000);
    await socket.request({ type: 'canceled', job, attempt: 1 }, 'ack');
    billed[job] = 2;

    // Timed out (60 s + 30 s grace): canceled by liveness 150 s after it started, billed to then.
    job = await startJob(socket, tenant, b, spec.slug, { timeout: 60 });
    t.advance(150_000);
    await liveness.sweep();
    expect(await f.job(job)).toMatchObject({ status: 'canceled', failure: 'job_timeout', billedMinutes: 3 });
    expect(await socket.next('cancel')).toMatchObject({ job });
    await socket.request({ type: 'canceled', job, attempt: 1 }, 'ack');
    billed[job] = 3;

    // Never ran: canceled while pending, and claimed but never started (claim timeout, last attempt).
    const pending = await f.submit({ key: tenant.key, project: a }, spec.slug);
    await t.http.post(`/v1/jobs/${pending.id}/cancel`).set(bearer(tenant.key)).expect(202);
    const lost = await f.submit({ key: tenant.key, project: a }, spec.slug);
    socket.send({ type: 'ready' });
    expect((await socket.next('job')).job).toMatchObject({ id: lost.id });
    t.advance(20_001);
    await liveness.sweep();
    expect(await f.job(lost.id)).toMatchObject({ status: 'failed', failure: 'claim_timeout', billedMinutes: null });
    expect(await f.job(pending.id)).toMatchObject({ status: 'canceled', billedMinutes: null });

    // The usage agrees with each job's own billedMinutes (from the jobs view).
    for (const [id, minutes] of Object.entries(billed)) expect({ id, billed: (await f.job(id)).billedMinutes }).toEqual({ id, billed: minutes });

    await billingCaughtUp();
    const expected = {
      org: tenant.org.id,
      from: START_OF_MONTH,
      to: t.clock.now().toISOString(),
      minutes: 9,
      jobs: 6,
      byProject: [
        { project: b.id, projectSlug: b.slug, minutes: 5, jobs: 3 },
        { project: a.id, projectSlug: a.slug, minutes: 4, jobs: 3 },
      ],
    };
    expect((await usage(tenant.org.slug, tenant.key).expect(200)).body).toEqual(expected);
    expect((await usage(tenant.org.id, ADMIN_TOKEN).expect(200)).body).toEqual(expected);
    const rows = await t.db.query(`SELECT job_id FROM job_billing WHERE org_id = $1`, [tenant.org.id]);
    expect(rows.rows.map((r) => r.job_id).sort()).toEqual(Object.keys(billed).sort());
  });

  it('counts the jobs that finished in [from, to): from inclusive, to exclusive', async () => {
    const { spec, socket } = await runner();
    const tenant = await f.tenant();
    const p = tenant.project;
    const finished: string[] = [];
    for (const [seconds, gap] of [
      [60, 1_000],
      [120, 1_000],
      [150, 0],
    ]) {
      const job = await startJob(socket, tenant, p, spec.slug);
      t.advance(seconds * 1000);
      await complete(socket, job);
      finished.push(t.clock.now().toISOString()); // billed 1, 2 and 3 minutes
      t.advance(gap);
    }
    const [t1, t2, t3] = finished;
    const plus1ms = (iso: string) => new Date(new Date(iso).getTime() + 1).toISOString();
    await billingCaughtUp();

    const range = async (from: string, to: string) => {
      const body = (await usage(tenant.org.slug, tenant.key, { from, to }).expect(200)).body;
      expect(body).toMatchObject({ from: new Date(from).toISOString(), to: new Date(to).toISOString() });
      return { minutes: body.minutes, jobs: body.jobs, projects: body.byProject.length };
    };
    expect(await range(t1, t3)).toEqual({ minutes: 3, jobs: 2, projects: 1 });
    expect(await range(plus1ms(t1), plus1ms(t3))).toEqual({ minutes: 5, jobs: 2, projects: 1 });
    expect(await range(plus1ms(t1), t2)).toEqual({ minutes: 0, jobs: 0, projects: 0 });
    expect(await range('2026-04-01T00:00:00Z', t1)).toEqual({ minutes: 0, jobs: 0, projects: 0 });
    expect(await range('2026-05-01', '2026-05-02')).toEqual({ minutes: 6, jobs: 3, projects: 1 });
    // An offset is read as the instant it names.
    const body = (await usage(tenant.org.slug, tenant.key, { from: '2026-05-01T14:00:00+02:00', to: '2026-05-02' }).expect(200)).body;
    expect(body).toMatchObject({ from: '2026-05-01T12:00:00.000Z', minutes: 6, jobs: 3 });
    expect(body.byProject).toEqual([{ project: p.id, projectSlug: p.slug, minutes: 6, jobs: 3 }]);
  });

  it('shows an org key its own org only (404 for any other, whatever the query), the operator every org', async () => {
    const { spec, socket } = await runner();
    const mine = await f.tenant();
    const other = await f.tenant();
    const job = await startJob(socket, mine, mine.project, spec.slug);
    t.advance(10_000);
    await complete(socket, job);
    // `to` defaults to now and is exclusive: a job that finished this very millisecond counts from the next.
    t.advance(1);
    await billingCaughtUp();

    for (const ref of [mine.org.slug, mine.org.id]) {
      expect((await usage(ref, mine.key).expect(200)).body).toMatchObject({ org: mine.org.id, minutes: 1, jobs: 1 });
      expect((await t.http.get(`/v1/orgs/${ref}/usage`).set(admin).expect(200)).body).toMatchObject({ minutes: 1, jobs: 1 });
      const queries: Record<string, string>[] = [{}, { from: 'soon' }, { from: '2026-05-02', to: '2026-05-01' }];
      for (const query of queries) {
        const res = await usage(ref, other.key, query).expect(404);
        expect(res.body).toMatchObject({ code: 'not_found', status: 404 });
        expect(res.headers['content-type']).toMatch(PROBLEM);
        expect(JSON.stringify(res.body)).not.toContain(mine.org.id);
      }
    }
    expect((await usage(other.org.slug, other.key).expect(200)).body).toMatchObject({ org: other.org.id, minutes: 0, jobs: 0, byProject: [] });
    await t.http.get('/v1/orgs/no-such-org/usage').set(admin).expect(404);
    await t.http.get('/v1/orgs/00000000-0000-7000-8000-000000000000/usage').set(admin).expect(404);
    const runnerToken = (await f.runner([spec.slug])).token;
    expect((await usage(mine.org.slug, runnerToken).expect(403)).body.code).toBe('forbidden');
    expect((await t.http.get(`/v1/orgs/${mine.org.slug}/usage`).expect(401)).body.code).toBe('unauthorized');
  });

  it('refuses bad ranges with 400 validation_failed problem+json', async () => {
    const { org, key } = await f.org();
    const cases: Record<string, string>[] = [
      { from: '2026-05-01T06:00:00Z', to: '2026-05-01T06:00:00Z' },
      { from: '2026-05-02', to: '2026-05-01' },
      { from: '2026-06-01' }, // after now, the default `to`
      { from: 'yesterday' },
      { to: '2026-02-30' },
      { from: '2026-13-01' },
      { from: '2026-05-01T25:00:00Z' },
      { from: '1714564800' },
      { from: '2025-01-01', to: '2026-01-02T00:00:00.001Z' },
      { month: '5' },
      { from: '' },
    ];
    for (const query of cases) {
      const res = await usage(org.slug, key, query);
      expect({ query, status: res.status, code: res.body.code }).toEqual({ query, status: 400, code: 'validation_failed' });
      expect(res.headers['content-type']).toMatch(PROBLEM);
    }
    // A repeated parameter arrives as an array.
    const twice = await t.http.get(`/v1/orgs/${org.slug}/usage?from=2026-05-01&from=2026-05-02`).set(bearer(key));
    expect({ status: twice.status, code: twice.body.code }).toEqual({ status: 400, code: 'validation_failed' });
    // Exactly 366 days is allowed.
    await usage(org.slug, key, { from: '2025-01-01', to: '2026-01-02' }).expect(200);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await t.http.get('/openapi.json').expect(200)).body;
    const op = doc.paths['/v1/orgs/{org}/usage']?.get;
    expect(op).toBeDefined();
    expect(op.parameters.map((p: { name: string }) => p.name).sort()).toEqual(['from', 'org', 'to']);
    expect(Object.keys(doc.components.schemas.UsageResponse.properties).sort()).toEqual(['byProject', 'from', 'jobs', 'minutes', 'org', 'to']);
  });
});
