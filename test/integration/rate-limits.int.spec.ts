import { type TestApp, admin, bearer, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { TestRunner } from '../support/runner-client';

/**
 * Limits stop what abuse looks like (connection loops, guessed credentials, floods, claims that
 * keep finding nothing) and never a healthy runner taking its next job. Each test starts an app
 * with the limit under test at a small value; the manual clock refills the buckets.
 */

async function withApp(env: Record<string, string>, work: (t: TestApp, f: Fixtures) => Promise<void>): Promise<void> {
  const t = await startTestApp(env);
  try {
    await work(t, new Fixtures(t));
  } finally {
    await t.close();
  }
}

async function metric(t: TestApp, line: string): Promise<number> {
  const text = (await t.http.get('/metrics').expect(200)).text;
  const found = text.split('\n').find((l) => l.startsWith(line + ' '));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

describe('rate limits', () => {
  it('never refuses a runner taking job after job: 100 instant jobs back to back on the default limits', async () => {
    // The defaults, not the raised ones the other test files use.
    await withApp({ RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '60', RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '30' }, async (t, f) => {
      const spec = await f.spec();
      const tenant = await f.tenant('enterprise');
      const runner = await f.runner([spec.slug]);
      const socket = await TestRunner.hello(t.url, runner.token);
      try {
        const ids = new Set<string>();
        for (let i = 0; i < 100; i++) ids.add((await f.submit(tenant, spec.slug)).id);
        const done = new Set<string>();
        for (let i = 0; i < 100; i++) {
          const { job } = (await socket.request({ type: 'ready' }, 'job')) as unknown as { job: { id: string; attempt: number } };
          await socket.request({ type: 'running', job: job.id, attempt: job.attempt }, 'ack');
          await socket.request({ type: 'completed', job: job.id, attempt: job.attempt, exitCode: 0 }, 'ack');
          done.add(job.id);
        }
        expect(done).toEqual(ids);
        // Nothing more was said to it: no error of any kind came in between.
        expect(socket.received.filter((frame) => frame.type === 'error')).toEqual([]);
        const { rows } = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM jobs WHERE status = 'completed'`);
        expect(Number(rows[0].n)).toBe(100);
      } finally {
        await socket.close();
      }
    });
  });

  it('a runner that keeps asking and finds nothing waits instead of claiming, and still gets work the moment it comes', async () => {
    await withApp({ RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '6' }, async (t, f) => {
      const spec = await f.spec();
      const tenant = await f.tenant('team');
      const runner = await f.runner([spec.slug]);
      const socket = await TestRunner.hello(t.url, runner.token);
      try {
        const deferredBefore = await metric(t, 'runway_rate_limited_total{limit="idle_claims"}');
        // 20 asks with nothing to claim: the first finds nothing and spends the burst of one;
        // the rest wait without a claim, and none is answered with an error.
        for (let i = 0; i < 20; i++) socket.send({ type: 'ready' });
        // A later frame's answer: every ready before it was handled.
        expect(await socket.request({ type: 'heartbeat', job: '00000000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({
          type: 'error',
          code: 'not_found',
        });
        expect(socket.received.filter((frame) => frame.code === 'rate_limited')).toEqual([]);
        expect((await metric(t, 'runway_rate_limited_total{limit="idle_claims"}')) - deferredBefore).toBe(19);
        // Work that comes is pushed to it at once: it is waiting, not refused.
        const job = await f.submit(tenant, spec.slug);
        expect(await socket.next('job')).toMatchObject({ job: { id: job.id } });
      } finally {
        await socket.close();
      }
    });
  });

  it('limits REST requests per credential with 429 problem+json and Retry-After; other credentials go on', async () => {
    // 300 a minute: bursts of 10, then 5 a second.
    await withApp({ RUNWAY_API_REQUESTS_PER_MINUTE: '300' }, async (t, f) => {
      const tenant = await f.tenant('team'); // the key's first request: its project
      let answered = 0;
      for (;;) {
        const answer = await t.http.get('/v1/projects').set(bearer(tenant.key));
        if (answer.status !== 200) {
          expect(answer.status).toBe(429);
          expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
          expect(answer.body).toMatchObject({ status: 429, code: 'rate_limited' });
          expect(Number(answer.headers['retry-after'])).toBeGreaterThanOrEqual(1);
          break;
        }
        answered++;
        expect(answered).toBeLessThan(10);
      }
      expect(answered).toBe(9);
      // A refused request changes nothing: a submission refused is not a job.
      const before = await t.db.query(`SELECT count(*) AS n FROM events`);
      await t.http.post(`/v1/projects/${tenant.project.id}/jobs`).set(bearer(tenant.key)).send({ spec: 'x', cmd: ['true'] }).expect(429);
      expect((await t.db.query(`SELECT count(*) AS n FROM events`)).rows).toEqual(before.rows);
      // Another credential has its own bucket.
      await t.http.get('/v1/orgs').set(admin).expect(200);
      // A fifth of a second later, one more.
      t.advance(200);
      await t.http.get('/v1/projects').set(bearer(tenant.key)).expect(200);
      await t.http.get('/v1/projects').set(bearer(tenant.key)).expect(429);
    });
  });

  it('limits failed authentications per source address: guessing is refused with 429 before the token is looked at', async () => {
    await withApp({ RUNWAY_AUTH_FAILURES_PER_MINUTE: '3' }, async (t, f) => {
      const spec = await f.spec();
      const runner = await f.runner([spec.slug]);
      for (let i = 0; i < 3; i++) {
        const answer = await t.http.get('/v1/specs').set(bearer(`runway_key_${'0'.repeat(64)}`)).expect(401);
        expect(answer.body).toMatchObject({ code: 'unauthorized' });
      }
      // Now every attempt from this address is refused, a valid credential too, on REST and on the socket.
      const refused = await t.http.get('/v1/specs').set(admin).expect(429);
      expect(refused.body).toMatchObject({ code: 'rate_limited' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      await expect(TestRunner.connect(t.url, runner.token)).rejects.toMatchObject({ status: 429 });
      // Unauthenticated routes stay open.
      await t.http.get('/healthz').expect(200);
      // Refilled (3 a minute: one every 20 s), a valid credential works again.
      t.advance(20_000);
      await t.http.get('/v1/specs').set(admin).expect(200);
      const socket = await TestRunner.hello(t.url, runner.token);
      await socket.close();
    });
  });

  it('limits connection attempts per runner with 429 and Retry-After', async () => {
    await withApp({ RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '3' }, async (t, f) => {
      const spec = await f.spec();
      const runner = await f.runner([spec.slug]);
      for (let i = 0; i < 3; i++) await (await TestRunner.connect(t.url, runner.token)).close();
      await expect(TestRunner.connect(t.url, runner.token)).rejects.toMatchObject({ status: 429 });
      t.advance(20_000);
      await (await TestRunner.connect(t.url, runner.token)).close();
    });
  });
});
