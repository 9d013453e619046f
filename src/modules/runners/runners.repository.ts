import { Injectable } from '@nestjs/common';
import { UUID_PATTERN } from '../../common/ids';
import { sqlLiterals } from '../../common/sql-literals';
import { statusesTaking } from '../../machines/job.machine';
import { Db } from '../database/db';

export interface RunnerRow {
  id: string;
  slug: string;
  name: string;
  archived: boolean;
  created_at: Date;
  updated_at: Date;
  specs: string[];
  current_job: string | null;
  connected: boolean;
  last_seen_at: Date | null;
  fingerprint: Record<string, unknown> | null;
}

/** The statuses a runner holds a job in (its current job), as the machine says. */
const HELD = sqlLiterals(statusesTaking('heartbeat'));

const SELECT_RUNNERS = `
  SELECT r.id, r.slug, r.name, r.archived, r.created_at, r.updated_at,
         COALESCE((SELECT array_agg(s.slug ORDER BY s.slug) FROM runner_specs rs JOIN specs s ON s.id = rs.spec_id
                    WHERE rs.runner_id = r.id), '{}') AS specs,
         (SELECT j.id FROM jobs j WHERE j.runner_id = r.id AND j.status IN (${HELD})
           ORDER BY j.claimed_at DESC LIMIT 1) AS current_job,
         COALESCE(st.connected, false) AS connected, st.last_seen_at, st.fingerprint
    FROM runners r LEFT JOIN runner_status st ON st.runner_id = r.id`;

/** The runner views: runners, the specs each serves, where each is, and what it runs. */
@Injectable()
export class RunnersRepository {
  constructor(private readonly db: Db) {}

  /** By id or slug. */
  async find(ref: string): Promise<RunnerRow | null> {
    const column = UUID_PATTERN.test(ref) ? 'id' : 'slug';
    return (await this.db.query<RunnerRow>(`${SELECT_RUNNERS} WHERE r.${column} = $1`, [ref])).rows[0] ?? null;
  }

  async list(): Promise<RunnerRow[]> {
    return (await this.db.query<RunnerRow>(`${SELECT_RUNNERS} ORDER BY r.slug`)).rows;
  }
}
