import { Injectable } from '@nestjs/common';
import { sqlIn, sqlLiterals } from '../../common/sql-literals';
import { PLANS, PLAN_NAMES, type Plan, hasInFlightLimit, plansWith } from '../../events/plans';
import { statusesTaking } from '../../machines/job.machine';
import { Db } from '../database/db';
import type { AppendCheck } from '../event-store/event-store';

/** A pending job that the runner could take, in claim order. */
export interface Candidate {
  id: string;
  org_id: string;
  source_ip: string | null;
  plan: Plan;
  max_concurrency: number | null;
  version: number;
}

// The plans' limits (events/plans.ts) as SQL. Plans and limits are constants of the code, inlined
// so the statements read as before and plan the same; `o` is the job's organization.

/** In flight: claimed for a runner or running on it, the statuses a runner holds a job in. */
const IN_FLIGHT = sqlLiterals(statusesTaking('heartbeat'));
/** The plans whose jobs count per source IP. */
const IP_PLANS = plansWith('ipInFlightLimit');

/** The conditions that leave out a job of an organization at its plan's limit, given how its in-flight jobs are counted. */
function underPlanLimits(limit: 'orgInFlightLimit' | 'ipInFlightLimit', count: string): string {
  return plansWith(limit)
    .map((plan) => `AND NOT (${sqlIn('o.plan', [plan])} AND ${count} >= ${PLANS[plan][limit]})`)
    .join('\n     ');
}

/**
 * Claim order: priority tier first; inside a tier the organization with the fewest jobs in
 * flight, then the oldest job. Jobs whose organization (or, for unclaimed, source IP) is at its
 * in-flight limit are left out. Limits follow the organization's plan now, priority the plan at
 * submission.
 *
 * It reads no more than it needs, whatever the length of the queue: the organizations with jobs
 * pending on the runner's specs (a skip scan of jobs_pending_org_idx: one index probe per
 * organization), and of each the first $2 of its pending jobs in its own claim order (priority,
 * age), which is all of it that can be among the first $2 overall, since the jobs of one
 * organization share its in-flight count. A job left out by its source IP's limit is skipped
 * inside its organization's list, so the list still holds $2 that pass.
 */
const CANDIDATES = `
  WITH RECURSIVE runner_spec AS (
    SELECT rs.spec_id FROM runner_specs rs JOIN runners r ON r.id = rs.runner_id
     WHERE rs.runner_id = $1 AND NOT r.archived
  ), queued_org AS (
    SELECT s.spec_id, first.org_id FROM runner_spec s CROSS JOIN LATERAL (
      SELECT org_id FROM jobs WHERE status = 'pending' AND spec_id = s.spec_id ORDER BY org_id LIMIT 1) first
    UNION ALL
    SELECT q.spec_id, next.org_id FROM queued_org q CROSS JOIN LATERAL (
      SELECT org_id FROM jobs WHERE status = 'pending' AND spec_id = q.spec_id AND org_id > q.org_id ORDER BY org_id LIMIT 1) next
  ), in_flight AS (
    SELECT org_id, count(*) AS n FROM jobs WHERE status IN (${IN_FLIGHT}) GROUP BY org_id
  ), ip_in_flight AS (
    SELECT j.source_ip, count(*) AS n FROM jobs j JOIN orgs o ON o.id = j.org_id
     WHERE j.status IN (${IN_FLIGHT}) AND ${sqlIn('o.plan', IP_PLANS)} GROUP BY j.source_ip
  )
  SELECT j.id, q.org_id, j.source_ip, o.plan, o.max_concurrency, j.version
    FROM queued_org q
    JOIN orgs o ON o.id = q.org_id
    LEFT JOIN in_flight f ON f.org_id = q.org_id
    CROSS JOIN LATERAL (
      SELECT p.id, p.source_ip, p.priority, p.created_at, p.version FROM jobs p
       WHERE p.status = 'pending' AND p.spec_id = q.spec_id AND p.org_id = q.org_id
         ${underPlanLimits('ipInFlightLimit', 'COALESCE((SELECT ip.n FROM ip_in_flight ip WHERE ip.source_ip IS NOT DISTINCT FROM p.source_ip), 0)')}
       ORDER BY p.priority DESC, p.created_at, p.id
       LIMIT $2) j
   WHERE true
     ${underPlanLimits('orgInFlightLimit', 'COALESCE(f.n, 0)')}
     AND NOT (o.max_concurrency IS NOT NULL AND COALESCE(f.n, 0) >= o.max_concurrency)
   ORDER BY j.priority DESC, COALESCE(f.n, 0), j.created_at, j.id
   LIMIT $2`;

/** Whether a claim of the candidate takes its organization's lock: the organization had an in-flight limit when read. */
function locksOrg(candidate: Candidate): boolean {
  return hasInFlightLimit(candidate.plan, candidate.max_concurrency);
}

/** Why a claim's check refused it: the runner is full, or the job is no longer claimable. */
export class NotClaimable extends Error {
  constructor(readonly runnerFull: boolean) {
    super(runnerFull ? 'the runner is at its capacity' : 'the job is no longer claimable');
  }
}

@Injectable()
export class SchedulingRepository {
  constructor(private readonly db: Db) {}

  /** The runner's candidates, on the specs it serves; none when it is archived or gone. */
  candidates(runnerId: string, limit: number): Promise<Candidate[]> {
    return this.db.query<Candidate>(CANDIDATES, [runnerId, limit]).then((r) => r.rows);
  }

  /**
   * The claim's locks and check, made by the statement that appends its JobClaimed event (an
   * AppendCheck: `runway_claim_check`, migration 8), so a claim is that one statement. The
   * function first takes the job's lock without waiting: a job another claimer is on is skipped,
   * not waited for (as `SKIP LOCKED` would; it would otherwise fail on the stream's version after
   * the other's commit). Then, waiting, those of what a claim could push over a limit: the runner
   * (its capacity), the organization when it has an in-flight limit and, on plans limited per
   * source IP, the IP; always in that order, so claimers never wait on each other in a cycle. The
   * locks give the statement no transaction id (the stream's lock, after them, does). Under
   * them, with a snapshot of its own, it reads whether the runner is below its capacity and the
   * job (at the version the candidate was read at) still pending and below its limits now; a
   * claim that took no organization lock (it had no limit when read) is refused if it gained one.
   */
  claimCheck(claim: { runnerId: string; capacity: number; candidate: Candidate }): AppendCheck {
    const { runnerId, capacity, candidate } = claim;
    const args = [
      runnerId,
      capacity,
      candidate.id,
      candidate.version,
      locksOrg(candidate) ? candidate.org_id : null,
      PLANS[candidate.plan].ipInFlightLimit !== null ? (candidate.source_ip ?? '') : null,
      PLAN_NAMES,
      PLAN_NAMES.map((plan) => PLANS[plan].orgInFlightLimit),
      PLAN_NAMES.map((plan) => PLANS[plan].ipInFlightLimit),
    ];
    return {
      sql: (p) => {
        const [runner, cap, job, version, org, ip, plans, orgLimits, ipLimits] = args.map(p);
        return `SELECT c.job_locked, c.runner_free, c.job_claimable, c.job_locked AND c.runner_free AND c.job_claimable AS ok
          FROM runway_claim_check(${runner}::text, ${cap}::int, ${job}::text, ${version}::int, ${org}::text, ${ip}::text,
                                  ${plans}::text[], ${orgLimits}::int[], ${ipLimits}::int[]) c`;
      },
      refuse: (row) => new NotClaimable(row.job_locked === true && row.runner_free !== true),
    };
  }
}
