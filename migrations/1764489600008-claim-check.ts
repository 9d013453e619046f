import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A claim's locks and check in one call, so a claim is one statement: the append of its
 * JobClaimed event calls `runway_claim_check` in that statement, with no BEGIN, lock statement or
 * COMMIT around it. The function is VOLATILE, so PostgreSQL gives its check a snapshot of its own,
 * taken after the locks are held: it sees every claim that held them before and committed. (A
 * check in the append's own statement would read the statement's snapshot, taken before the
 * locks.) It takes the same advisory locks, in the same order and with the same keys, as the
 * claims of earlier releases took in a statement of their own, so instances of both take turns
 * correctly while a deployment rolls.
 *
 * The mechanism is fixed here; the policy comes from the code on every call: the plans with
 * their in-flight limits per organization and per source IP (events/plans.ts), as parallel
 * arrays, so a change of plans needs no migration. The in-flight statuses ('claimed', 'running')
 * are those of the partial indexes that the counts use (migrations 1 and 3).
 *
 * Returns one row: whether the job's lock was free (a job another claimer is on is skipped, not
 * waited for; no other lock is then taken), whether the runner is below its capacity, and whether
 * the job is still pending at the version read and below every limit now.
 */
export class ClaimCheck1764489600008 implements MigrationInterface {
  name = 'ClaimCheck1764489600008';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE FUNCTION runway_claim_check(
        p_runner text, p_capacity integer, p_job text, p_version integer,
        p_org text, p_ip text, p_plans text[], p_org_limits integer[], p_ip_limits integer[],
        OUT job_locked boolean, OUT runner_free boolean, OUT job_claimable boolean)
      LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        IF NOT pg_try_advisory_xact_lock(hashtextextended('job:' || p_job, 0)) THEN
          job_locked := false; runner_free := true; job_claimable := false;
          RETURN;
        END IF;
        job_locked := true;
        PERFORM pg_advisory_xact_lock(hashtextextended('runner:' || p_runner, 0));
        IF p_org IS NOT NULL THEN PERFORM pg_advisory_xact_lock(hashtextextended('org:' || p_org, 0)); END IF;
        IF p_ip IS NOT NULL THEN PERFORM pg_advisory_xact_lock(hashtextextended('ip:' || p_ip, 0)); END IF;

        SELECT count(*) < p_capacity INTO runner_free
          FROM jobs WHERE runner_id = p_runner::uuid AND status IN ('claimed', 'running');

        SELECT EXISTS (
          SELECT 1 FROM jobs j JOIN orgs o ON o.id = j.org_id
           CROSS JOIN LATERAL (SELECT p_org_limits[array_position(p_plans, o.plan)] AS org_limit,
                                      p_ip_limits[array_position(p_plans, o.plan)] AS ip_limit) l
           CROSS JOIN LATERAL (SELECT count(*) AS n FROM jobs WHERE org_id = o.id AND status IN ('claimed', 'running')) org_in_flight
           WHERE j.id = p_job::uuid AND j.status = 'pending' AND j.version = p_version
             -- A claim that did not take the organization's lock is refused if it has a limit now.
             AND (p_org IS NOT NULL OR (l.org_limit IS NULL AND l.ip_limit IS NULL AND o.max_concurrency IS NULL))
             AND (l.org_limit IS NULL OR org_in_flight.n < l.org_limit)
             AND (o.max_concurrency IS NULL OR org_in_flight.n < o.max_concurrency)
             AND (l.ip_limit IS NULL OR (
               SELECT count(*) FROM jobs x JOIN orgs xo ON xo.id = x.org_id
                WHERE x.status IN ('claimed', 'running') AND x.source_ip IS NOT DISTINCT FROM j.source_ip
                  AND p_ip_limits[array_position(p_plans, xo.plan)] IS NOT NULL) < l.ip_limit)
        ) INTO job_claimable;
      END $$;
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`DROP FUNCTION runway_claim_check(text, integer, text, integer, text, text, text[], integer[], integer[])`);
  }
}
