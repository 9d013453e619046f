import { type TestApp, admin, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';
import { TestRunner } from '../support/runner-client';

interface QueueItem {
  id: string;
  org: string;
  project: string;
  priority: number;
  createdAt: string;
  position: number;
  ahead: number;
  eta: string | null;
  waitingFor: { reason: string } & Record<string, unknown>;
}

interface QueueBody {
  spec: string;
  total: number;
  items: QueueItem[];
  nextCursor: string | null;
}

type Tenant = Awaited<ReturnType<Fixtures['tenant']>>;

describe('queue view (claim order, eta, waitingFor)', () => {
  const suite = appSuite({
    // The manual clock moves minutes in these tests: nothing may time out meanwhile.
    RUNWAY_HEARTBEAT_TIMEOUT_MS: '86400000',
    RUNWAY_CLAIM_TIMEOUT_MS: '86400000',
  });
  const { connect } = suite;
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => ({ t, f } = suite));

  /** A runner of the spec that is connected and never asks for work. */
  async function idleRunner(spec: string): Promise<TestRunner> {
    return connect((await f.runner([spec])).token);
  }

  async function queue(spec: string, auth = admin, query: Record<string, string> = {}): Promise<QueueBody> {
    return (await t.http.get('/v1/queue').query({ spec, ...query }).set(auth).expect(200)).body;
  }

  /** `runner_status` is kept by a projector: polls until the queue has seen the runners connect. */
  async function untilConnected(spec: string): Promise<QueueBody> {
    for (let i = 0; i < 100; i++) {
      const body = await queue(spec);
      if (body.items.every((item) => item.waitingFor.reason !== 'no_runner')) return body;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`the runners of ${spec} never showed as connected`);
  }

  async function submit(tenant: Tenant, spec: string): Promise<string> {
    t.advance(1_000);
    return (await f.submit(tenant, spec)).id;
  }

  /** A runner of the spec asks for work; resolves with the id of the job pushed to it. */
  async function claim(spec: string): Promise<{ id: string; socket: TestRunner }> {
    const socket = await connect((await f.runner([spec])).token);
    socket.send({ type: 'ready' });
    return { id: ((await socket.next('job', 3_000)).job as { id: string }).id, socket };
  }

  it('lists the jobs in the exact order the scheduler claims them, with held jobs last (mixed tiers, free orgs, maxConcurrency)', async () => {
    const spec = (await f.spec()).slug;
    const other = (await f.spec()).slug;
    const enterprise = await f.tenant('enterprise');
    const capped = await f.tenant('team', { maxConcurrency: 2 });
    const team = await f.tenant('team');
    const busy = await f.tenant('team');
    const frees = [await f.tenant('free'), await f.tenant('free'), await f.tenant('free')];
    const anon = await f.tenant('unclaimed');

    // In flight on another spec: the busy team org has one job running (fair share counts it),
    // and the third free org is at its limit already.
    const elsewhere = [await submit(busy, other), await submit(frees[2], other)];
    for (const id of elsewhere) expect((await claim(other)).id).toBe(id);

    const names = new Map<string, string>();
    const add = async (name: string, tenant: Tenant) => names.set(await submit(tenant, spec), name);
    await add('busy-1', busy);
    await add('free0-1', frees[0]);
    await add('capped-1', capped);
    await add('anon-1', anon);
    await add('capped-2', capped);
    await add('free1-1', frees[1]);
    await add('free2-1', frees[2]);
    await add('capped-3', capped);
    await add('free0-2', frees[0]);
    await add('busy-2', busy);
    await add('enterprise-1', enterprise);
    await add('team-1', team);
    await add('free1-2', frees[1]);
    await add('anon-2', anon);
    await add('free2-2', frees[2]);
    await add('enterprise-2', enterprise);

    await idleRunner(spec);
    let view = await untilConnected(spec);
    const name = (item: QueueItem) => names.get(item.id);
    expect(view.total).toBe(16);
    expect(view.items.map(name)).toEqual([
      'enterprise-1',
      'enterprise-2',
      // team tier: capped and team have none in flight, capped's job is older; then team, though
      // its job is the youngest; then all at one in flight, the oldest job first
      'capped-1',
      'team-1',
      'busy-1',
      'capped-2',
      'busy-2',
      'free0-1',
      'free1-1',
      'anon-1',
      // held: capped at 2, each free org at 1, one unclaimed job per IP
      'capped-3',
      'free2-1',
      'free0-2',
      'free1-2',
      'free2-2',
      'anon-2',
    ]);
    expect(view.items.map((i) => i.position)).toEqual(view.items.map((_, i) => i + 1));
    expect(view.items.slice(10).map((i) => i.waitingFor.reason)).toEqual(Array(6).fill('org_limit'));
    expect(view.items.find((i) => name(i) === 'free2-1')!.waitingFor).toEqual({ reason: 'org_limit', scope: 'org', inFlight: 1, limit: 1, queuedAhead: 0 });
    expect(view.items.find((i) => name(i) === 'capped-3')!.waitingFor).toEqual({ reason: 'org_limit', scope: 'org', inFlight: 0, limit: 2, queuedAhead: 2 });
    expect(view.items.find((i) => name(i) === 'anon-2')!.waitingFor).toEqual({ reason: 'org_limit', scope: 'ip', inFlight: 0, limit: 1, queuedAhead: 1 });

    // Claim one by one: each claim is the job the view has first at that moment.
    const claimed: string[] = [];
    const sockets = new Map<string, TestRunner>();
    while (view.items.length > 0 && view.items[0].waitingFor.reason !== 'org_limit') {
      const expected = view.items[0].id;
      const { id, socket } = await claim(spec);
      expect(names.get(id)).toBe(names.get(expected));
      claimed.push(names.get(id)!);
      sockets.set(id, socket);
      view = await queue(spec);
    }
    expect(claimed).toEqual(['enterprise-1', 'enterprise-2', 'capped-1', 'team-1', 'busy-1', 'capped-2', 'busy-2', 'free0-1', 'free1-1', 'anon-1']);
    expect(view.items.map(name)).toEqual(['capped-3', 'free2-1', 'free0-2', 'free1-2', 'free2-2', 'anon-2']);

    // Nothing left is claimable: a runner that asks waits.
    const waiting = await connect((await f.runner([spec])).token);
    waiting.send({ type: 'ready' });
    // Handled, with no job: frames are handled in order and a job claimed for the ready is pushed
    // while it is handled, before the answer to this heartbeat for a job that does not exist.
    expect(await waiting.request({ type: 'heartbeat', job: '01a00000-0000-7000-8000-000000000000', attempt: 1 })).toMatchObject({ type: 'error', code: 'not_found' });
    expect((await queue(spec)).items.map(name)).toEqual(['capped-3', 'free2-1', 'free0-2', 'free1-2', 'free2-2', 'anon-2']);

    // free1-1 ends: free1-2 is claimable, first in the view, and pushed to the waiting runner.
    const free11 = [...names].find(([, n]) => n === 'free1-1')![0];
    const socket = sockets.get(free11)!;
    await socket.request({ type: 'running', job: free11, attempt: 1 }, 'ack');
    await socket.request({ type: 'completed', job: free11, attempt: 1, exitCode: 0 }, 'ack');
    const pushed = ((await waiting.next('job', 3_000)).job as { id: string }).id;
    expect(names.get(pushed)).toBe('free1-2');
    // Claimed, it left the view; the rest keep their order. (That the view's first is the job
    // claimed next is checked claim by claim above, where no runner waits to race the read.)
    expect((await queue(spec)).items.map(name)).toEqual(['capped-3', 'free2-1', 'free0-2', 'free2-2', 'anon-2']);
  });

  it('gives a pending job its queue on GET /v1/jobs/{job}, with each waitingFor reason, and none once claimed', async () => {
    const spec = (await f.spec()).slug;
    const team = await f.tenant('team');
    const free = await f.tenant('free');
    const enterprise = await f.tenant('enterprise');
    const job = async (id: string) => (await t.http.get(`/v1/jobs/${id}`).set(admin).expect(200)).body;

    // No runner connected (one registered): no_runner.
    await f.runner([spec]);
    const team1 = await submit(team, spec);
    expect((await job(team1)).queue).toEqual({ position: 1, ahead: 0, eta: null, waitingFor: { reason: 'no_runner' } });

    await idleRunner(spec);
    await untilConnected(spec);
    expect((await job(team1)).queue).toEqual({ position: 1, ahead: 0, eta: null, waitingFor: { reason: 'runner_busy', ahead: 0 } });
    const team2 = await submit(team, spec);
    expect((await job(team2)).queue).toMatchObject({ position: 2, ahead: 1, waitingFor: { reason: 'runner_busy', ahead: 1 } });

    const ent = await submit(enterprise, spec);
    expect((await job(ent)).queue).toMatchObject({ position: 1, ahead: 0, waitingFor: { reason: 'runner_busy', ahead: 0 } });
    expect((await job(team1)).queue).toMatchObject({ position: 2, ahead: 1, waitingFor: { reason: 'higher_priority', ahead: 1 } });
    expect((await job(team2)).queue).toMatchObject({ position: 3, ahead: 2, waitingFor: { reason: 'higher_priority', ahead: 1 } });

    // A free org's second job waits for its first, which a runner holds.
    const free1 = await submit(free, spec);
    const free2 = await submit(free, spec);
    expect((await job(free2)).queue).toMatchObject({
      position: 5,
      waitingFor: { reason: 'org_limit', scope: 'org', inFlight: 0, limit: 1, queuedAhead: 1 },
    });
    for (const expected of [ent, team1, team2, free1]) expect((await claim(spec)).id).toBe(expected);
    const claimed = await job(free1);
    expect(claimed.status).toBe('claimed');
    expect(claimed).not.toHaveProperty('queue');
    expect((await job(free2)).queue).toEqual({
      position: 1,
      ahead: 0,
      eta: null,
      waitingFor: { reason: 'org_limit', scope: 'org', inFlight: 1, limit: 1, queuedAhead: 0 },
    });
    // The org key sees the same on its own job.
    expect((await t.http.get(`/v1/jobs/${free2}`).set(bearer(free.key)).expect(200)).body.queue).toMatchObject({ position: 1 });
  });

  it('estimates the start from the spec’s recent run times and its runners; null without history', async () => {
    const spec = (await f.spec()).slug;
    const team = await f.tenant('team');
    const runner = await f.runner([spec]);
    const socket = await connect(runner.token);

    const first = await submit(team, spec);
    await untilConnected(spec);
    expect((await f.job(first)).queue).toMatchObject({ position: 1, eta: null });

    // Two runs of 60 s and 120 s: a mean of 90 s.
    for (const seconds of [60, 120]) {
      const id = (await f.job(first)).status === 'pending' ? first : await submit(team, spec);
      socket.send({ type: 'ready' });
      expect(((await socket.next('job')).job as { id: string }).id).toBe(id);
      await socket.request({ type: 'running', job: id, attempt: 1 }, 'ack');
      t.advance(seconds * 1_000);
      await socket.request({ type: 'completed', job: id, attempt: 1, exitCode: 0 }, 'ack');
    }

    // One runner, idle: the first job starts now, then one every 90 s.
    const jobs = [await submit(team, spec), await submit(team, spec), await submit(team, spec)];
    const at = (seconds: number) => new Date(t.clock.now().getTime() + seconds * 1_000).toISOString();
    const etas = async () => (await queue(spec)).items.map((i) => i.eta);
    expect(await etas()).toEqual([at(0), at(90), at(180)]);
    expect((await f.job(jobs[1])).queue.eta).toBe(at(90));

    // The first is taken and has run 30 s: the next starts in 60 s, the one after 90 s later.
    socket.send({ type: 'ready' });
    await socket.next('job');
    await socket.request({ type: 'running', job: jobs[0], attempt: 1 }, 'ack');
    t.advance(30_000);
    expect(await etas()).toEqual([at(60), at(150)]);

    // A second runner that is registered but away starts nothing; once connected it halves the rounds.
    const second = await f.runner([spec]);
    expect(await etas()).toEqual([at(60), at(150)]);
    await connect(second.token);
    let seen: (string | null)[] = [];
    for (let i = 0; i < 100 && JSON.stringify(seen) !== JSON.stringify([at(0), at(90 - 15)]); i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, 50)); // the projector records the connection
      seen = await etas();
    }
    expect(seen).toEqual([at(0), at(90 - 15)]);
  });

  it('shows the operator every job and an org key only its own, without the other orgs’ ids', async () => {
    const spec = await f.spec();
    const mine = await f.tenant('team');
    const theirs = await f.tenant('enterprise');
    const own = [await submit(mine, spec.slug)];
    const others = [await submit(theirs, spec.slug), await submit(theirs, spec.slug)];
    own.push(await submit(mine, spec.slug));

    const all = await queue(spec.id);
    expect(all.spec).toBe(spec.slug);
    expect(all.total).toBe(4);
    expect(all.items.map((i) => i.id)).toEqual([...others, ...own]);
    expect(all.items[0]).toEqual({
      id: others[0],
      org: theirs.org.id,
      project: theirs.project.id,
      priority: 300,
      createdAt: expect.any(String),
      position: 1,
      ahead: 0,
      eta: null,
      waitingFor: { reason: 'no_runner' },
    });

    const res = await t.http.get('/v1/queue').query({ spec: spec.slug }).set(bearer(mine.key)).expect(200);
    expect(res.body).toEqual({
      spec: spec.slug,
      total: 4,
      items: [
        expect.objectContaining({ id: own[0], org: mine.org.id, project: mine.project.id, priority: 200, position: 3, ahead: 2 }),
        expect.objectContaining({ id: own[1], org: mine.org.id, position: 4, ahead: 3 }),
      ],
      nextCursor: null,
    });
    for (const secret of [...others, theirs.org.id, theirs.project.id, theirs.org.slug]) expect(res.text).not.toContain(secret);

    // Pages: limit, then nextCursor.
    const page1 = await queue(spec.slug, admin, { limit: '3' });
    expect(page1.items.map((i) => i.position)).toEqual([1, 2, 3]);
    const page2 = await queue(spec.slug, admin, { limit: '3', cursor: page1.nextCursor! });
    expect(page2).toMatchObject({ total: 4, nextCursor: null });
    expect(page2.items.map((i) => i.id)).toEqual([own[1]]);
  });

  it('refuses bad input with problem+json: no spec, unknown spec, bad limit or cursor, a runner token', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const problem = async (query: Record<string, string>, status: number, code: string, auth = admin) => {
      const res = await t.http.get('/v1/queue').query(query).set(auth).expect(status);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ status, code });
    };
    await problem({}, 400, 'validation_failed');
    await problem({ spec: '' }, 400, 'validation_failed');
    await problem({ spec: 'no-such-spec' }, 404, 'not_found');
    await problem({ spec: '00000000-0000-7000-8000-000000000000' }, 404, 'not_found', bearer(tenant.key));
    for (const limit of ['0', '1001', 'ten', '1.5']) await problem({ spec: spec.slug, limit }, 400, 'validation_failed');
    await problem({ spec: spec.slug, cursor: 'bm9wZQ' }, 400, 'validation_failed');
    await problem({ spec: spec.slug, other: '1' }, 400, 'validation_failed');
    await problem({ spec: spec.slug }, 403, 'forbidden', bearer(runner.token));
    await t.http.get('/v1/queue').query({ spec: spec.slug }).expect(401);
    expect((await queue(spec.slug, bearer(tenant.key), { limit: '1000' })).items).toEqual([]);
  });

  it('is described in the OpenAPI document', async () => {
    const doc = (await t.http.get('/openapi.json').expect(200)).body;
    const get = doc.paths['/v1/queue'].get;
    expect(get.parameters.map((p: { name: string }) => p.name).sort()).toEqual(['cursor', 'limit', 'spec']);
    expect(Object.keys(get.responses)).toEqual(expect.arrayContaining(['200', '400', '404']));
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(['QueueResponse', 'QueueItemResponse', 'WaitingForResponse']));
  });
});
