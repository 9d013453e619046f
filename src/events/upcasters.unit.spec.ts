import { evolveOrg } from '../modules/orgs/org';
import { evolveRunner } from '../modules/runners/runner';
import type { OrgEvent } from './org-events';
import type { RunnerEvent } from './runner-events';
import { upcast } from './upcasters';

/** Stored shapes an earlier build appended for `{"plan": null}` and `{"name": null}`: the no-ops they were. */
describe('upcast: null members that changed nothing', () => {
  const org = evolveOrg(null, { type: 'OrgCreated', schemaVersion: 1, data: { orgId: 'o', slug: 'acme', name: 'Acme', plan: 'team', maxConcurrency: 4 } });
  const runner = evolveRunner(null, { type: 'RunnerRegistered', schemaVersion: 1, data: { runnerId: 'r', slug: 'r', name: 'Runner', specIds: ['s'], tokenHash: 'h' } });
  const stored = <E>(type: string, data: Record<string, unknown>) => ({ type, schemaVersion: 1, data }) as unknown as E;

  it('OrgUpdated {"plan": null} keeps the plan; a null maxConcurrency still lifts the limit', () => {
    expect(upcast(stored<OrgEvent>('OrgUpdated', { plan: null })).data).toEqual({});
    expect(evolveOrg(org, upcast(stored<OrgEvent>('OrgUpdated', { plan: null })))).toEqual(org);
    expect(evolveOrg(org, upcast(stored<OrgEvent>('OrgUpdated', { plan: null, maxConcurrency: null })))).toEqual({ ...org, maxConcurrency: null });
  });

  it('RunnerUpdated {"name": null} or {"specIds": null} keeps them', () => {
    expect(evolveRunner(runner, upcast(stored<RunnerEvent>('RunnerUpdated', { name: null })))).toEqual(runner);
    expect(evolveRunner(runner, upcast(stored<RunnerEvent>('RunnerUpdated', { name: 'New', specIds: null })))).toEqual({ ...runner, name: 'New' });
  });

  it('leaves every other event as the same object', () => {
    const update = stored<OrgEvent>('OrgUpdated', { plan: 'free', maxConcurrency: null });
    expect(upcast(update)).toBe(update);
    const renamed = stored<RunnerEvent>('RunnerUpdated', { name: 'New' });
    expect(upcast(renamed)).toBe(renamed);
  });
});
