import WebSocket from 'ws';
import { type TestApp, admin, bearer, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { transactionElsewhere } from '../support/postgres';

interface Envelope {
  id: string;
  streamId: string;
  type: string;
  position: number;
  globalPosition: number;
}

/** A client of GET /v1/events: collects envelopes; `until` waits for a condition on them. */
class FeedClient {
  readonly events: Envelope[] = [];
  private listeners: (() => void)[] = [];

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      this.events.push(JSON.parse(data.toString()) as Envelope);
      for (const listener of this.listeners) listener();
    });
  }

  static open(url: string, token: string | null, query: Record<string, string> = {}): Promise<FeedClient> {
    const search = new URLSearchParams(query).toString();
    const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/events${search ? `?${search}` : ''}`, {
      headers: token === null ? {} : { Authorization: `Bearer ${token}` },
    });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new FeedClient(socket)));
      socket.once('unexpected-response', (_request, response) => reject(Object.assign(new Error(`refused: ${response.statusCode}`), { status: response.statusCode })));
      socket.once('error', reject);
    });
  }

  until(done: (events: Envelope[]) => boolean, timeoutMs = 5_000): Promise<Envelope[]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done(this.events)) return;
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve(this.events);
      };
      const timer = setTimeout(() => reject(new Error(`timed out with ${JSON.stringify(this.events.map((e) => e.type))}`)), timeoutMs);
      this.listeners.push(check);
      check();
    });
  }

  close(): void {
    this.socket.close();
  }
}

describe('GET /v1/events (WebSocket): live job events from the log', () => {
  let t: TestApp;
  let f: Fixtures;
  const clients: FeedClient[] = [];
  const open = async (...args: Parameters<typeof FeedClient.open>) => {
    const client = await FeedClient.open(...args);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    t = await startTestApp();
    f = new Fixtures(t);
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await t.close();
  });

  it('streams an organization’s job events as they commit, and nothing of another organization', async () => {
    const spec = await f.spec();
    const mine = await f.tenant();
    const theirs = await f.tenant();
    const feed = await open(t.url, mine.key);
    const job = await f.submit(mine, spec.slug);
    await f.submit(theirs, spec.slug);
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(mine.key)).expect(202);
    const events = await feed.until((e) => e.length >= 2);
    expect(events.map((e) => [e.streamId, e.type])).toEqual([
      [job.id, 'JobSubmitted'],
      [job.id, 'JobCanceled'],
    ]);
    const stored = (await t.http.get(`/v1/jobs/${job.id}/events`).set(bearer(mine.key)).expect(200)).body.items;
    expect(events).toEqual(stored);
  });

  it('is not held back by a write transaction open in another database of the server', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const feed = await open(t.url, tenant.key);
    const elsewhere = await transactionElsewhere();
    try {
      const job = await f.submit(tenant, spec.slug);
      const events = await feed.until((e) => e.length >= 1);
      expect(events.map((e) => [e.streamId, e.type])).toEqual([[job.id, 'JobSubmitted']]);
    } finally {
      await elsewhere.end();
    }
  });

  it('filters by job and by project', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const other = await f.project(tenant.key);
    const a = await f.submit(tenant, spec.slug);
    const byJob = await open(t.url, tenant.key, { job: a.id, after: '0' });
    const byProject = await open(t.url, tenant.key, { project: other.slug });
    const b = await f.submit({ key: tenant.key, project: other }, spec.slug);
    await t.http.post(`/v1/jobs/${a.id}/cancel`).set(bearer(tenant.key)).expect(202);
    expect((await byJob.until((e) => e.length >= 2)).map((e) => e.streamId)).toEqual([a.id, a.id]);
    expect((await byProject.until((e) => e.length >= 1)).map((e) => e.streamId)).toEqual([b.id]);
  });

  it('resumes after a global position with every later event exactly once, in order, while events keep coming', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const first = await f.submit(tenant, spec.slug);
    const from = (await t.http.get(`/v1/jobs/${first.id}/events`).set(admin).expect(200)).body.items[0].globalPosition;
    const before = await Promise.all(Array.from({ length: 20 }, () => f.submit(tenant, spec.slug)));
    // Connect while more are being submitted: the catch-up and the live tail must meet without a gap.
    const submitting = Promise.all(Array.from({ length: 20 }, () => f.submit(tenant, spec.slug)));
    const feed = await open(t.url, tenant.key, { after: String(from) });
    const after = await submitting;
    const expected = [...before, ...after].map((j) => j.id).sort();
    // One more job after them all: the feed is in log order, so whatever else it would send
    // (a gap filled twice where catch-up and live tail meet) comes before this job's event.
    const last = await f.submit(tenant, spec.slug);
    await feed.until((e) => e.some((event) => event.streamId === last.id));
    const events = feed.events.slice(0, feed.events.findIndex((event) => event.streamId === last.id));
    expect(events.map((e) => e.streamId).sort()).toEqual(expected);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(events.every((e) => e.type === 'JobSubmitted')).toBe(true);
    // In the log's order: (transaction id, global position).
    const { rows } = await t.db.query<{ id: string }>(
      `SELECT id FROM events WHERE id = ANY($1::uuid[]) ORDER BY transaction_id, global_position`,
      [feed.events.map((e) => e.id)],
    );
    expect(feed.events.map((e) => e.id)).toEqual(rows.map((r) => r.id));
  });

  it('refuses bad requests at the upgrade', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const other = await f.tenant();
    const job = await f.submit(other, spec.slug);
    const runner = await f.runner([spec.slug]);
    await expect(FeedClient.open(t.url, null)).rejects.toMatchObject({ status: 401 });
    await expect(FeedClient.open(t.url, runner.token)).rejects.toMatchObject({ status: 403 });
    await expect(FeedClient.open(t.url, tenant.key, { job: job.id })).rejects.toMatchObject({ status: 404 });
    await expect(FeedClient.open(t.url, tenant.key, { project: 'nope' })).rejects.toMatchObject({ status: 404 });
    await expect(FeedClient.open(t.url, tenant.key, { after: 'x' })).rejects.toMatchObject({ status: 400 });
    await expect(FeedClient.open(t.url, tenant.key, { after: '999999999' })).rejects.toMatchObject({ status: 404 });
    // The operator may follow any organization's job.
    const operator = await open(t.url, admin.Authorization.replace('Bearer ', ''), { job: job.id, after: '0' });
    expect((await operator.until((e) => e.length >= 1))[0].streamId).toBe(job.id);
    // No other WebSocket endpoint exists.
    await expect(
      new Promise((resolve, reject) => {
        const socket = new WebSocket(`${t.url.replace(/^http/, 'ws')}/v1/nowhere`);
        socket.once('unexpected-response', (_q, response) => reject(Object.assign(new Error('refused'), { status: response.statusCode })));
        socket.once('open', resolve);
      }),
    ).rejects.toMatchObject({ status: 404 });
  });
});
