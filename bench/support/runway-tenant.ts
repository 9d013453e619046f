import { randomBytes } from 'node:crypto';
import { mapConcurrently } from './concurrency';
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
 * `runners` runners of that spec, through `api` (an instance with the api role). Runners are
 * registered `concurrency` at a time (one after the other by default); each registration is a
 * write on the server, so a few at once is polite even for thousands.
 */
export async function createTenant(api: HttpClient, runners: number, plan = 'enterprise', concurrency = 1): Promise<Tenant> {
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
  const registered = await mapConcurrently(runners, concurrency, async (i) => {
    const body = (
      await api.call<{ id: string; token: string }>('POST', '/v1/runners', {
        ...admin,
        expect: 201,
        body: { slug: `bench-${tag}-r${i}`, name: `Bench runner ${i}`, specs: [spec] },
      })
    ).body;
    return { id: body.id, token: body.token };
  });
  return { spec, org, key, project, runners: registered };
}

/** Submits `count` jobs with `body` to the tenant's project, `concurrency` at a time; their ids, in order. */
export function submitJobs(api: HttpClient, tenant: Tenant, count: number, body: Record<string, unknown>, concurrency: number): Promise<string[]> {
  return mapConcurrently(count, concurrency, async () => {
    const answer = await api.call<{ id: string }>('POST', `/v1/projects/${tenant.project}/jobs`, { token: tenant.key, body, expect: 201 });
    return answer.body.id;
  });
}

/** The body of every benchmark job: the smallest valid submission. */
export function jobBody(spec: string): Record<string, unknown> {
  return { spec, cmd: ['true'] };
}
