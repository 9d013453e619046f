/**
 * The plans and their rules (docs/protocol.md, "Plans, tiers and limits"): the one table that
 * submission, the scheduler's SQL, the queue view, the metrics and the benchmarks read.
 * `plans.unit.spec.ts` holds it to the contract's table.
 */

/** An organization's plan. It is recorded in `OrgCreated`/`OrgUpdated` and, with its priority, in `JobSubmitted`. */
export type Plan = 'enterprise' | 'team' | 'free' | 'unclaimed';

/** What a plan gives its organization's jobs. */
export interface PlanRules {
  /** Claim priority, fixed on the job at submission: higher is claimed first. */
  readonly priority: number;
  /**
   * Jobs in flight (claimed + running) per organization; null: none. An organization's own
   * `maxConcurrency` is a further limit, on any plan.
   */
  readonly orgInFlightLimit: number | null;
  /** Jobs in flight per source IP of the submission, over the organizations on such plans; null: none. */
  readonly ipInFlightLimit: number | null;
  /** A job's timeout when the submission gives none, in seconds. */
  readonly defaultTimeout: number;
  /** The longest timeout a submission may ask for, in seconds; null: none. */
  readonly maxTimeout: number | null;
}

export const PLANS: Readonly<Record<Plan, PlanRules>> = {
  enterprise: { priority: 300, orgInFlightLimit: null, ipInFlightLimit: null, defaultTimeout: 3600, maxTimeout: null },
  team: { priority: 200, orgInFlightLimit: null, ipInFlightLimit: null, defaultTimeout: 3600, maxTimeout: null },
  free: { priority: 100, orgInFlightLimit: 1, ipInFlightLimit: null, defaultTimeout: 900, maxTimeout: 900 },
  unclaimed: { priority: 0, orgInFlightLimit: null, ipInFlightLimit: 1, defaultTimeout: 300, maxTimeout: 300 },
};

/** Every plan, in the table's order (highest priority first). */
export const PLAN_NAMES = Object.keys(PLANS) as readonly Plan[];

/** Claim priority by plan: higher is claimed first. */
export const PLAN_PRIORITY: Readonly<Record<Plan, number>> = Object.fromEntries(PLAN_NAMES.map((plan) => [plan, PLANS[plan].priority])) as Record<Plan, number>;

/** The plans that set `limit`, in the table's order. */
export function plansWith(limit: 'orgInFlightLimit' | 'ipInFlightLimit'): Plan[] {
  return PLAN_NAMES.filter((plan) => PLANS[plan][limit] !== null);
}

/** The plans with an in-flight limit of their own, per organization or per source IP. */
export const LIMITED_PLANS: readonly Plan[] = PLAN_NAMES.filter((plan) => PLANS[plan].orgInFlightLimit !== null || PLANS[plan].ipInFlightLimit !== null);

/** An organization's in-flight limit under `plan` now and its own `maxConcurrency`: the lower; null when neither sets one. */
export function orgInFlightLimit(plan: Plan, maxConcurrency: number | null): number | null {
  const planLimit = PLANS[plan].orgInFlightLimit;
  if (planLimit === null) return maxConcurrency;
  return maxConcurrency === null ? planLimit : Math.min(planLimit, maxConcurrency);
}

/** Whether claims of an organization's jobs must count against a limit: its plan has one, or it set its own. */
export function hasInFlightLimit(plan: Plan, maxConcurrency: number | null): boolean {
  return LIMITED_PLANS.includes(plan) || maxConcurrency !== null;
}

const BY_PRIORITY = [...PLAN_NAMES].sort((a, b) => PLANS[b].priority - PLANS[a].priority);

/** The plan tier a priority falls in: the highest plan whose priority it reaches (below them all, the lowest). */
export function planOfPriority(priority: number): Plan {
  return BY_PRIORITY.find((plan) => priority >= PLANS[plan].priority) ?? BY_PRIORITY[BY_PRIORITY.length - 1];
}
