import { Injectable } from '@nestjs/common';
import { sqlLiterals } from '../../common/sql-literals';
import { statusesTaking } from '../../machines/job.machine';
import { Db } from '../database/db';

// The job machine's rules as SQL, from the machine: a runner holds a job in the statuses that
// take its heartbeat (acceptsHeartbeat), and owes a cancel's acknowledgement in those that take
// one, until it acknowledged it (acceptsCancelAck).
const HELD = sqlLiterals(statusesTaking('heartbeat'));
const AWAITING_ACK = sqlLiterals(statusesTaking('acknowledgeCancel'));

/** A job assigned to a runner that the runner may still hold or still has to hear about. */
export interface AssignedJob {
  id: string;
  attempt: number;
  status: string;
}

/** What the gateway reads of runners and their jobs when one connects or claims. */
@Injectable()
export class GatewayRepository {
  constructor(private readonly db: Db) {}

  /** Slugs of the specs a runner serves. */
  async specsOf(runnerId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ slug: string }>(
      `SELECT s.slug FROM runner_specs rs JOIN specs s ON s.id = rs.spec_id WHERE rs.runner_id = $1`,
      [runnerId],
    );
    return rows.map((r) => r.slug);
  }

  /**
   * A reconnecting runner's jobs: the ones claimed for it or running on it, and the canceled ones
   * whose cancel it has not acknowledged yet.
   */
  async assignedTo(runnerId: string): Promise<AssignedJob[]> {
    const { rows } = await this.db.query<AssignedJob>(
      `SELECT id, attempt, status FROM jobs
        WHERE runner_id = $1 AND (status IN (${HELD}) OR (status IN (${AWAITING_ACK}) AND NOT cancel_acknowledged))`,
      [runnerId],
    );
    return rows;
  }

  /** Ids of the jobs claimed for a runner and not started yet. */
  async claimedFor(runnerId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM jobs WHERE runner_id = $1 AND status = 'claimed'`, [runnerId]);
    return rows.map((r) => r.id);
  }
}
