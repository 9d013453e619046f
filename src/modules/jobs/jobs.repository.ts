import { Injectable } from '@nestjs/common';
import type { Plan } from '../../events/job-events';
import type { JobStatus } from '../../machines/job.machine';
import { sqlIn } from '../../common/sql-literals';
import { LIMITED_PLANS } from '../../events/plans';
import { Db, type Sql } from '../database/db';

export interface JobRow {
  id: string;
  org_id: string;
  project_id: string;
  spec_id: string;
  spec: string;
  plan: Plan;
  priority: number;
  status: JobStatus;
  attempt: number;
  max_attempts: number;
  runner_id: string | null;
  timeout: number;
  created_at: Date;
  claimed_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  exit_code: number | null;
  failure: string | null;
  version: number;
  cancel_acknowledged: boolean;
}

/** The jobs view: one row per job, the latest folded state, written with the job's events. */
@Injectable()
export class JobsRepository {
  constructor(private readonly db: Db) {}

  /**
   * The specs on which an org with an in-flight limit has pending jobs (one index probe per spec,
   * jobs_pending_org_idx); none for an org without a limit, whose ended job held nothing back.
   */
  async pendingSpecsOfLimited(orgId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ slug: string }>(
      `SELECT s.slug FROM orgs o CROSS JOIN specs s
        WHERE o.id = $1 AND (${sqlIn('o.plan', LIMITED_PLANS)} OR o.max_concurrency IS NOT NULL)
          AND EXISTS (SELECT 1 FROM jobs j WHERE j.status = 'pending' AND j.spec_id = s.id AND j.org_id = o.id)`,
      [orgId],
    );
    return rows.map((r) => r.slug);
  }

  async find(id: string): Promise<JobRow | null> {
    return (await this.db.query<JobRow>(`SELECT * FROM jobs WHERE id = $1`, [id])).rows[0] ?? null;
  }

  /** A project's jobs, newest first (ids are time-ordered), after `beforeId` when paging. */
  async list(projectId: string, options: { status?: JobStatus; limit: number; beforeId?: string }): Promise<JobRow[]> {
    const { rows } = await this.db.query<JobRow>(
      `SELECT * FROM jobs
        WHERE project_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $4`,
      [projectId, options.status ?? null, options.beforeId ?? null, options.limit],
    );
    return rows;
  }

  /** The jobs, in the order of `ids` (those that exist). */
  async findAll(ids: readonly string[]): Promise<JobRow[]> {
    const { rows } = await this.db.query<JobRow>(
      `SELECT j.* FROM unnest($1::uuid[]) WITH ORDINALITY AS i(id, n) JOIN jobs j ON j.id = i.id ORDER BY i.n`,
      [ids],
    );
    return rows;
  }

  /** The jobs an Idempotency-Key already made within the window (`job_id` the first), with the hash of its request. */
  async findIdempotent(orgId: string, key: string, since: Date): Promise<{ job_id: string; job_ids: string[]; request_hash: string } | null> {
    const { rows } = await this.db.query<{ job_id: string; job_ids: string[]; request_hash: string }>(
      `SELECT job_id, COALESCE(job_ids, ARRAY[job_id]) AS job_ids, request_hash FROM job_idempotency_keys
        WHERE org_id = $1 AND key = $2 AND created_at > $3`,
      [orgId, key, since],
    );
    return rows[0] ?? null;
  }

  /**
   * Claims an Idempotency-Key for a new job; an expired claim is replaced. Returns false when a
   * live claim exists (another request with the key won the race).
   */
  async claimIdempotencyKey(
    tx: Sql,
    claim: { orgId: string; key: string; requestHash: string; jobIds: readonly string[]; at: string; since: Date },
  ): Promise<boolean> {
    const { rowCount } = await tx.query(
      `INSERT INTO job_idempotency_keys (org_id, key, request_hash, job_id, job_ids, created_at) VALUES ($1, $2, $3, ($4::uuid[])[1], $4, $5)
       ON CONFLICT (org_id, key) DO UPDATE
         SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, job_ids = EXCLUDED.job_ids, created_at = EXCLUDED.created_at
         WHERE job_idempotency_keys.created_at <= $6`,
      [claim.orgId, claim.key, claim.requestHash, claim.jobIds, claim.at, claim.since],
    );
    return rowCount === 1;
  }
}
