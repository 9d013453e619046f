import { randomBytes } from 'node:crypto';
import { type TestApp, admin, bearer } from './app';

/** Things tests need, made through the public API as an operator and an org would. */
export class Fixtures {
  constructor(private readonly t: TestApp) {}

  unique(prefix: string): string {
    return `${prefix}-${randomBytes(4).toString('hex')}`;
  }

  async org(plan = 'team', extra: Record<string, unknown> = {}) {
    const slug = this.unique('org');
    const org = (await this.t.http.post('/v1/orgs').set(admin).send({ slug, name: `Org ${slug}`, plan, ...extra }).expect(201)).body;
    const key = (await this.t.http.post(`/v1/orgs/${slug}/keys`).set(admin).send({ name: 'ci' }).expect(201)).body;
    return { org, key: key.key as string, keyId: key.id as string };
  }

  async spec() {
    const slug = this.unique('spec');
    return (
      await this.t.http
        .post('/v1/specs')
        .set(admin)
        .send({ slug, name: 'x86 8c', architecture: 'x86_64', cpu: 8, memory: 32 * 2 ** 30, disk: 2 ** 39, network: false })
        .expect(201)
    ).body;
  }

  async project(key: string) {
    const slug = this.unique('proj');
    return (await this.t.http.post('/v1/projects').set(bearer(key)).send({ slug, name: 'Project' }).expect(201)).body;
  }

  /** An org with a key and a project. */
  async tenant(plan = 'team', extra: Record<string, unknown> = {}) {
    const org = await this.org(plan, extra);
    return { ...org, project: await this.project(org.key) };
  }

  async runner(specSlugs: string[]) {
    const body = (await this.t.http.post('/v1/runners').set(admin).send({ slug: this.unique('runner'), name: 'Runner', specs: specSlugs }).expect(201)).body;
    return { id: body.id as string, slug: body.slug as string, token: body.token as string };
  }

  async submit(tenant: { key: string; project: { id: string } }, spec: string, extra: Record<string, unknown> = {}) {
    return (
      await this.t.http
        .post(`/v1/projects/${tenant.project.id}/jobs`)
        .set(bearer(tenant.key))
        .send({ spec, cmd: ['./bench'], ...extra })
        .expect(201)
    ).body as { id: string; status: string; attempt: number };
  }

  async job(id: string) {
    return (await this.t.http.get(`/v1/jobs/${id}`).set(admin).expect(200)).body;
  }

  async eventTypes(id: string): Promise<string[]> {
    const { rows } = await this.t.db.query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_position`, [id]);
    return rows.map((r) => r.type);
  }
}
