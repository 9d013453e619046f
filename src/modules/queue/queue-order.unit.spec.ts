import fc from 'fast-check';
import type { Plan } from '../../events/job-events';
import { PLAN_PRIORITY } from '../../events/job-events';
import { type InFlightCounts, type PendingJob, ipKey, orderQueue, orgLimit } from './queue-order';

interface Org {
  id: string;
  plan: Plan;
  maxConcurrency?: number | null;
}

/** Jobs in age order: the n-th argument is the n-th oldest. */
const jobsOf = (...specs: [Org, { priority?: number; ip?: string | null }?][]): PendingJob[] =>
  specs.map(([org, extra = {}], i) => ({
    id: `j${i}`,
    orgId: org.id,
    priority: extra.priority ?? PLAN_PRIORITY[org.plan],
    orgPlan: org.plan,
    maxConcurrency: org.maxConcurrency ?? null,
    sourceIp: extra.ip === undefined ? '10.0.0.1' : extra.ip,
  }));

const counts = (byOrg: Record<string, number> = {}, byIp: Record<string, number> = {}): InFlightCounts => ({
  byOrg: new Map(Object.entries(byOrg)),
  byIp: new Map(Object.entries(byIp)),
});

const ids = (placed: { job: PendingJob }[]) => placed.map((p) => p.job.id);

/**
 * The scheduler's rule, step by step and without cleverness: the CANDIDATES query's filter and
 * ORDER BY over the pending jobs with the counts as they are, first row claimed, counts updated.
 */
function naive(jobs: readonly PendingJob[], inFlight: InFlightCounts): string[] {
  const org = new Map(inFlight.byOrg);
  const ip = new Map(inFlight.byIp);
  const pending = jobs.map((job, age) => ({ job, age }));
  const order: string[] = [];
  for (;;) {
    const claimable = pending.filter(({ job }) => {
      const n = org.get(job.orgId) ?? 0;
      if (job.orgPlan === 'free' && n >= 1) return false;
      if (job.orgPlan === 'unclaimed' && (ip.get(ipKey(job.sourceIp)) ?? 0) >= 1) return false;
      if (job.maxConcurrency !== null && n >= job.maxConcurrency) return false;
      return true;
    });
    if (claimable.length === 0) break;
    claimable.sort((a, b) => b.job.priority - a.job.priority || (org.get(a.job.orgId) ?? 0) - (org.get(b.job.orgId) ?? 0) || a.age - b.age);
    const { job } = claimable[0];
    order.push(job.id);
    pending.splice(pending.findIndex((p) => p.job === job), 1);
    org.set(job.orgId, (org.get(job.orgId) ?? 0) + 1);
    if (job.orgPlan === 'unclaimed') ip.set(ipKey(job.sourceIp), (ip.get(ipKey(job.sourceIp)) ?? 0) + 1);
  }
  pending.sort((a, b) => b.job.priority - a.job.priority || a.age - b.age);
  return [...order, ...pending.map((p) => p.job.id)];
}

describe('orgLimit', () => {
  it('is 1 on the free plan, maxConcurrency where set, none otherwise', () => {
    expect(orgLimit('free', null)).toBe(1);
    expect(orgLimit('free', 3)).toBe(1);
    expect(orgLimit('team', null)).toBeNull();
    expect(orgLimit('enterprise', 2)).toBe(2);
    expect(orgLimit('unclaimed', null)).toBeNull();
  });
});

describe('orderQueue', () => {
  const enterprise: Org = { id: 'ent', plan: 'enterprise' };
  const teamA: Org = { id: 'teamA', plan: 'team' };
  const teamB: Org = { id: 'teamB', plan: 'team' };
  const free: Org = { id: 'free', plan: 'free' };

  it('orders by tier, then the org with fewer jobs in flight, then age; a free org gets one job at a time', () => {
    // The gateway test's queue: free-1, free-2, teamA-1, teamA-2, teamB-1, enterprise-1.
    const jobs = jobsOf([free], [free], [teamA], [teamA], [teamB], [enterprise]);
    const placed = orderQueue(jobs, counts());
    expect(ids(placed)).toEqual(['j5', 'j2', 'j4', 'j3', 'j0', 'j1']);
    expect(placed.map((p) => p.position)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(placed.slice(0, 5).every((p) => p.heldBy === null)).toBe(true);
    expect(placed[5].heldBy).toEqual({ scope: 'org', key: 'free', inFlight: 0, limit: 1, queuedAhead: 1 });
  });

  it('counts the jobs an org has in flight on every spec', () => {
    const jobs = jobsOf([teamA], [teamB], [teamA]);
    expect(ids(orderQueue(jobs, counts({ teamA: 2 })))).toEqual(['j1', 'j0', 'j2']);
    expect(ids(orderQueue(jobs, counts()))).toEqual(['j0', 'j1', 'j2']);
  });

  it('puts jobs held by their org’s limit last, by priority then age, and says by what', () => {
    const capped: Org = { id: 'capped', plan: 'enterprise', maxConcurrency: 2 };
    const jobs = jobsOf([free], [capped], [capped], [capped], [teamA]);
    const placed = orderQueue(jobs, counts({ free: 1, capped: 1 }));
    expect(ids(placed)).toEqual(['j1', 'j4', 'j2', 'j3', 'j0']);
    expect(placed.map((p) => p.heldBy)).toEqual([
      null,
      null,
      { scope: 'org', key: 'capped', inFlight: 1, limit: 2, queuedAhead: 1 },
      { scope: 'org', key: 'capped', inFlight: 1, limit: 2, queuedAhead: 1 },
      { scope: 'org', key: 'free', inFlight: 1, limit: 1, queuedAhead: 0 },
    ]);
  });

  it('holds unclaimed jobs one per source IP, across organizations, and lets other IPs through', () => {
    const anonA: Org = { id: 'anonA', plan: 'unclaimed' };
    const anonB: Org = { id: 'anonB', plan: 'unclaimed' };
    const jobs = jobsOf([anonA, { ip: '1.1.1.1' }], [anonB, { ip: '1.1.1.1' }], [anonA, { ip: '2.2.2.2' }], [anonB, { ip: null }], [anonA, { ip: null }]);
    const placed = orderQueue(jobs, counts());
    // anonA takes 1.1.1.1 first; anonB (fewer in flight) takes its null-IP job next; then anonA's 2.2.2.2.
    expect(ids(placed)).toEqual(['j0', 'j3', 'j2', 'j1', 'j4']);
    expect(placed[3].heldBy).toEqual({ scope: 'ip', key: ipKey('1.1.1.1'), inFlight: 0, limit: 1, queuedAhead: 1 });
    expect(placed[4].heldBy).toEqual({ scope: 'ip', key: ipKey(null), inFlight: 0, limit: 1, queuedAhead: 1 });
  });

  it('passes over an org whose oldest job’s IP another org’s claim just filled, for the next oldest job', () => {
    const [a, b, c]: Org[] = ['a', 'b', 'c'].map((id) => ({ id, plan: 'unclaimed' }));
    const jobs = jobsOf([c, { ip: '1.1.1.1' }], [a, { ip: '1.1.1.1' }], [b, { ip: '2.2.2.2' }], [a, { ip: '3.3.3.3' }]);
    // c's claim fills 1.1.1.1: a's next claimable job (j3) is younger than b's (j2).
    expect(ids(orderQueue(jobs, counts()))).toEqual(['j0', 'j2', 'j3', 'j1']);
  });

  it('follows the org’s plan now for limits and the job’s priority from its submission', () => {
    // Upgraded from free to team: its old free-tier job is not held by the free limit any more.
    const upgraded: Org = { id: 'up', plan: 'team' };
    const jobs = jobsOf([upgraded, { priority: 100 }], [upgraded, { priority: 100 }], [teamA]);
    expect(ids(orderQueue(jobs, counts({ up: 1 })))).toEqual(['j2', 'j0', 'j1']);
    expect(orderQueue(jobs, counts({ up: 1 })).every((p) => p.heldBy === null)).toBe(true);
  });

  it('is empty for an empty queue', () => {
    expect(orderQueue([], counts())).toEqual([]);
  });

  it('agrees with the scheduler’s rule applied pick by pick, on any queue', () => {
    const orgs: Org[] = [
      { id: 'e1', plan: 'enterprise' },
      { id: 'e2', plan: 'enterprise', maxConcurrency: 2 },
      { id: 't1', plan: 'team' },
      { id: 't2', plan: 'team', maxConcurrency: 1 },
      { id: 't3', plan: 'team', maxConcurrency: 3 },
      { id: 'f1', plan: 'free' },
      { id: 'f2', plan: 'free' },
      { id: 'u1', plan: 'unclaimed' },
      { id: 'u2', plan: 'unclaimed' },
      { id: 'u3', plan: 'unclaimed', maxConcurrency: 2 },
    ];
    const job = fc.record({
      org: fc.integer({ min: 0, max: orgs.length - 1 }),
      tier: fc.constantFrom<number | null>(null, null, null, 0, 100, 200, 300),
      ip: fc.constantFrom<string | null>('a', 'b', 'c', null),
    });
    fc.assert(
      fc.property(
        fc.array(job, { maxLength: 40 }),
        fc.dictionary(fc.constantFrom(...orgs.map((o) => o.id)), fc.integer({ min: 0, max: 3 })),
        fc.dictionary(fc.constantFrom(ipKey('a'), ipKey('b'), ipKey(null)), fc.integer({ min: 0, max: 1 })),
        (specs, byOrg, byIp) => {
          const jobs = jobsOf(...specs.map((s) => [orgs[s.org], { priority: s.tier ?? undefined, ip: s.ip }] as [Org, { priority?: number; ip: string | null }]));
          const inFlight = counts(byOrg, byIp);
          const placed = orderQueue(jobs, inFlight);
          expect(ids(placed)).toEqual(naive(jobs, inFlight));
          // Every held job comes after every claimable one.
          const firstHeld = placed.findIndex((p) => p.heldBy !== null);
          if (firstHeld >= 0) expect(placed.slice(firstHeld).every((p) => p.heldBy !== null)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  // How fast is a benchmark's question, not a unit test's: here, only that a large queue comes out whole.
  it('orders thousands of jobs, each once, held ones last', () => {
    const orgs: Org[] = Array.from({ length: 300 }, (_, i) => ({ id: `o${i}`, plan: (['enterprise', 'team', 'free', 'unclaimed'] as const)[i % 4], maxConcurrency: i % 7 === 0 ? 3 : null }));
    const jobs = jobsOf(...Array.from({ length: 20_000 }, (_, i) => [orgs[(i * 7919) % orgs.length], { ip: `10.0.${i % 50}.1` }] as [Org, { ip: string }]));
    const placed = orderQueue(jobs, counts());
    expect(placed).toHaveLength(20_000);
    expect(new Set(placed.map((p) => p.job.id)).size).toBe(20_000);
    const firstHeld = placed.findIndex((p) => p.heldBy !== null);
    expect(firstHeld).toBeGreaterThan(0);
    expect(placed.slice(firstHeld).every((p) => p.heldBy !== null)).toBe(true);
  });
});
