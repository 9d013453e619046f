import { type TestApp, admin, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';

const PROBLEM = /application\/problem\+json/;

/**
 * docs/protocol.md, "Conventions": `null` for a field that cannot be null is `400
 * validation_failed`, never an event. Each case is sent as it is and must name its field and
 * leave the log as it was.
 */
describe('null where a field cannot be null', () => {
  const suite = appSuite();
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => {
    ({ t, f } = suite);
  });

  /** Every event, and every stream's version: what a refused request must leave as it was. */
  async function log(): Promise<{ events: number; versions: Record<string, number> }> {
    const events = await t.db.query<{ n: string }>(`SELECT count(*) AS n FROM events`);
    const streams = await t.db.query<{ id: string; version: number }>(`SELECT stream_id AS id, version FROM streams ORDER BY stream_id`);
    return { events: Number(events.rows[0].n), versions: Object.fromEntries(streams.rows.map((s) => [s.id, s.version])) };
  }

  async function refused(send: () => Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, string> }>, field: string) {
    const before = await log();
    const res = await send();
    expect({ field, status: res.status, code: res.body.code }).toEqual({ field, status: 400, code: 'validation_failed' });
    expect(res.headers['content-type']).toMatch(PROBLEM);
    expect((res.body.errors as { field: string }[]).map((e) => e.field)).toContain(field);
    expect(await log()).toEqual(before);
  }

  it('PATCH /v1/orgs/{org}: plan', async () => {
    const { org } = await f.org('team', { maxConcurrency: 4 });
    await refused(() => t.http.patch(`/v1/orgs/${org.slug}`).set(admin).send({ plan: null }), 'plan');
    await refused(() => t.http.patch(`/v1/orgs/${org.slug}`).set(admin).send({ plan: null, maxConcurrency: 2 }), 'plan');
    expect((await t.http.get(`/v1/orgs/${org.slug}`).set(admin).expect(200)).body).toMatchObject({ plan: 'team', maxConcurrency: 4 });
  });

  it('PATCH /v1/orgs/{org}: maxConcurrency null still lifts the limit (null means something there)', async () => {
    const { org } = await f.org('team', { maxConcurrency: 4 });
    const res = await t.http.patch(`/v1/orgs/${org.slug}`).set(admin).send({ maxConcurrency: null }).expect(200);
    expect(res.body).toMatchObject({ plan: 'team', maxConcurrency: null });
    const events = await t.db.query<{ type: string; data: unknown }>(`SELECT type, data FROM events WHERE stream_id = $1 ORDER BY stream_position`, [org.id]);
    expect(events.rows.at(-1)).toEqual({ type: 'OrgUpdated', data: { maxConcurrency: null } });
  });

  it('POST /v1/orgs (maxConcurrency may be null, the rest may not) and POST /v1/orgs/{org}/keys: name', async () => {
    const slug = f.unique('org');
    await refused(() => t.http.post('/v1/orgs').set(admin).send({ slug, name: null, plan: 'team' }), 'name');
    await refused(() => t.http.post('/v1/orgs').set(admin).send({ slug, name: 'N', plan: null }), 'plan');
    await t.http.post('/v1/orgs').set(admin).send({ slug, name: 'N', plan: 'team', maxConcurrency: null }).expect(201);
    await refused(() => t.http.post(`/v1/orgs/${slug}/keys`).set(admin).send({ name: null }), 'name');
  });

  it('POST /v1/projects: slug and name', async () => {
    const { key } = await f.org();
    await refused(() => t.http.post('/v1/projects').set(bearer(key)).send({ slug: null, name: 'P' }), 'slug');
    await refused(() => t.http.post('/v1/projects').set(bearer(key)).send({ slug: 'p', name: null }), 'name');
  });

  it('PATCH /v1/runners/{runner}: name, specs and archived', async () => {
    const spec = await f.spec();
    const runner = await f.runner([spec.slug]);
    await refused(() => t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ name: null }), 'name');
    await refused(() => t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ specs: null }), 'specs');
    await refused(() => t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ archived: null }), 'archived');
    await refused(() => t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ name: 'Renamed', specs: null }), 'specs');
    expect((await t.http.get(`/v1/runners/${runner.id}`).set(admin).expect(200)).body).toMatchObject({ name: 'Runner', specs: [spec.slug], archived: false });
  });

  it('POST /v1/runners and POST /v1/specs', async () => {
    const spec = await f.spec();
    await refused(() => t.http.post('/v1/runners').set(admin).send({ slug: f.unique('r'), name: null, specs: [spec.slug] }), 'name');
    await refused(() => t.http.post('/v1/runners').set(admin).send({ slug: f.unique('r'), name: 'R', specs: null }), 'specs');
    const body = { slug: f.unique('spec'), name: 'S', architecture: 'x86_64', cpu: 8, memory: 2 ** 30, disk: 2 ** 30, network: false };
    for (const field of ['name', 'architecture', 'cpu', 'memory', 'disk', 'network']) {
      await refused(() => t.http.post('/v1/specs').set(admin).send({ ...body, [field]: null }), field);
    }
  });

  it('POST /v1/projects/{project}/jobs: every optional field', async () => {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const url = `/v1/projects/${tenant.project.id}/jobs`;
    for (const field of ['image', 'entrypoint', 'env', 'timeout', 'filePaths', 'maxAttempts', 'cmd', 'spec']) {
      await refused(() => t.http.post(url).set(bearer(tenant.key)).send({ spec: spec.slug, cmd: ['./bench'], [field]: null }), field);
    }
  });
});
