import { randomBytes } from 'node:crypto';
import type { HttpClient } from './http';
import { BENCH_ADMIN_TOKEN } from './runway-server';

/** What a benchmark needs to submit jobs and run them: set up through the public REST API. */
export interface Tenant {
  spec: string;
  org: string;
  key: string;
  project: string;
  runners: { id: string; token: string }[];
}

/**
 * A spec, an organization on `plan` (enterprise: no in-flight limit), an API key, a project and
 * `runners` runners of that spec, through `api` (an instance with the api role).
 */
export async function createTenant(api: HttpClient, runners: number, plan = 'enterprise'): Promise<Tenant> {
  const admin = { token: BENCH_ADMIN_TOKEN };
  const tag = randomBytes(3).toString('hex');
  const spec = `bench-${tag}`;
  await api.call('POST', '/v1/specs', {
    ...admin,
    expect: 201,
    body: { slug: spec, name: 'Bench x86 8c', architecture: 'x86_64', cpu: 8, memory: 32 * 2 ** 30, disk: 2 ** 39, network: false },
  });
  const org = `bench-${tag}`;
  await api.call('POST', '/v1/orgs', { ...admin, expect: 201, body: { slug: org, name: 'Bench', plan } });
  const { key } = (await api.call<{ key: string }>('POST', `/v1/orgs/${org}/keys`, { ...admin, expect: 201, body: { name: 'bench' } })).body;
  const project = (await api.call<{ id: string }>('POST', '/v1/projects', { token: key, expect: 201, body: { slug: `bench-${tag}`, name: 'Bench' } })).body.id;
  const registered: Tenant['runners'] = [];
  for (let i = 0; i < runners; i++) {
    const body = (
      await api.call<{ id: string; token: string }>('POST', '/v1/runners', {
        ...admin,
        expect: 201,
        body: { slug: `bench-${tag}-r${i}`, name: `Bench runner ${i}`, specs: [spec] },
      })
    ).body;
    registered.push({ id: body.id, token: body.token });
  }
  return { spec, org, key, project, runners: registered };
}

/** The body of every benchmark job: the smallest valid submission. */
export function jobBody(spec: string): Record<string, unknown> {
  return { spec, cmd: ['true'] };
}
