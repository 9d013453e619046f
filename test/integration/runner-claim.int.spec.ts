import { type ClientRequest, type IncomingMessage, type ServerResponse, request as httpRequest } from 'node:http';
import type { Server } from 'node:http';
import { RunnerJobs } from '../../src/modules/gateway/runner-jobs';
import { bearer, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';

/**
 * `POST /v1/runner/claim`, the long-poll for runners without a socket: a client that leaves
 * mid-wait must not have a job claimed for nobody, and the claim is limited per credential.
 */
describe('REST claim: a client that leaves mid-wait', () => {
  const s = appSuite();

  /** Starts a claim with a raw client (so the test can cut it off); resolves `closed` once the server saw it go. */
  function startClaim(token: string, pollTimeout: number): { client: ClientRequest; closed: Promise<void> } {
    const server = s.t.app.getHttpServer() as Server;
    let seen!: () => void;
    const closed = new Promise<void>((resolve) => (seen = resolve));
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      if (req.url !== '/v1/runner/claim') return;
      server.off('request', onRequest);
      res.on('close', () => seen());
    };
    server.on('request', onRequest);
    const { port } = new URL(s.t.url);
    const body = JSON.stringify({ pollTimeout });
    const client = httpRequest({
      host: '127.0.0.1',
      port: Number(port),
      path: '/v1/runner/claim',
      method: 'POST',
      headers: { ...bearer(token), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    });
    client.on('error', () => undefined); // cut off on purpose
    client.end(body);
    return { client, closed };
  }

  async function waitForEvent(jobId: string, type: string): Promise<string[]> {
    for (let i = 0; i < 200; i++) {
      const types = await s.f.eventTypes(jobId);
      if (types.includes(type)) return types;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`no ${type} for job ${jobId}: ${JSON.stringify(await s.f.eventTypes(jobId))}`);
  }

  afterEach(() => jest.restoreAllMocks());

  it('a claim that commits after the client left is released at once (runner_lost), and the job goes to the next runner', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const tenant = await f.tenant();
    const gone = await f.runner([spec.slug]);
    const other = await f.runner([spec.slug]);
    const job = await f.submit(tenant, spec.slug, { maxAttempts: 3 });

    // The client hangs up while its claim is in flight; the claim then commits for nobody.
    const runnerJobs = t.app.get(RunnerJobs);
    const claim = runnerJobs.claim.bind(runnerJobs);
    let cut: { client: ClientRequest; closed: Promise<void> } | null = null;
    jest.spyOn(runnerJobs, 'claim').mockImplementationOnce(async (...args) => {
      cut!.client.destroy();
      await cut!.closed;
      return claim(...args);
    });
    cut = startClaim(gone.token, 10);

    const types = await waitForEvent(job.id, 'JobRequeued');
    expect(types).toEqual(['JobSubmitted', 'JobClaimed', 'JobRequeued']);
    const { rows } = await t.db.query<{ data: { reason: string; previousRunnerId: string; attempt: number } }>(
      `SELECT data FROM events WHERE stream_id = $1 AND type = 'JobRequeued'`,
      [job.id],
    );
    expect(rows[0].data).toMatchObject({ reason: 'runner_lost', previousRunnerId: gone.id, attempt: 2 });
    // Not left to wait out its claim timeout: the next runner gets it now.
    const next = await t.http.post('/v1/runner/claim').set(bearer(other.token)).send({ pollTimeout: 0 }).expect(200);
    expect(next.body).toMatchObject({ id: job.id, attempt: 2 });
  });

  it('at its last attempt, a claim made for a client that left fails the job at once (runner_lost) rather than holding it', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const tenant = await f.tenant();
    const gone = await f.runner([spec.slug]);
    const job = await f.submit(tenant, spec.slug, { maxAttempts: 1 });
    const runnerJobs = t.app.get(RunnerJobs);
    const claim = runnerJobs.claim.bind(runnerJobs);
    let cut: { client: ClientRequest; closed: Promise<void> } | null = null;
    jest.spyOn(runnerJobs, 'claim').mockImplementationOnce(async (...args) => {
      cut!.client.destroy();
      await cut!.closed;
      return claim(...args);
    });
    cut = startClaim(gone.token, 10);
    expect(await waitForEvent(job.id, 'JobFailed')).toEqual(['JobSubmitted', 'JobClaimed', 'JobFailed']);
    expect(await f.job(job.id)).toMatchObject({ status: 'failed', failure: 'runner_lost' });
  });

  it('a long-poll whose client left claims nothing when work comes afterwards', async () => {
    const { t, f } = s;
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const runnerJobs = t.app.get(RunnerJobs);
    const claims = jest.spyOn(runnerJobs, 'claim');

    const poll = startClaim(runner.token, 30);
    // Its first claim found nothing and it waits; then the client goes.
    for (let i = 0; i < 200 && claims.mock.calls.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(claims).toHaveBeenCalledTimes(1);
    poll.client.destroy();
    await poll.closed;

    const job = await f.submit(tenant, spec.slug);
    // The runner asks again: the job is there for it, at its first attempt, never claimed before.
    const answer = await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(200);
    expect(answer.body).toMatchObject({ id: job.id, attempt: 1 });
    expect(await f.eventTypes(job.id)).toEqual(['JobSubmitted', 'JobClaimed']);
    // The poll that was cut off made no claim after its client left (the one above is the only other).
    expect(claims).toHaveBeenCalledTimes(2);
  });
});

describe('REST claim: rate limit', () => {
  it('answers 429 problem+json with Retry-After past the per-credential REST limit, and claims again once refilled', async () => {
    // 60 a minute: bursts of 2, then one a second.
    const t = await startTestApp({ RUNWAY_API_REQUESTS_PER_MINUTE: '60' });
    try {
      const f = new Fixtures(t);
      // The operator's requests count too: the clock refills its bucket between the fixtures.
      const spec = await f.spec();
      t.advance(2_000);
      const tenant = await f.tenant();
      t.advance(2_000);
      const runner = await f.runner([spec.slug]);
      const job = await f.submit(tenant, spec.slug);
      const metric = async () => {
        const text = (await t.http.get('/metrics').expect(200)).text;
        const line = text.split('\n').find((l) => l.startsWith('runway_rate_limited_total{limit="api_requests"} '));
        return line === undefined ? 0 : Number(line.split(' ')[1]);
      };
      const before = await metric();
      await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(200);
      await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(204);
      const refused = await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(429);
      expect(refused.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(refused.body).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect((await metric()) - before).toBe(1);
      // The refused claim changed nothing: the job is claimed once, by the first request.
      expect(await f.eventTypes(job.id)).toEqual(['JobSubmitted', 'JobClaimed']);
      t.advance(1_000);
      await t.http.post('/v1/runner/claim').set(bearer(runner.token)).send({ pollTimeout: 0 }).expect(204);
    } finally {
      await t.close();
    }
  });
});
