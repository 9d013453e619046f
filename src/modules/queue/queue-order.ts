import type { Plan } from '../../events/job-events';
import { PLANS, orgInFlightLimit } from '../../events/plans';
import { MinHeap } from './min-heap';

/**
 * The claim order of one spec's queue, simulated: pure, no Nest, no database.
 *
 * It mirrors the scheduler's CANDIDATES query (scheduling.repository.ts): among the claimable
 * pending jobs, priority first, then the organization with the fewest jobs in flight, then the
 * oldest job; a job whose organization (or, on the unclaimed plan, source IP) is at its in-flight
 * limit is not claimable. The queue is the sequence of picks the scheduler would make if every
 * picked job were claimed and held, so in-flight counts grow as the simulation goes. What is still
 * blocked by a limit when nothing more can be picked comes last, by priority and then age.
 *
 * Claiming only ever raises counts, so a job that is blocked stays blocked for the rest of the
 * simulation, and a tier that has nothing claimable left never gets any back: the simulation can
 * exhaust the tiers one after the other, and skip a blocked job for good.
 */

/** A pending job of the spec, as the queue needs it. */
export interface PendingJob {
  id: string;
  orgId: string;
  priority: number;
  /** The organization's plan now: limits follow it (priority is the plan at submission). */
  orgPlan: Plan;
  maxConcurrency: number | null;
  sourceIp: string | null;
}

/** Claimed + running jobs now, on every spec. */
export interface InFlightCounts {
  byOrg: ReadonlyMap<string, number>;
  /** Of unclaimed-plan organizations, by `ipKey(source IP)`. */
  byIp: ReadonlyMap<string, number>;
}

/** Why a job cannot be claimed until one of its organization's (or IP's) jobs ends. */
export interface LimitHold {
  scope: 'org' | 'ip';
  /** The org id, or the `ipKey` of the source IP. */
  key: string;
  /** Claimed + running now. */
  inFlight: number;
  limit: number;
  /** Jobs of the same org (IP) ahead in this queue that take the slots still free. */
  queuedAhead: number;
}

export interface Placed<J extends PendingJob> {
  job: J;
  /** 1-based. */
  position: number;
  /** null: the scheduler would claim it at this position; else the limit that holds it. */
  heldBy: LimitHold | null;
}

/** In-flight jobs of the unclaimed plan count per source IP; jobs without one share a key (SQL `IS NOT DISTINCT FROM`). */
export const ipKey = (sourceIp: string | null): string => (sourceIp === null ? 'none' : `ip:${sourceIp}`);

/** An organization's in-flight limit under its plan now; null when it has none. */
export const orgLimit = orgInFlightLimit;

/** The in-flight limit per source IP of a job of an organization on `plan` now; null: none. */
const ipLimitOf = (plan: Plan): number | null => PLANS[plan].ipInFlightLimit;

/**
 * The jobs in claim order. `jobs` must be in age order (created_at, then id), as the SQL reads
 * them: a job's index is its age rank. O(n log n) in the number of pending jobs.
 */
export function orderQueue<J extends PendingJob>(jobs: readonly J[], inFlight: InFlightCounts): Placed<J>[] {
  const orgCount = new Map(inFlight.byOrg);
  const ipCount = new Map(inFlight.byIp);
  const countOf = (map: Map<string, number>, key: string) => map.get(key) ?? 0;
  const orgFull = (job: PendingJob) => {
    const limit = orgInFlightLimit(job.orgPlan, job.maxConcurrency);
    return limit !== null && countOf(orgCount, job.orgId) >= limit;
  };
  const ipFull = (job: PendingJob) => {
    const limit = ipLimitOf(job.orgPlan);
    return limit !== null && countOf(ipCount, ipKey(job.sourceIp)) >= limit;
  };

  // An org's oldest job of the tier that its IP does not hold: the one the scheduler would see.
  const head = (org: { indices: number[]; next: number }): number | null => {
    while (org.next < org.indices.length && ipFull(jobs[org.indices[org.next]])) org.next++;
    return org.next < org.indices.length ? org.indices[org.next] : null;
  };

  const claimed: number[] = [];
  const taken = new Array<boolean>(jobs.length).fill(false);

  // Each tier's jobs per organization, oldest first; `next` skips those claimed or held by their IP.
  const tiers = new Map<number, Map<string, { indices: number[]; next: number }>>();
  jobs.forEach((job, index) => {
    const orgs = tiers.get(job.priority) ?? new Map<string, { indices: number[]; next: number }>();
    const org = orgs.get(job.orgId) ?? { indices: [], next: 0 };
    org.indices.push(index);
    orgs.set(job.orgId, org);
    tiers.set(job.priority, orgs);
  });

  for (const tier of [...tiers.keys()].sort((a, b) => b - a)) {
    const orgs = tiers.get(tier)!;
    // One entry per organization that may have a claimable job: its in-flight count and its
    // oldest claimable job, the scheduler's ORDER BY after priority. An org's own claim re-offers
    // it; its entry goes stale when another org's claim fills the IP of its head (unclaimed plan).
    // Keys only grow, so a stale entry is re-keyed when it comes up, and a fresh one at the top
    // is the scheduler's pick.
    const heap = new MinHeap<{ orgId: string; count: number; head: number }>((a, b) => a.count - b.count || a.head - b.head);
    const offer = (orgId: string) => {
      const org = orgs.get(orgId)!;
      const index = head(org);
      if (index === null || orgFull(jobs[index])) return;
      heap.push({ orgId, count: countOf(orgCount, orgId), head: index });
    };
    for (const orgId of orgs.keys()) offer(orgId);
    for (let top = heap.pop(); top !== undefined; top = heap.pop()) {
      const org = orgs.get(top.orgId)!;
      const index = head(org);
      if (index === null || orgFull(jobs[index])) continue;
      const count = countOf(orgCount, top.orgId);
      if (index !== top.head || count !== top.count) {
        heap.push({ orgId: top.orgId, count, head: index });
        continue;
      }
      const job = jobs[index];
      claimed.push(index);
      taken[index] = true;
      orgCount.set(job.orgId, count + 1);
      if (ipLimitOf(job.orgPlan) !== null) ipCount.set(ipKey(job.sourceIp), countOf(ipCount, ipKey(job.sourceIp)) + 1);
      org.next++;
      offer(top.orgId);
    }
  }

  const held = jobs
    .map((_, index) => index)
    .filter((index) => !taken[index])
    .sort((a, b) => jobs[b].priority - jobs[a].priority || a - b);
  const placed: Placed<J>[] = claimed.map((index, i) => ({ job: jobs[index], position: i + 1, heldBy: null }));
  for (const index of held) {
    const job = jobs[index];
    const limit = orgInFlightLimit(job.orgPlan, job.maxConcurrency);
    // Blocked for good (see above): by its org if that is full, else by its IP.
    const [scope, key, simulated, initial, max] =
      limit !== null && countOf(orgCount, job.orgId) >= limit
        ? (['org', job.orgId, orgCount, inFlight.byOrg, limit] as const)
        : (['ip', ipKey(job.sourceIp), ipCount, inFlight.byIp, ipLimitOf(job.orgPlan) ?? 0] as const);
    const current = initial.get(key) ?? 0;
    placed.push({
      job,
      position: placed.length + 1,
      heldBy: { scope, key, inFlight: current, limit: max, queuedAhead: countOf(simulated, key) - current },
    });
  }
  return placed;
}
