import { createHash } from 'node:crypto';
import { type TestApp, admin, bearer, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const PROBLEM = /application\/problem\+json/;
/** The request line of a response, so a failed expectation says which call it was. */
const pathOf = (res: { request?: unknown }) => String((res.request as { url?: string } | undefined)?.url ?? '?');

describe('REST API', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ RUNWAY_MAX_MESSAGE_BYTES: String(64 * 1024) });
  });
  afterAll(async () => {
    await t.close();
  });

  // Fixtures over the public API.
  let f: Fixtures;
  beforeAll(() => {
    f = new Fixtures(t);
  });
  const createOrg = (plan?: string) => f.org(plan);
  const createSpec = () => f.spec();
  const tenant = (plan?: string) => f.tenant(plan);

  describe('organizations, keys and projects', () => {
    it('creates, reads, lists and updates organizations', async () => {
      const res = await t.http.post('/v1/orgs').set(admin).send({ slug: 'acme', name: 'Acme', plan: 'free' }).expect(201);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        slug: 'acme',
        name: 'Acme',
        plan: 'free',
        maxConcurrency: null,
        createdAt: '2026-05-01T12:00:00.000Z',
        updatedAt: '2026-05-01T12:00:00.000Z',
      });
      t.clock.advance(1000);
      const patched = await t.http.patch('/v1/orgs/acme').set(admin).send({ plan: 'team', maxConcurrency: 4 }).expect(200);
      expect(patched.body).toMatchObject({ plan: 'team', maxConcurrency: 4, updatedAt: '2026-05-01T12:00:01.000Z' });
      const cleared = await t.http.patch(`/v1/orgs/${res.body.id}`).set(admin).send({ maxConcurrency: null }).expect(200);
      expect(cleared.body.maxConcurrency).toBeNull();
      expect((await t.http.get('/v1/orgs/acme').set(admin).expect(200)).body.plan).toBe('team');
      const list = await t.http.get('/v1/orgs').set(admin).expect(200);
      expect(list.body.items.map((o: { slug: string }) => o.slug)).toContain('acme');
    });

    it('refuses a duplicate slug with 409 and writes nothing', async () => {
      await t.http.post('/v1/orgs').set(admin).send({ slug: 'dup', name: 'A', plan: 'free' }).expect(201);
      const before = await countEvents();
      const res = await t.http.post('/v1/orgs').set(admin).send({ slug: 'dup', name: 'B', plan: 'team' }).expect(409);
      expect(res.body).toMatchObject({ code: 'conflict', status: 409 });
      expect(res.headers['content-type']).toMatch(PROBLEM);
      expect(await countEvents()).toBe(before);
    });

    it('issues keys shown once, stored only as SHA-256, and revokes them at once', async () => {
      const { org, key, keyId } = await createOrg();
      expect(key).toMatch(/^runway_key_[0-9a-f]{64}$/);
      const stored = await t.db.query<{ key_hash: string }>(`SELECT key_hash FROM org_keys WHERE id = $1`, [keyId]);
      expect(stored.rows[0].key_hash).toBe(sha256(key));
      const leaks = await t.db.query(`SELECT 1 FROM events WHERE data::text LIKE '%' || $1 || '%'`, [key]);
      expect(leaks.rowCount).toBe(0);
      const keys = await t.http.get(`/v1/orgs/${org.slug}/keys`).set(admin).expect(200);
      expect(keys.body.items).toEqual([expect.objectContaining({ id: keyId, name: 'ci', revokedAt: null })]);
      expect(JSON.stringify(keys.body)).not.toContain(sha256(key));

      await t.http.get(`/v1/orgs/${org.slug}`).set(bearer(key)).expect(200);
      await t.http.delete(`/v1/orgs/${org.slug}/keys/${keyId}`).set(admin).expect(204);
      const refused = await t.http.get(`/v1/orgs/${org.slug}`).set(bearer(key)).expect(401);
      expect(refused.body.code).toBe('unauthorized');
      await t.http.delete(`/v1/orgs/${org.slug}/keys/00000000-0000-7000-8000-000000000000`).set(admin).expect(404);
    });

    it('records admin actions in the organization stream with the actor', async () => {
      const { org } = await createOrg();
      const { rows } = await t.db.query<{ type: string; actor: string }>(
        `SELECT type, metadata->>'actor' AS actor FROM events WHERE stream_id = $1 ORDER BY stream_position`,
        [org.id],
      );
      expect(rows).toEqual([
        { type: 'OrgCreated', actor: 'admin' },
        { type: 'OrgKeyCreated', actor: 'admin' },
      ]);
    });

    it('creates projects in the key’s organization, unique by slug there', async () => {
      const { key, org } = await createOrg();
      const project = await t.http.post('/v1/projects').set(bearer(key)).send({ slug: 'web', name: 'Web' }).expect(201);
      expect(project.body).toMatchObject({ org: org.id, slug: 'web', name: 'Web' });
      const dup = await t.http.post('/v1/projects').set(bearer(key)).send({ slug: 'web', name: 'Again' }).expect(409);
      expect(dup.body.code).toBe('conflict');
      // Another org may use the same slug.
      const other = await createOrg();
      await t.http.post('/v1/projects').set(bearer(other.key)).send({ slug: 'web', name: 'Web' }).expect(201);
      const listed = await t.http.get('/v1/projects').set(bearer(key)).expect(200);
      expect(listed.body.items).toEqual([expect.objectContaining({ id: project.body.id, slug: 'web' })]);
      expect((await t.http.get('/v1/projects/web').set(bearer(key)).expect(200)).body.id).toBe(project.body.id);
      expect((await t.http.get(`/v1/projects/${project.body.id}`).set(admin).expect(200)).body.slug).toBe('web');
      await t.http.get(`/v1/projects/${project.body.id}`).set(bearer(other.key)).expect(404);
      // The operator has no org to create a project in.
      await t.http.post('/v1/projects').set(admin).send({ slug: 'x', name: 'X' }).expect(403);
    });
  });

  describe('specs and runners', () => {
    it('registers specs and refuses duplicates and bad hardware', async () => {
      const spec = await createSpec();
      expect(spec).toMatchObject({ architecture: 'x86_64', cpu: 8, memory: 32 * 2 ** 30, network: false });
      await t.http
        .post('/v1/specs')
        .set(admin)
        .send({ ...spec, id: undefined, createdAt: undefined })
        .expect(409);
      const bad = await t.http
        .post('/v1/specs')
        .set(admin)
        .send({ slug: 's', name: 's', architecture: 'mips', cpu: 0, memory: -1, disk: '1', network: 'yes' })
        .expect(400);
      expect(bad.body.code).toBe('validation_failed');
      expect([...new Set(bad.body.errors.map((e: { field: string }) => e.field))].sort()).toEqual(
        ['architecture', 'cpu', 'disk', 'memory', 'network'],
      );
      const list = await t.http.get('/v1/specs').set(admin).expect(200);
      expect(list.body.items.map((s: { slug: string }) => s.slug)).toContain(spec.slug);
    });

    it('registers runners with a token shown once, rotates it, and archives them', async () => {
      const spec = await createSpec();
      const created = await t.http.post('/v1/runners').set(admin).send({ slug: 'r1', name: 'Runner 1', specs: [spec.slug] }).expect(201);
      const { id, token } = created.body;
      expect(created.body).toMatchObject({ slug: 'r1', specs: [spec.slug], state: 'offline', currentJob: null, lastSeenAt: null, fingerprint: null });
      expect(token).toMatch(/^runway_runner_[0-9a-f]{64}$/);
      const stored = await t.db.query<{ token_hash: string }>(`SELECT token_hash FROM runners WHERE id = $1`, [id]);
      expect(stored.rows[0].token_hash).toBe(sha256(token));

      // A runner token authenticates (403 on an operator route), an unknown one does not (401).
      await t.http.get('/v1/runners').set(bearer(token)).expect(403);
      const rotated = await t.http.post(`/v1/runners/${id}/token`).set(admin).expect(201);
      expect(rotated.body.token).toMatch(/^runway_runner_[0-9a-f]{64}$/);
      expect(rotated.body.token).not.toBe(token);
      await t.http.get('/v1/runners').set(bearer(token)).expect(401);
      await t.http.get('/v1/runners').set(bearer(rotated.body.token)).expect(403);

      const listed = await t.http.get('/v1/runners').set(admin).expect(200);
      expect(listed.body.items).toEqual([expect.objectContaining({ id, slug: 'r1', state: 'offline' })]);
      expect(JSON.stringify(listed.body)).not.toContain(sha256(rotated.body.token));

      const archived = await t.http.patch('/v1/runners/r1').set(admin).send({ archived: true, name: 'Old' }).expect(200);
      expect(archived.body).toMatchObject({ archived: true, name: 'Old' });
      await t.http.get('/v1/runners').set(bearer(rotated.body.token)).expect(401);
      const refused = await t.http.post('/v1/runners/r1/token').set(admin).expect(409);
      expect(refused.body.code).toBe('conflict');

      const types = await t.db.query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_position`, [id]);
      expect(types.rows.map((r) => r.type)).toEqual(['RunnerRegistered', 'RunnerTokenRotated', 'RunnerUpdated', 'RunnerArchived']);
    });

    it('refuses runners for unknown specs and duplicate slugs', async () => {
      const spec = await createSpec();
      const unknown = await t.http.post('/v1/runners').set(admin).send({ slug: 'r9', name: 'R', specs: ['nope'] }).expect(400);
      expect(unknown.body.code).toBe('validation_failed');
      await t.http.post('/v1/runners').set(admin).send({ slug: 'r8', name: 'R', specs: [spec.id] }).expect(201);
      await t.http.post('/v1/runners').set(admin).send({ slug: 'r8', name: 'R', specs: [spec.id] }).expect(409);
      await t.http.patch('/v1/runners/nope').set(admin).send({ name: 'x' }).expect(404);
      await t.http.patch('/v1/runners/r8').set(admin).send({}).expect(400);
    });
  });

  describe('jobs', () => {
    it('submits a job with the org’s priority and the plan’s default timeout', async () => {
      const spec = await createSpec();
      const team = await tenant('team');
      const res = await t.http
        .post(`/v1/projects/${team.project.slug}/jobs`)
        .set(bearer(team.key))
        .send({ spec: spec.slug, cmd: ['cargo', 'bench'], env: { RUST_LOG: 'info' }, filePaths: ['target/criterion/report.json'] })
        .expect(201);
      expect(res.body).toEqual({
        id: expect.any(String),
        project: team.project.id,
        org: team.org.id,
        spec: spec.slug,
        status: 'pending',
        priority: 200,
        attempt: 1,
        maxAttempts: 1,
        timeout: 3600,
        runner: null,
        createdAt: t.clock.now().toISOString(),
        claimedAt: null,
        startedAt: null,
        finishedAt: null,
        exitCode: null,
        failure: null,
        billedMinutes: null,
      });
      // The answer has no place in the queue (it costs the whole queue); the job's GET has it.
      const read = await t.http.get(`/v1/jobs/${res.body.id}`).set(bearer(team.key)).expect(200);
      expect(read.body).toEqual({ ...res.body, queue: { position: 1, ahead: 0, eta: null, waitingFor: { reason: 'no_runner' } } });
      const free = await tenant('free');
      const freeJob = await t.http.post(`/v1/projects/${free.project.id}/jobs`).set(bearer(free.key)).send({ spec: spec.id, cmd: ['true'] }).expect(201);
      expect(freeJob.body).toMatchObject({ priority: 100, timeout: 900 });
      expect(freeJob.body).not.toHaveProperty('queue');
      // The higher tier's job is ahead of it in the spec's queue, and the free one is second.
      const freeRead = await t.http.get(`/v1/jobs/${freeJob.body.id}`).set(bearer(free.key)).expect(200);
      expect(freeRead.body.queue).toEqual({ position: 2, ahead: 1, eta: null, waitingFor: { reason: 'no_runner' } });

      const events = await t.http.get(`/v1/jobs/${res.body.id}/events`).set(bearer(team.key)).expect(200);
      expect(events.body.items).toHaveLength(1);
      expect(events.body.items[0]).toMatchObject({
        streamId: res.body.id,
        streamType: 'job',
        position: 1,
        type: 'JobSubmitted',
        schemaVersion: 2,
        metadata: { actor: `key:${team.keyId}`, causationId: null, correlationId: expect.any(String) },
        data: expect.objectContaining({ cmd: ['cargo', 'bench'], env: { RUST_LOG: 'info' }, priority: 200, plan: 'team' }),
      });
      expect(Object.keys(events.body.items[0]).sort()).toEqual(
        ['data', 'globalPosition', 'hash', 'id', 'metadata', 'occurredAt', 'position', 'prevHash', 'schemaVersion', 'streamId', 'streamType', 'type'],
      );
    });

    it('refuses bad submissions with validation_failed and stores nothing', async () => {
      const spec = await createSpec();
      const free = await tenant('free');
      const url = `/v1/projects/${free.project.slug}/jobs`;
      const before = await countEvents();
      const cases: [Record<string, unknown>, string][] = [
        [{ spec: spec.slug }, 'cmd'],
        [{ spec: spec.slug, cmd: [] }, 'cmd'],
        [{ spec: spec.slug, cmd: 'echo hi' }, 'cmd'],
        [{ spec: spec.slug, cmd: [1, 2] }, 'cmd'],
        // Refused at the edge, which names the element (as errors name filePaths[i] and jobs[3]).
        [{ spec: spec.slug, cmd: ['a\u0000b'] }, 'cmd[0]'],
        [{ spec: spec.slug, cmd: ['x'], env: { A: 1 } }, 'env'],
        [{ spec: spec.slug, cmd: ['x'], env: ['A=1'] }, 'env'],
        [{ spec: spec.slug, cmd: ['x'], env: { '1BAD': 'x' } }, 'env'],
        [{ spec: spec.slug, cmd: ['x'], timeout: 0 }, 'timeout'],
        [{ spec: spec.slug, cmd: ['x'], timeout: 1.5 }, 'timeout'],
        [{ spec: spec.slug, cmd: ['x'], timeout: 901 }, 'timeout'],
        [{ spec: spec.slug, cmd: ['x'], maxAttempts: 6 }, 'maxAttempts'],
        [{ spec: spec.slug, cmd: ['x'], image: 'ubuntu:latest' }, 'image'],
        [{ spec: spec.slug, cmd: ['x'], filePaths: 'out.json' }, 'filePaths'],
        [{ spec: 'no-such-spec', cmd: ['x'] }, 'spec'],
        [{ spec: spec.slug, cmd: ['x'], extra: true }, 'extra'],
      ];
      for (const [body, field] of cases) {
        const res = await t.http.post(url).set(bearer(free.key)).send(body);
        expect({ body, status: res.status }).toEqual({ body, status: 400 });
        expect(res.body.code).toBe('validation_failed');
        expect(res.headers['content-type']).toMatch(PROBLEM);
        expect({ body, fields: (res.body.errors ?? []).map((e: { field: string }) => e.field) }).toEqual({ body, fields: expect.arrayContaining([field]) });
      }
      const ok = await t.http
        .post(url)
        .set(bearer(free.key))
        .send({ spec: spec.slug, cmd: ['x'], image: `ghcr.io/acme/bench@sha256:${'ab'.repeat(32)}`, timeout: 900, maxAttempts: 5 })
        .expect(201);
      expect(ok.body).toMatchObject({ timeout: 900, maxAttempts: 5 });
      expect(await countEvents()).toBe(before + 1);
    });

    it('answers a repeated Idempotency-Key with the first job, and a different body with 409', async () => {
      const spec = await createSpec();
      const team = await tenant();
      const url = `/v1/projects/${team.project.slug}/jobs`;
      const body = { spec: spec.slug, cmd: ['make', 'bench'] };
      const first = await t.http.post(url).set(bearer(team.key)).set('Idempotency-Key', 'k-1').send(body).expect(201);
      const again = await t.http.post(url).set(bearer(team.key)).set('Idempotency-Key', 'k-1').send(body).expect(200);
      expect(again.body.id).toBe(first.body.id);
      const other = await t.http.post(url).set(bearer(team.key)).set('Idempotency-Key', 'k-1').send({ ...body, cmd: ['other'] }).expect(409);
      expect(other.body.code).toBe('conflict');

      // Racing retries of one request make one job.
      const racing = await Promise.all(
        Array.from({ length: 6 }, () => t.http.post(url).set(bearer(team.key)).set('Idempotency-Key', 'k-race').send(body)),
      );
      expect(racing.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 200, 201]);
      expect(new Set(racing.map((r) => r.body.id)).size).toBe(1);

      // After 24 hours the key is free again.
      t.clock.advance(24 * 3600 * 1000 + 1);
      const later = await t.http.post(url).set(bearer(team.key)).set('Idempotency-Key', 'k-1').send(body).expect(201);
      expect(later.body.id).not.toBe(first.body.id);
    });

    it('lists a project’s jobs newest first with a cursor and a status filter', async () => {
      const spec = await createSpec();
      const team = await tenant();
      const url = `/v1/projects/${team.project.slug}/jobs`;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        t.clock.advance(10);
        ids.push((await t.http.post(url).set(bearer(team.key)).send({ spec: spec.slug, cmd: [`job${i}`] }).expect(201)).body.id);
      }
      await t.http.post(`/v1/jobs/${ids[1]}/cancel`).set(bearer(team.key)).expect(202);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const query: Record<string, string | number> = { limit: 2, ...(cursor ? { cursor } : {}) };
        const page = await t.http.get(url).query(query).set(bearer(team.key)).expect(200);
        expect(page.body.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.body.items.map((j: { id: string }) => j.id));
        cursor = page.body.nextCursor;
      } while (cursor !== null);
      expect(seen).toEqual([...ids].reverse());
      const canceled = await t.http.get(url).query({ status: 'canceled' }).set(bearer(team.key)).expect(200);
      expect(canceled.body).toEqual({ items: [expect.objectContaining({ id: ids[1], status: 'canceled' })], nextCursor: null });
      for (const query of [{ limit: 0 }, { limit: 101 }, { limit: 'many' }, { status: 'done' }, { cursor: 'not-a-cursor' }]) {
        const res = await t.http.get(url).query(query).set(bearer(team.key));
        expect({ query, status: res.status, code: res.body.code }).toEqual({ query, status: 400, code: 'validation_failed' });
      }
    });

    it('cancels a pending job once; a second cancel is invalid_transition and changes nothing', async () => {
      const spec = await createSpec();
      const team = await tenant();
      const job = (await t.http.post(`/v1/projects/${team.project.slug}/jobs`).set(bearer(team.key)).send({ spec: spec.slug, cmd: ['x'] }).expect(201)).body;
      t.clock.advance(5000);
      const canceled = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(team.key)).expect(202);
      expect(canceled.body).toMatchObject({ id: job.id, status: 'canceled', finishedAt: t.clock.now().toISOString(), failure: null, billedMinutes: null });
      expect(canceled.body.queue).toBeUndefined();
      const again = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(team.key)).expect(409);
      expect(again.body).toMatchObject({ code: 'invalid_transition', status: 409 });
      const events = await t.http.get(`/v1/jobs/${job.id}/events`).set(bearer(team.key)).expect(200);
      expect(events.body.items.map((e: { type: string }) => e.type)).toEqual(['JobSubmitted', 'JobCanceled']);
      expect(events.body.items[1].prevHash).toBe(events.body.items[0].hash);
      // The operator may cancel too; it is refused the same way.
      await t.http.post(`/v1/jobs/${job.id}/cancel`).set(admin).expect(409);
    });
  });

  describe('tenant isolation', () => {
    it('shows an org key nothing of another organization: 404 everywhere, nothing changes', async () => {
      const spec = await createSpec();
      const a = await tenant();
      const b = await tenant();
      const job = (await t.http.post(`/v1/projects/${a.project.id}/jobs`).set(bearer(a.key)).send({ spec: spec.slug, cmd: ['x'] }).expect(201)).body;
      const before = await countEvents();
      const attempts = [
        t.http.get(`/v1/jobs/${job.id}`).set(bearer(b.key)),
        t.http.get(`/v1/jobs/${job.id}/events`).set(bearer(b.key)),
        t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(b.key)),
        t.http.get(`/v1/projects/${a.project.id}/jobs`).set(bearer(b.key)),
        t.http.post(`/v1/projects/${a.project.id}/jobs`).set(bearer(b.key)).send({ spec: spec.slug, cmd: ['x'] }),
        t.http.get(`/v1/orgs/${a.org.id}`).set(bearer(b.key)),
        t.http.get(`/v1/orgs/${a.org.slug}`).set(bearer(b.key)),
      ];
      for (const res of await Promise.all(attempts)) {
        expect({ url: pathOf(res), status: res.status, code: res.body.code }).toEqual({ url: pathOf(res), status: 404, code: 'not_found' });
      }
      // B's own project with A's project slug would be B's, not A's.
      expect(await countEvents()).toBe(before);
      expect((await t.http.get(`/v1/jobs/${job.id}`).set(bearer(a.key)).expect(200)).body.status).toBe('pending');
      // The operator reads every organization's jobs.
      await t.http.get(`/v1/jobs/${job.id}`).set(admin).expect(200);
      await t.http.get(`/v1/projects/${a.project.id}/jobs`).set(admin).expect(200);
      // Org keys cannot use operator routes.
      for (const res of await Promise.all([
        t.http.post('/v1/orgs').set(bearer(b.key)).send({ slug: 'x', name: 'x', plan: 'enterprise' }),
        t.http.patch(`/v1/orgs/${b.org.id}`).set(bearer(b.key)).send({ plan: 'enterprise' }),
        t.http.post(`/v1/orgs/${b.org.id}/keys`).set(bearer(b.key)).send({}),
        t.http.get('/v1/runners').set(bearer(b.key)),
        t.http.post('/v1/specs').set(bearer(b.key)).send({}),
      ])) {
        expect({ url: pathOf(res), status: res.status, code: res.body.code }).toEqual({ url: pathOf(res), status: 403, code: 'forbidden' });
      }
    });
  });

  describe('errors', () => {
    it('asks for a credential (401) and refuses bad ones', async () => {
      for (const headers of [{}, { Authorization: 'Basic abc' }, { Authorization: 'Bearer' }, bearer('runway_key_' + '0'.repeat(64)), bearer('nope')]) {
        const res = await t.http.get('/v1/orgs').set(headers).expect(401);
        expect(res.body).toMatchObject({ code: 'unauthorized', status: 401, title: 'Unauthorized' });
        expect(res.headers['content-type']).toMatch(PROBLEM);
      }
    });

    it('answers a body over the limit with 413 and malformed JSON with 400', async () => {
      const big = await t.http
        .post('/v1/orgs')
        .set(admin)
        .set('Content-Type', 'application/json')
        .send(JSON.stringify({ slug: 'big', name: 'x'.repeat(70 * 1024), plan: 'free' }))
        .expect(413);
      expect(big.body).toMatchObject({ code: 'payload_too_large', status: 413 });
      expect(big.headers['content-type']).toMatch(PROBLEM);
      const bad = await t.http.post('/v1/orgs').set(admin).set('Content-Type', 'application/json').send('{"slug": ').expect(400);
      expect(bad.body).toMatchObject({ code: 'validation_failed', detail: 'the request body is not valid JSON' });
      const notObject = await t.http.post('/v1/orgs').set(admin).set('Content-Type', 'application/json').send('[1,2]').expect(400);
      expect(notObject.body.code).toBe('validation_failed');
      const nullBody = await t.http.post('/v1/orgs').set(admin).set('Content-Type', 'application/json').send('null').expect(400);
      expect(nullBody.body.code).toBe('validation_failed');
      const text = await t.http.post('/v1/orgs').set(admin).set('Content-Type', 'text/plain').send('slug=x').expect(415);
      expect(text.body).toMatchObject({ code: 'unsupported_media_type', status: 415 });
      const charset = await t.http
        .post('/v1/orgs')
        .set(admin)
        .set('Content-Type', 'application/json; charset=klingon')
        .send('{}')
        .expect(415);
      expect(charset.body.code).toBe('unsupported_media_type');
      // No body at all is a validation error of the fields, not a media type problem.
      const empty = await t.http.post('/v1/orgs').set(admin).expect(400);
      expect(empty.body.code).toBe('validation_failed');
    });

    it('answers unknown routes and ids with 404 problem+json', async () => {
      for (const path of ['/v1/nope', '/v1/jobs/not-a-uuid', '/v1/jobs/00000000-0000-7000-8000-000000000000']) {
        const res = await t.http.get(path).set(admin).expect(404);
        expect(res.body.code).toBe('not_found');
      }
    });

    it('never answers garbage with a 5xx', async () => {
      const spec = await createSpec();
      const team = await tenant();
      const values = [null, true, 0, -1, 1e308, '', 'x'.repeat(300), [], [null], {}, { a: { b: [] } }, '\u0000', '💥'];
      const routes: [string, string, Record<string, string>][] = [
        ['post', '/v1/orgs', admin],
        ['patch', `/v1/orgs/${team.org.id}`, admin],
        ['post', '/v1/specs', admin],
        ['post', '/v1/runners', admin],
        ['post', '/v1/projects', bearer(team.key)],
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key)],
      ];
      const fields = ['slug', 'name', 'plan', 'maxConcurrency', 'architecture', 'cpu', 'specs', 'spec', 'cmd', 'env', 'timeout', 'maxAttempts', 'image'];
      let i = 0;
      for (const [method, url, headers] of routes) {
        for (const field of fields) {
          const value = values[i++ % values.length];
          const body = { spec: spec.slug, cmd: ['x'], slug: `s${i}`, name: 'n', plan: 'free', [field]: value };
          const res = await (t.http as unknown as Record<string, (u: string) => import('supertest').Test>)[method](url).set(headers).send(body);
          expect({ url, field, value, status: res.status < 500 }).toEqual({ url, field, value, status: true });
          expect(res.headers['content-type']).toMatch(res.status >= 400 ? PROBLEM : /json/);
        }
      }
    });
  });

  describe('docs and health', () => {
    it('serves OpenAPI and health without a credential', async () => {
      const spec = await t.http.get('/openapi.json').expect(200);
      expect(spec.body.openapi).toMatch(/^3\./);
      expect(Object.keys(spec.body.paths)).toEqual(expect.arrayContaining(['/v1/orgs', '/v1/projects/{project}/jobs', '/v1/jobs/{job}/cancel']));
      await t.http.get('/docs').expect(200).expect('content-type', /html/);
      expect((await t.http.get('/healthz').expect(200)).body).toEqual({ status: 'ok' });
      expect((await t.http.get('/readyz').expect(200)).body.status).toBe('ready');
    });
  });

  async function countEvents(): Promise<number> {
    return Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM events`)).rows[0].n);
  }
});
