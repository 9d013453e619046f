import { Injectable } from '@nestjs/common';
import type { EventEnvelope } from '../../events/envelope';
import { Db, type Sql } from '../database/db';
import { loadCheckpoint, logPositionOfEvent } from '../event-store/checkpoints';
import { EventStore, type LogPosition } from '../event-store/event-store';
import { JOB_STREAM, billingViews } from '../jobs/job.views';
import { ORG_STREAM } from '../orgs/org';
import { checkpointName } from '../projections/registry';
import { RUNNER_STREAM } from '../runners/runner';
import { SPEC_STREAM } from '../specs/specs';
import type {
  AuditViews,
  BillingViewRow,
  JobViewRow,
  OrgKeyViewRow,
  OrgViewRow,
  ProjectViewRow,
  RunnerViewRow,
  SpecViewRow,
} from './audit-views';
import type { StreamHead } from './chain';

/** Where a reader of every stream, stream by stream, has got to. */
export interface StreamCursor {
  streamId: string;
  position: number;
}

export const STREAMS_START: StreamCursor = { streamId: '00000000-0000-0000-0000-000000000000', position: 0 };

/** A stored event and the transaction that wrote it. */
export interface StoredEvent {
  envelope: EventEnvelope;
  transactionId: string;
}

/** A view row that no stream in the log accounts for. */
export interface OrphanRow {
  table: string;
  streamType: string;
  id: string;
}

/**
 * What the audit reads: events stream by stream, the views derived from them, and the billing
 * projector's checkpoint. Reads only; the audit's transactions are READ ONLY.
 */
@Injectable()
export class AuditRepository {
  constructor(
    private readonly db: Db,
    private readonly store: EventStore,
  ) {}

  /**
   * Runs `work` in one REPEATABLE READ, READ ONLY transaction: every read sees the same committed
   * state, so the log and the views it derived are compared as of one moment.
   */
  snapshot<T>(work: (tx: Sql) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
      return work(tx);
    });
  }

  /** The next `limit` events, stream by stream, after `after` (see EventStore.readStreams). */
  eventsAfter(tx: Sql, after: StreamCursor, limit: number): Promise<StoredEvent[]> {
    return this.store.readStreams(after, limit, tx);
  }

  logPositionOf(tx: Sql, eventId: string): Promise<LogPosition | null> {
    return logPositionOfEvent(tx, eventId);
  }

  /** The org a job belongs to: its jobs row's, or (no row) its submission's. Null: no such job. */
  async ownerOfJob(jobId: string): Promise<string | null> {
    const { rows } = await this.db.query<{ org_id: string | null }>(
      `SELECT COALESCE(
         (SELECT org_id::text FROM jobs WHERE id = $1),
         (SELECT data->>'orgId' FROM events WHERE stream_id = $1 AND stream_position = 1 AND stream_type = $2)) AS org_id`,
      [jobId, JOB_STREAM],
    );
    return rows[0]?.org_id ?? null;
  }

  async jobRowExists(tx: Sql, jobId: string): Promise<boolean> {
    const { rows } = await tx.query(`SELECT 1 FROM jobs WHERE id = $1`, [jobId]);
    return rows.length > 0;
  }

  /** The views of these streams, their heads and the billing checkpoint, in the caller's snapshot. */
  async views(tx: Sql, streams: readonly { id: string; type: string }[]): Promise<AuditViews> {
    const ids = (type: string) => streams.filter((s) => s.type === type).map((s) => s.id);
    const all = streams.map((s) => s.id);
    const jobIds = ids(JOB_STREAM);
    const orgIds = ids(ORG_STREAM);
    const runnerIds = ids(RUNNER_STREAM);
    const specIds = ids(SPEC_STREAM);
    const select = async <T>(wanted: readonly string[], text: string): Promise<T[]> =>
      wanted.length === 0 ? [] : (await tx.query<T>(text, [wanted])).rows;

    const heads = await select<{ stream_id: string; stream_type: string; version: number; last_hash: string }>(
      all,
      `SELECT stream_id, stream_type, version, last_hash FROM streams WHERE stream_id = ANY($1::uuid[])`,
    );
    const jobs = await select<JobViewRow>(
      jobIds,
      `SELECT id, org_id, project_id, spec_id, spec, plan, priority, status, attempt, max_attempts, runner_id, timeout,
              source_ip, created_at, claimed_at, started_at, finished_at, exit_code, failure, version, cancel_acknowledged, state
         FROM jobs WHERE id = ANY($1::uuid[])`,
    );
    const billing = await select<BillingViewRow>(
      jobIds,
      `SELECT job_id, org_id, project_id, started_at, finished_at, minutes FROM job_billing WHERE job_id = ANY($1::uuid[])`,
    );
    const orgs = await select<OrgViewRow>(
      orgIds,
      `SELECT id, slug, name, plan, max_concurrency, created_at FROM orgs WHERE id = ANY($1::uuid[])`,
    );
    const keys = await select<OrgKeyViewRow>(
      orgIds,
      `SELECT id, org_id, name, key_hash, revoked_at FROM org_keys WHERE org_id = ANY($1::uuid[])`,
    );
    const projects = await select<ProjectViewRow>(orgIds, `SELECT id, org_id, slug, name FROM projects WHERE org_id = ANY($1::uuid[])`);
    const runners = await select<RunnerViewRow>(
      runnerIds,
      `SELECT r.id, r.slug, r.name, r.token_hash, r.archived, r.created_at,
              COALESCE((SELECT array_agg(rs.spec_id::text) FROM runner_specs rs WHERE rs.runner_id = r.id), '{}') AS spec_ids
         FROM runners r WHERE r.id = ANY($1::uuid[])`,
    );
    const specs = await select<SpecViewRow>(
      specIds,
      `SELECT id, slug, name, architecture, cpu, memory, disk, network, created_at FROM specs WHERE id = ANY($1::uuid[])`,
    );
    return {
      heads: new Map(heads.map((h): [string, StreamHead] => [h.stream_id, { streamType: h.stream_type, version: h.version, lastHash: h.last_hash }])),
      jobs: new Map(jobs.map((row) => [row.id, row])),
      billing: new Map(billing.map((row) => [row.job_id, row])),
      billingCheckpoint: jobIds.length === 0 ? null : await loadCheckpoint(tx, checkpointName(billingViews)),
      orgs: new Map(orgs.map((row) => [row.id, row])),
      orgKeys: groupBy(keys, (key) => key.org_id),
      projects: groupBy(projects, (project) => project.org_id),
      runners: new Map(runners.map((row) => [row.id, row])),
      specs: new Map(specs.map((row) => [row.id, row])),
    };
  }

  /** Streams whose head is there but not one event (every append writes both, in one transaction). */
  async headsWithoutEvents(tx: Sql): Promise<{ streamId: string; streamType: string; version: number }[]> {
    const { rows } = await tx.query<{ stream_id: string; stream_type: string; version: number }>(
      `SELECT stream_id, stream_type, version FROM streams s
        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id)
        ORDER BY stream_id`,
    );
    return rows.map((row) => ({ streamId: row.stream_id, streamType: row.stream_type, version: row.version }));
  }

  /** Rows of the views that no stream of theirs accounts for (written without an event). */
  async orphanRows(tx: Sql): Promise<OrphanRow[]> {
    const orphans = (table: string, column: string, streamType: string) =>
      `SELECT '${table}' AS table_name, '${streamType}' AS stream_type, v.${column}::text AS id FROM ${table} v
        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = v.${column} AND e.stream_type = '${streamType}')`;
    const { rows } = await tx.query<{ table_name: string; stream_type: string; id: string }>(
      [
        orphans('jobs', 'id', JOB_STREAM),
        orphans('job_billing', 'job_id', JOB_STREAM),
        orphans('orgs', 'id', ORG_STREAM),
        orphans('runners', 'id', RUNNER_STREAM),
        orphans('specs', 'id', SPEC_STREAM),
      ].join(' UNION ALL ') + ' ORDER BY id, table_name',
    );
    return rows.map((row) => ({ table: row.table_name, streamType: row.stream_type, id: row.id }));
  }
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const group = groups.get(key(item));
    if (group === undefined) groups.set(key(item), [item]);
    else group.push(item);
  }
  return groups;
}
