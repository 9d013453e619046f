import { Injectable } from '@nestjs/common';
import { Db } from '../database/db';

/** One project's billed jobs in a range. */
export interface ProjectUsageRow {
  project_id: string;
  project_slug: string | null;
  minutes: number;
  jobs: number;
}

/**
 * The billing view, `job_billing`: one row per job that ran, kept by the billing projector
 * (`billingViews`). It trails the log by that projector's lag, which /metrics shows as
 * `runway_log_follower_lag_events{follower="projection:billing"}` and `..._seconds`.
 */
@Injectable()
export class BillingRepository {
  constructor(private readonly db: Db) {}

  /**
   * An org's billed minutes and jobs per project, for jobs that finished in `[from, to)`, most
   * minutes first, then by project id. A job still running has no `finished_at` and is not in it.
   */
  async usageByProject(orgId: string, from: Date, to: Date): Promise<ProjectUsageRow[]> {
    const { rows } = await this.db.query<{ project_id: string; project_slug: string | null; minutes: string; jobs: string }>(
      `SELECT b.project_id, p.slug AS project_slug, sum(b.minutes) AS minutes, count(*) AS jobs
         FROM job_billing b
         LEFT JOIN projects p ON p.id = b.project_id
        WHERE b.org_id = $1 AND b.finished_at >= $2 AND b.finished_at < $3
        GROUP BY b.project_id, p.slug
        ORDER BY sum(b.minutes) DESC, b.project_id`,
      [orgId, from.toISOString(), to.toISOString()],
    );
    return rows.map((r) => ({ project_id: r.project_id, project_slug: r.project_slug, minutes: Number(r.minutes), jobs: Number(r.jobs) }));
  }
}
