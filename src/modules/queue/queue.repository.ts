import { Injectable } from '@nestjs/common';
import { sqlIn, sqlLiterals } from '../../common/sql-literals';
import type { Plan } from '../../events/job-events';
import { plansWith } from '../../events/plans';
import { statusesTaking } from '../../machines/job.machine';
import { Db } from '../database/db';
import { type InFlightCounts, type PendingJob, ipKey } from './queue-order';
import { type SpecLoad, limitGroup } from './queue-view';

/** A pending job of the queue, with what the API shows of it. */
export interface QueuedJob extends PendingJob {
  projectId: string;
  createdAt: Date;
}

/** Everything the queue of one spec is computed from, read in one snapshot. */
export interface QueueSnapshot {
  /** In age order (created_at, id): the order `orderQueue` expects. */
  jobs: QueuedJob[];
  inFlight: InFlightCounts;
  load: SpecLoad;
}

/**
 * Everything, as one row of one statement (so one snapshot, and one round trip):
 * - `pending`: the spec's pending jobs, oldest first, with the organization's plan and limit now
 *   (the scheduler's limits follow the org's plan now, its priority the plan at submission);
 * - `in_flight`: jobs claimed or running now (any spec) of the orgs with jobs in this queue, and
 *   of unclaimed-plan orgs by the source IPs in it, as the scheduler counts them, each with how
 *   long it has been running (ms at $2, 0 while only claimed);
 * - the runners that serve the spec (not archived), how many are connected (`runner_status`),
 *   and how long each busy one has been running its job;
 * - the mean run time of the last 20 jobs that ran on the spec.
 */
const IP_PLANS = plansWith('ipInFlightLimit');
/** The statuses a runner holds a job in (in flight), as the machine says. */
const HELD = sqlLiterals(statusesTaking('heartbeat'));

const CONTEXT = `
  WITH queued AS (
    SELECT j.org_id, j.source_ip, o.plan FROM jobs j JOIN orgs o ON o.id = j.org_id
     WHERE j.status = 'pending' AND j.spec_id = $1
  ), in_flight AS (
    SELECT j.org_id, j.source_ip, ${sqlIn('o.plan', IP_PLANS)} AS unclaimed,
           GREATEST(0, COALESCE(extract(epoch FROM ($2::timestamptz - j.started_at)) * 1000, 0))::float8 AS elapsed_ms
      FROM jobs j JOIN orgs o ON o.id = j.org_id
     WHERE j.status IN (${HELD})
  ), spec_runners AS (
    SELECT r.id, COALESCE(st.connected, false) AS connected
      FROM runners r JOIN runner_specs rs ON rs.runner_id = r.id
      LEFT JOIN runner_status st ON st.runner_id = r.id
     WHERE rs.spec_id = $1 AND NOT r.archived
  ), last_runs AS (
    SELECT started_at, finished_at FROM jobs
     WHERE spec_id = $1 AND started_at IS NOT NULL AND finished_at IS NOT NULL
     ORDER BY finished_at DESC, id DESC LIMIT 20
  )
  SELECT
    (SELECT COALESCE(json_agg(json_build_object(
              'id', j.id, 'org_id', j.org_id, 'project_id', j.project_id, 'priority', j.priority,
              'created_at', j.created_at, 'source_ip', j.source_ip, 'plan', o.plan, 'max_concurrency', o.max_concurrency)
              ORDER BY j.created_at, j.id), '[]')
       FROM jobs j JOIN orgs o ON o.id = j.org_id
      WHERE j.status = 'pending' AND j.spec_id = $1) AS pending,
    (SELECT COALESCE(json_agg(json_build_object('org', f.org_id, 'elapsedMs', f.elapsed_ms)), '[]')
       FROM in_flight f WHERE f.org_id IN (SELECT org_id FROM queued)) AS org_in_flight,
    (SELECT COALESCE(json_agg(json_build_object('ip', f.source_ip, 'elapsedMs', f.elapsed_ms)), '[]')
       FROM in_flight f
      WHERE f.unclaimed
        AND EXISTS (SELECT 1 FROM queued q WHERE ${sqlIn('q.plan', IP_PLANS)} AND q.source_ip IS NOT DISTINCT FROM f.source_ip)) AS ip_in_flight,
    (SELECT count(*) FROM spec_runners)::int AS runners,
    (SELECT count(*) FROM spec_runners WHERE connected)::int AS connected,
    (SELECT COALESCE(array_agg(GREATEST(0, COALESCE(extract(epoch FROM ($2::timestamptz - j.started_at)) * 1000, 0))::float8), '{}')
       FROM spec_runners r JOIN jobs j ON j.runner_id = r.id AND j.status IN (${HELD})) AS busy_elapsed_ms,
    (SELECT (avg(extract(epoch FROM (finished_at - started_at))) * 1000)::float8 FROM last_runs) AS mean_run_ms`;

interface PendingRow {
  id: string;
  org_id: string;
  project_id: string;
  priority: number;
  /** JSON's timestamp text. */
  created_at: string;
  source_ip: string | null;
  plan: Plan;
  max_concurrency: number | null;
}

interface ContextRow {
  pending: PendingRow[];
  org_in_flight: { org: string; elapsedMs: number }[];
  ip_in_flight: { ip: string | null; elapsedMs: number }[];
  runners: number;
  connected: number;
  busy_elapsed_ms: number[];
  mean_run_ms: number | null;
}

/** The queue's reads: one statement. */
@Injectable()
export class QueueRepository {
  constructor(private readonly db: Db) {}

  async snapshot(specId: string, now: Date): Promise<QueueSnapshot> {
    const context = (await this.db.query<ContextRow>(CONTEXT, [specId, now])).rows[0];
    const pending = context.pending;

    const byOrg = new Map<string, number>();
    const byIp = new Map<string, number>();
    const elapsed = new Map<string, number[]>();
    const add = (counts: Map<string, number>, group: string, key: string, ms: number) => {
      counts.set(key, (counts.get(key) ?? 0) + 1);
      const list = elapsed.get(group);
      if (list === undefined) elapsed.set(group, [ms]);
      else list.push(ms);
    };
    for (const f of context.org_in_flight) add(byOrg, limitGroup('org', f.org), f.org, f.elapsedMs);
    for (const f of context.ip_in_flight) add(byIp, limitGroup('ip', ipKey(f.ip)), ipKey(f.ip), f.elapsedMs);

    return {
      jobs: pending.map((row) => ({
        id: row.id,
        orgId: row.org_id,
        projectId: row.project_id,
        priority: row.priority,
        createdAt: new Date(row.created_at),
        orgPlan: row.plan,
        maxConcurrency: row.max_concurrency,
        sourceIp: row.source_ip,
      })),
      inFlight: { byOrg, byIp },
      load: {
        runners: context.runners,
        connected: context.connected,
        busyElapsedMs: context.busy_elapsed_ms.map(Number),
        meanRunMs: context.mean_run_ms === null ? null : Number(context.mean_run_ms),
        inFlightElapsedMs: elapsed,
      },
    };
  }
}
