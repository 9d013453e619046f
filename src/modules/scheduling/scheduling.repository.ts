import { Injectable } from '@nestjs/common';
import { Db, type Sql } from '../database/db';

/** A pending job that the runner could take, in claim order. */
export interface Candidate {
  id: string;
  org_id: string;
  source_ip: string | null;
  plan: string;
  version: number;
}

/**
 * Claim order: priority tier first; inside a tier the organization with the fewest jobs in
 * flight, then the oldest job. Jobs whose organization (or, for unclaimed, source IP) is at its
 * in-flight limit are left out. Limits follow the organization's plan now, priority the plan at
 * submission.
 */
const CANDIDATES = `
  WITH in_flight AS (
    SELECT org_id, count(*) AS n FROM jobs WHERE status IN ('claimed', 'running') GROUP BY org_id
  ), ip_in_flight AS (
    SELECT j.source_ip, count(*) AS n FROM jobs j JOIN orgs o ON o.id = j.org_id
     WHERE j.status IN ('claimed', 'running') AND o.plan = 'unclaimed' GROUP BY j.source_ip
  )
  SELECT j.id, j.org_id, j.source_ip, o.plan, j.version
    FROM jobs j
    JOIN orgs o ON o.id = j.org_id
    LEFT JOIN in_flight f ON f.org_id = j.org_id
    LEFT JOIN ip_in_flight ip ON o.plan = 'unclaimed' AND ip.source_ip IS NOT DISTINCT FROM j.source_ip
   WHERE j.status = 'pending'
     AND j.spec_id = ANY($1::uuid[])
     AND NOT (o.plan = 'free' AND COALESCE(f.n, 0) >= 1)
     AND NOT (o.plan = 'unclaimed' AND COALESCE(ip.n, 0) >= 1)
     AND NOT (o.max_concurrency IS NOT NULL AND COALESCE(f.n, 0) >= o.max_concurrency)
   ORDER BY j.priority DESC, COALESCE(f.n, 0), j.created_at, j.id
   LIMIT $2`;

@Injectable()
export class SchedulingRepository {
  constructor(private readonly db: Db) {}

  candidates(specIds: readonly string[], limit: number): Promise<Candidate[]> {
    return this.db.query<Candidate>(CANDIDATES, [specIds, limit]).then((r) => r.rows);
  }

  /**
   * Serializes claimers that could break a limit together: the runner (its capacity), the
   * organization (its in-flight limit) and, for unclaimed jobs, the source IP. Transaction-level
   * advisory locks, taken in that order, so two claimers never wait on each other in a cycle.
   * They give the transaction no id: the job's append stays its first write.
   */
  async lock(tx: Sql, runnerId: string, candidate: Candidate): Promise<void> {
    await tx.query(
      `SELECT pg_advisory_xact_lock(hashtextextended('runner:' || $1, 0)),
              pg_advisory_xact_lock(hashtextextended('org:' || $2, 0)),
              CASE WHEN $3::text IS NOT NULL THEN pg_advisory_xact_lock(hashtextextended('ip:' || $3, 0)) END`,
      [runnerId, candidate.org_id, candidate.plan === 'unclaimed' ? (candidate.source_ip ?? '') : null],
    );
  }

  /** Under the locks: may this runner take this job now? Reads what the lock holders committed. */
  async stillClaimable(
    tx: Sql,
    runnerId: string,
    capacity: number,
    candidate: Candidate,
  ): Promise<{ runnerFree: boolean; jobClaimable: boolean }> {
    const { rows } = await tx.query<{ runner_free: boolean; job_claimable: boolean }>(
      `SELECT
         (SELECT count(*) FROM jobs WHERE runner_id = $1 AND status IN ('claimed', 'running')) < $2 AS runner_free,
         EXISTS (
           SELECT 1 FROM jobs j JOIN orgs o ON o.id = j.org_id
            WHERE j.id = $3 AND j.status = 'pending' AND j.version = $4
              AND NOT (o.plan = 'free' AND
                       (SELECT count(*) FROM jobs WHERE org_id = o.id AND status IN ('claimed', 'running')) >= 1)
              AND NOT (o.max_concurrency IS NOT NULL AND
                       (SELECT count(*) FROM jobs WHERE org_id = o.id AND status IN ('claimed', 'running')) >= o.max_concurrency)
              AND NOT (o.plan = 'unclaimed' AND
                       (SELECT count(*) FROM jobs x JOIN orgs xo ON xo.id = x.org_id
                         WHERE xo.plan = 'unclaimed' AND x.status IN ('claimed', 'running')
                           AND x.source_ip IS NOT DISTINCT FROM j.source_ip) >= 1)
         ) AS job_claimable`,
      [runnerId, capacity, candidate.id, candidate.version],
    );
    return { runnerFree: rows[0].runner_free, jobClaimable: rows[0].job_claimable };
  }

  /** The runner's specs, if it may claim at all (exists, not archived). */
  async runnerSpecs(runnerId: string): Promise<string[] | null> {
    const { rows } = await this.db.query<{ archived: boolean; spec_ids: string[] }>(
      `SELECT r.archived, COALESCE(array_agg(rs.spec_id) FILTER (WHERE rs.spec_id IS NOT NULL), '{}') AS spec_ids
         FROM runners r LEFT JOIN runner_specs rs ON rs.runner_id = r.id
        WHERE r.id = $1 GROUP BY r.id`,
      [runnerId],
    );
    const row = rows[0];
    return row === undefined || row.archived ? null : row.spec_ids;
  }
}
