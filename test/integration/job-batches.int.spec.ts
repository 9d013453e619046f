import { EventStore } from '../../src/modules/event-store/event-store';
import { jobViews } from '../../src/modules/jobs/job.views';
import { type TestApp, admin, bearer, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';

const PROBLEM = /application\/problem\+json/;

/**
 * `POST /v1/projects/{project}/job-batches`: 1 to 1,000 submissions, all or nothing, answered in
 * the order given; an Idempotency-Key covers the whole batch; a refused job is named by its index.
 */
describe('batch submission', () => {
  let t: TestApp;
  let f: Fixtures;
  beforeAll(async () => {
    t = await startTestApp();
    f = new Fixtures(t);
  });
  afterAll(async () => {
    await t.close();
  });

  const url = (project: string) => `/v1/projects/${project}/job-batches`;
  const count = async (table: string) => Number((await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
  /** What a refused request must leave as it was. */
  const written = async () => ({ events: await count('events'), jobs: await count('jobs'), keys: await count('job_idempotency_keys') });

  it('submits every job in the order given, each one a job as a single submission makes it', async () => {
    const [x86, arm] = [await f.spec(), await f.spec()];
    const team = await f.tenant('team');
    const jobs = Array.from({ length: 25 }, (_, i) => ({
      spec: i % 2 === 0 ? x86.slug : arm.id,
      cmd: ['cargo', 'bench', `--bench=b${i}`],
      env: { COMMIT: `c${i}` },
      ...(i === 3 ? { timeout: 120, maxAttempts: 3, filePaths: ['out/r.json'] } : {}),
    }));
    const res = await t.http.post(url(team.project.slug)).set(bearer(team.key)).send({ jobs }).expect(201);
    const items = res.body.items as { id: string; spec: string; status: string; timeout: number; maxAttempts: number }[];
    expect(Object.keys(res.body)).toEqual(['items']);
    expect(items).toHaveLength(25);
    expect(items.map((item) => item.spec)).toEqual(jobs.map((_, i) => (i % 2 === 0 ? x86.slug : arm.slug)));
    expect(items[3]).toMatchObject({ timeout: 120, maxAttempts: 3, status: 'pending' });
    expect(items[0]).toMatchObject({ timeout: 3600, maxAttempts: 1, priority: 200, project: team.project.id, org: team.org.id, runner: null });
    expect(items[0]).not.toHaveProperty('queue');
    expect(new Set(items.map((item) => item.id)).size).toBe(25);

    // Each is a job as GET shows it, with the answer's fields, and its submission in the log.
    for (const [i, item] of items.entries()) {
      const read = (await t.http.get(`/v1/jobs/${item.id}`).set(bearer(team.key)).expect(200)).body;
      expect({ ...read, queue: undefined }).toEqual({ ...item, queue: undefined });
      const events = (await t.http.get(`/v1/jobs/${item.id}/events`).set(bearer(team.key)).expect(200)).body.items;
      expect(events).toEqual([expect.objectContaining({ type: 'JobSubmitted', position: 1, streamId: item.id })]);
      expect(events[0].data).toMatchObject({ cmd: jobs[i].cmd, env: jobs[i].env, idempotency: null });
      await expect(t.app.get(EventStore).verifyStream(item.id)).resolves.toEqual({ valid: true, eventCount: 1 });
    }
    // In the log in the order given, and in the spec's queue in that order too.
    const { rows } = await t.db.query<{ stream_id: string }>(
      `SELECT stream_id FROM events WHERE stream_id = ANY($1::uuid[]) ORDER BY transaction_id, global_position`,
      [items.map((item) => item.id)],
    );
    expect(rows.map((row) => row.stream_id)).toEqual(items.map((item) => item.id));
    const queue = (await t.http.get(`/v1/queue?spec=${x86.slug}`).set(bearer(team.key)).expect(200)).body;
    expect(queue.items.map((item: { id: string }) => item.id)).toEqual(items.filter((_, i) => i % 2 === 0).map((item) => item.id));
  });

  it('refuses a batch with a bad job as a whole, naming the job by its index, and writes nothing', async () => {
    const spec = await f.spec();
    const free = await f.tenant('free');
    const good = { spec: spec.slug, cmd: ['true'] };
    const before = await written();
    const cases: [string, unknown, { field: string; message: RegExp }[]][] = [
      ['no jobs', { jobs: [] }, [{ field: 'jobs', message: /jobs must contain at least 1 elements/ }]],
      ['too many', { jobs: Array.from({ length: 1001 }, () => good) }, [{ field: 'jobs', message: /jobs must contain no more than 1000 elements/ }]],
      ['not a list', { jobs: good }, [{ field: 'jobs', message: /jobs must be an array/ }]],
      ['no body', {}, [{ field: 'jobs', message: /jobs/ }]],
      ['an empty cmd', { jobs: [good, good, { ...good, cmd: [] }] }, [{ field: 'jobs[2].cmd', message: /^jobs\[2\]\.cmd must contain at least 1 elements/ }]],
      ['a wrong type', { jobs: [{ ...good, timeout: '60' }] }, [{ field: 'jobs[0].timeout', message: /^jobs\[0\]\.timeout must be an integer/ }]],
      ['an unknown field', { jobs: [good, { ...good, priority: 900 }] }, [{ field: 'jobs[1].priority', message: /^jobs\[1\]\.priority should not exist/ }]],
      ['a job that is not an object', { jobs: [good, 'true'] }, [{ field: 'jobs[1]', message: /jobs\[1\]/ }]],
      ['an unknown spec', { jobs: [good, { ...good, spec: 'no-such-spec' }] }, [{ field: 'jobs[1].spec', message: /^jobs\[1\]: spec "no-such-spec" does not exist/ }]],
      [
        'timeouts past the plan’s cap',
        { jobs: [{ ...good, timeout: 901 }, good, { ...good, timeout: 5000 }] },
        [
          { field: 'jobs[0].timeout', message: /^jobs\[0\]: the free plan allows a timeout of at most 900 s/ },
          { field: 'jobs[2].timeout', message: /^jobs\[2\]: the free plan allows a timeout of at most 900 s/ },
        ],
      ],
      [
        'a definition past 256 KiB',
        { jobs: [good, { ...good, cmd: Array.from({ length: 5 }, () => 'x'.repeat(60_000)) }] },
        [{ field: 'jobs[1]', message: /^jobs\[1\]: cmd, entrypoint, env and filePaths together must be at most 256 KiB/ }],
      ],
    ];
    for (const [name, body, errors] of cases) {
      const res = await t.http.post(url(free.project.slug)).set(bearer(free.key)).send(body as object);
      expect({ name, status: res.status }).toEqual({ name, status: 400 });
      expect(res.headers['content-type']).toMatch(PROBLEM);
      expect(res.body.code).toBe('validation_failed');
      for (const error of errors) {
        expect({ name, errors: res.body.errors }).toEqual({ name, errors: expect.arrayContaining([{ field: error.field, message: expect.stringMatching(error.message) }]) });
      }
    }
    expect(await written()).toEqual(before);
    // Malformed JSON is a 400 too.
    const malformed = await t.http.post(url(free.project.slug)).set(bearer(free.key)).set('content-type', 'application/json').send('{"jobs": [');
    expect(malformed.status).toBe(400);
    expect(await written()).toEqual(before);
  });

  it('answers 404 for another organization’s project and 403 for the operator, writing nothing', async () => {
    const spec = await f.spec();
    const [mine, theirs] = [await f.tenant(), await f.tenant()];
    const before = await written();
    const body = { jobs: [{ spec: spec.slug, cmd: ['true'] }] };
    expect((await t.http.post(url(theirs.project.slug)).set(bearer(mine.key)).send(body)).status).toBe(404);
    expect((await t.http.post(url(theirs.project.id)).set(bearer(mine.key)).send(body)).status).toBe(404);
    expect((await t.http.post(url(theirs.project.id)).set(admin).send(body)).status).toBe(403);
    expect((await t.http.post(url(theirs.project.id)).send(body)).status).toBe(401);
    expect(await written()).toEqual(before);
  });

  it('commits all or nothing: a job the database refuses takes the whole batch with it', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    // A refusal only the database makes, after the batch's events were written in its statement.
    await t.db.query(`
      CREATE FUNCTION refuse_exploding_job() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.state->'cmd' ? 'explode' THEN RAISE EXCEPTION 'this job explodes'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_exploding_job BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION refuse_exploding_job();`);
    try {
      const before = await written();
      const jobs = [{ spec: spec.slug, cmd: ['fine'] }, { spec: spec.slug, cmd: ['explode'] }, { spec: spec.slug, cmd: ['fine'] }];
      const res = await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'all-or-nothing').send({ jobs });
      expect(res.status).toBe(500);
      expect(await written()).toEqual(before);
      expect((await t.db.query(`SELECT 1 FROM streams s LEFT JOIN events e USING (stream_id) WHERE e.stream_id IS NULL`)).rowCount).toBe(0);
    } finally {
      await t.db.query(`DROP TRIGGER refuse_exploding_job ON jobs; DROP FUNCTION refuse_exploding_job()`);
    }
    // The key was not taken: the same request now goes through.
    const ok = await t.http
      .post(url(team.project.slug))
      .set(bearer(team.key))
      .set('Idempotency-Key', 'all-or-nothing')
      .send({ jobs: [{ spec: spec.slug, cmd: ['fine'] }, { spec: spec.slug, cmd: ['explode'] }, { spec: spec.slug, cmd: ['fine'] }] })
      .expect(201);
    expect(ok.body.items).toHaveLength(3);
  });

  it('answers a repeated Idempotency-Key with the same jobs in the same order; another body or a single submission with the key is 409', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    const jobs = Array.from({ length: 7 }, (_, i) => ({ spec: spec.slug, cmd: ['bench', String(i)] }));
    const first = await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'matrix-1').send({ jobs }).expect(201);
    const again = await t.http.post(url(team.project.id)).set(bearer(team.key)).set('Idempotency-Key', 'matrix-1').send({ jobs }).expect(200);
    expect(again.body.items.map((j: { id: string }) => j.id)).toEqual(first.body.items.map((j: { id: string }) => j.id));
    const before = await written();
    const reordered = await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'matrix-1').send({ jobs: [...jobs].reverse() });
    expect(reordered.status).toBe(409);
    expect(reordered.body.code).toBe('conflict');
    const single = await t.http.post(`/v1/projects/${team.project.slug}/jobs`).set(bearer(team.key)).set('Idempotency-Key', 'matrix-1').send(jobs[0]);
    expect(single.status).toBe(409);
    // A single submission's key does not answer a batch either.
    await t.http.post(`/v1/projects/${team.project.slug}/jobs`).set(bearer(team.key)).set('Idempotency-Key', 'one-1').send(jobs[0]).expect(201);
    expect((await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'one-1').send({ jobs: [jobs[0]] })).status).toBe(409);
    expect(await written()).toEqual({ ...before, events: before.events + 1, jobs: before.jobs + 1, keys: before.keys + 1 });

    // Racing retries of one batch make one batch.
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'matrix-race').send({ jobs })),
    );
    expect(racing.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 201]);
    expect(new Set(racing.map((r) => JSON.stringify(r.body.items.map((j: { id: string }) => j.id)))).size).toBe(1);

    // After 24 hours the key is free again.
    t.clock.advance(24 * 3600 * 1000 + 1);
    const later = await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'matrix-1').send({ jobs }).expect(201);
    expect(later.body.items[0].id).not.toBe(first.body.items[0].id);
  });

  it('reads a key an instance of the release before wrote (no job_ids) as its one job', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    const body = { spec: spec.slug, cmd: ['make'] };
    const first = await t.http.post(`/v1/projects/${team.project.slug}/jobs`).set(bearer(team.key)).set('Idempotency-Key', 'old-1').send(body).expect(201);
    // As the release before inserted it: without job_ids.
    await t.db.query(`UPDATE job_idempotency_keys SET job_ids = NULL WHERE org_id = $1 AND key = 'old-1'`, [team.org.id]);
    const again = await t.http.post(`/v1/projects/${team.project.slug}/jobs`).set(bearer(team.key)).set('Idempotency-Key', 'old-1').send(body).expect(200);
    expect(again.body.id).toBe(first.body.id);
  });

  it('rebuilds a batch’s Idempotency-Key from the log, also when the events come in two parts', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    const jobs = Array.from({ length: 6 }, (_, i) => ({ spec: spec.slug, cmd: ['bench', String(i)] }));
    const res = await t.http.post(url(team.project.slug)).set(bearer(team.key)).set('Idempotency-Key', 'rebuilt').send({ jobs }).expect(201);
    const ids = res.body.items.map((j: { id: string }) => j.id);
    const read = async () =>
      (await t.db.query(`SELECT request_hash, job_id, job_ids, created_at FROM job_idempotency_keys WHERE org_id = $1 AND key = 'rebuilt'`, [team.org.id])).rows;
    const live = await read();
    expect(live).toEqual([expect.objectContaining({ job_id: ids[0], job_ids: ids })]);

    const { rows } = await t.db.query<{ global_position: string }>(
      `SELECT global_position FROM events WHERE stream_id = ANY($1::uuid[]) ORDER BY global_position`,
      [ids],
    );
    const events = await t.app.get(EventStore).readAll({ transactionId: '0', globalPosition: 0 }, 100_000);
    const batch = events.events.filter((e) => rows.some((row) => Number(row.global_position) === e.globalPosition));
    expect(batch).toHaveLength(6);
    for (const split of [0, 2, 5]) {
      // The views as a replay finds them before these events: neither the key nor the jobs.
      await t.db.query(`DELETE FROM job_idempotency_keys WHERE org_id = $1 AND key = 'rebuilt'`, [team.org.id]);
      await t.db.query(`DELETE FROM jobs WHERE id = ANY($1::uuid[])`, [ids]);
      await t.db.transaction((tx) => jobViews.apply(tx, batch.slice(0, split)));
      await t.db.transaction((tx) => jobViews.apply(tx, batch.slice(split)));
      expect({ split, rows: await read() }).toEqual({ split, rows: live });
    }
  });
});
