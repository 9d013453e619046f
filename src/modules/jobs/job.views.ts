import type { StoredEvent } from '../../events/decode';
import { decodeJobEvent } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import type { JobEvent } from '../../events/job-events';
import { type JobState, evolve, fold } from '../../machines/job.machine';
import type { Sql } from '../database/db';
import { type InlineWrite, runInlineWrites } from '../database/inline-write';
import type { Projection } from '../projections/projection';
import type { JobRow } from './jobs.repository';

export const JOB_STREAM = 'job';

/** The jobs view's row for a folded job; `state` keeps the whole fold for the next event. */
function row(job: JobState) {
  return {
    id: job.jobId,
    org_id: job.orgId,
    project_id: job.projectId,
    spec_id: job.specId,
    spec: job.spec,
    plan: job.plan,
    priority: job.priority,
    status: job.status,
    attempt: job.attempt,
    max_attempts: job.maxAttempts,
    runner_id: job.runnerId,
    timeout: job.timeout,
    source_ip: job.sourceIp,
    created_at: job.createdAt,
    claimed_at: job.claimedAt,
    started_at: job.startedAt,
    finished_at: job.finishedAt,
    exit_code: job.exitCode,
    failure: job.failure,
    version: job.version,
    cancel_acknowledged: job.cancelAcknowledged,
    state: job,
  };
}

/** The jobs view's row of a folded job, as a read of the view returns it. */
export function jobRowOf(job: JobState): JobRow {
  const { state: _state, ...columns } = row(job);
  const date = (at: string | null) => (at === null ? null : new Date(at));
  return {
    ...columns,
    created_at: new Date(job.createdAt),
    claimed_at: date(job.claimedAt),
    started_at: date(job.startedAt),
    finished_at: date(job.finishedAt),
  };
}

/** The jobs view's write: one statement for any number of jobs. */
const JOB_STATES_SQL: InlineWrite['sql'] = (rows, wentIn) => `INSERT INTO jobs SELECT * FROM jsonb_populate_recordset(NULL::jobs, ${rows}) r
     WHERE ${wentIn('r.id')}
     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, attempt = EXCLUDED.attempt,
       runner_id = EXCLUDED.runner_id, claimed_at = EXCLUDED.claimed_at, started_at = EXCLUDED.started_at,
       finished_at = EXCLUDED.finished_at, exit_code = EXCLUDED.exit_code, failure = EXCLUDED.failure,
       version = EXCLUDED.version, cancel_acknowledged = EXCLUDED.cancel_acknowledged, state = EXCLUDED.state`;

/** The write of folded jobs to the jobs view. */
export function jobStatesWrite(jobs: readonly JobState[]): InlineWrite {
  return { name: 'jobs', rows: jobs.map(row), sql: JOB_STATES_SQL };
}

/** Writes folded jobs to the jobs view (one statement for any number of jobs). */
export async function saveJobStates(tx: Sql, jobs: readonly JobState[]): Promise<void> {
  if (jobs.length === 0) return;
  await runInlineWrites(tx, [jobStatesWrite(jobs)]);
}

/** The folded state of each job, from the view, or from its stream for a row that has none. */
async function loadStates(tx: Sql, ids: readonly string[]): Promise<Map<string, JobState>> {
  const { rows } = await tx.query<{ id: string; state: JobState | null }>(`SELECT id, state FROM jobs WHERE id = ANY($1::uuid[])`, [ids]);
  const states = new Map<string, JobState>();
  for (const { id, state } of rows) {
    if (state !== null) {
      states.set(id, state);
      continue;
    }
    const events = await tx.query<StoredEvent>(
      `SELECT type, schema_version AS "schemaVersion", data, stream_id AS "streamId", stream_position AS position
       FROM public.events WHERE stream_id = $1 ORDER BY stream_position`,
      [id],
    );
    const folded = fold(events.rows.map((stored) => decodeJobEvent(stored)));
    if (folded !== null) states.set(id, folded);
  }
  return states;
}

/** A row of `job_idempotency_keys`. */
export interface IdempotencyKeyRow {
  org_id: string;
  key: string;
  request_hash: string;
  /** The first job the request made; `job_ids` all of them, in the order the request gave them. */
  job_id: string;
  job_ids: string[];
  created_at: string;
}

/**
 * The Idempotency-Keys a batch of events writes: for each (organization, key), its last request in
 * log order (a key is reused only after its window, so the later request is the one that holds
 * it). One request may have made several jobs (a batch submission): its JobSubmitted events carry
 * the same key, request hash and time, and follow each other in the log in the order given.
 */
export function foldIdempotencyKeys(events: readonly EventEnvelope[]): IdempotencyKeyRow[] {
  const keys = new Map<string, IdempotencyKeyRow>();
  for (const envelope of events) {
    if (envelope.streamType !== JOB_STREAM || envelope.type !== 'JobSubmitted') continue;
    const event = decodeJobEvent(envelope);
    if (event.type !== 'JobSubmitted') continue;
    const { data } = event;
    const { idempotency } = data;
    if (idempotency === null) continue;
    // A uuid and the key: uuids (compared as PostgreSQL does, whatever their case) have no '/'.
    const id = `${data.orgId.toLowerCase()}/${idempotency.key}`;
    const held = keys.get(id);
    if (held !== undefined && sameRequest(held, idempotency.requestHash, data.submittedAt)) {
      held.job_ids.push(data.jobId);
      continue;
    }
    keys.set(id, {
      org_id: data.orgId,
      key: idempotency.key,
      request_hash: idempotency.requestHash,
      job_id: data.jobId,
      job_ids: [data.jobId],
      created_at: data.submittedAt,
    });
  }
  return [...keys.values()];
}

function sameRequest(row: Pick<IdempotencyKeyRow, 'request_hash' | 'created_at'>, requestHash: string, at: string): boolean {
  return row.request_hash === requestHash && Date.parse(row.created_at) === Date.parse(at);
}

/**
 * Writes the keys. A request's jobs may span two batches of events: a row of the same request
 * (same hash and time) takes the next batch's jobs after its own; another request replaces it.
 */
async function saveIdempotencyKeys(tx: Sql, rows: readonly IdempotencyKeyRow[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO job_idempotency_keys AS k (org_id, key, request_hash, job_id, job_ids, created_at)
     SELECT org_id, key, request_hash, job_id, job_ids, created_at
     FROM jsonb_to_recordset($1::jsonb) AS r(org_id uuid, key text, request_hash text, job_id uuid, job_ids uuid[], created_at timestamptz)
     ON CONFLICT (org_id, key) DO UPDATE SET
       job_ids = CASE
         WHEN k.request_hash = EXCLUDED.request_hash AND k.created_at = EXCLUDED.created_at
           THEN COALESCE(k.job_ids, ARRAY[k.job_id]) || EXCLUDED.job_ids
         ELSE EXCLUDED.job_ids END,
       job_id = CASE
         WHEN k.request_hash = EXCLUDED.request_hash AND k.created_at = EXCLUDED.created_at THEN k.job_id
         ELSE EXCLUDED.job_id END,
       request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at`,
    [JSON.stringify(rows)],
  );
}

/**
 * Jobs and submissions' Idempotency-Keys: kept inline (claiming and the API read them at once).
 * Commands write the state they folded (`saveJobStates`); replay folds each job's events over its
 * state here, and writes the jobs and the keys of a batch with one statement each.
 */
export const jobViews: Projection = {
  name: 'jobs',
  tables: ['jobs', 'job_idempotency_keys'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    const jobEvents = events.filter((e) => e.streamType === JOB_STREAM);
    if (jobEvents.length === 0) return;
    const ids = [...new Set(jobEvents.map((e) => e.streamId))];
    const states = await loadStates(tx, ids);
    for (const envelope of jobEvents) {
      states.set(envelope.streamId, evolve(states.get(envelope.streamId) ?? null, decodeJobEvent(envelope)));
    }
    await saveIdempotencyKeys(tx, foldIdempotencyKeys(jobEvents));
    await saveJobStates(tx, ids.map((id) => states.get(id) as JobState));
  },
};

/** When a job's row in `job_billing` starts (`JobStarted`), and when it ends: completed, failed or canceled. */
function billingEvent(event: JobEvent): { start: string } | { finish: string } | null {
  switch (event.type) {
    case 'JobStarted':
      return { start: event.data.startedAt };
    case 'JobCompleted':
    case 'JobFailed':
      return { finish: event.data.finishedAt };
    case 'JobCanceled':
      return { finish: event.data.canceledAt };
    default:
      return null;
  }
}

/** The writes a batch of events makes to `job_billing`. */
export interface BillingWrites {
  /** Each job's first finish in the batch, for a row that was there before it (and is unfinished). */
  finishes: { job_id: string; finished_at: string }[];
  /** Each job's first start in the batch and its first finish after that start, for a row inserted unless one is there. */
  starts: { job_id: string; started_at: string; finished_at: string | null }[];
}

/**
 * Folds a batch into its billing writes (pure). Event by event, a start inserts the job's row
 * unless there is one (`ON CONFLICT DO NOTHING`), and a finish sets the end of a row that has none
 * (`finished_at IS NULL`). So of the batch's events,
 *
 * - a row there before the batch ignores the starts and takes the job's first finish, if it is
 *   still unfinished: `finishes`, written first (before the inserts, it reaches only such rows);
 * - a row not there before is inserted by the job's first start (from the jobs view, as one event
 *   would) and takes the first finish after that start: `starts`, inserted with their end.
 */
export function foldBilling(events: readonly EventEnvelope[]): BillingWrites {
  const finishes = new Map<string, BillingWrites['finishes'][number]>();
  const starts = new Map<string, BillingWrites['starts'][number]>();
  for (const envelope of events) {
    if (envelope.streamType !== JOB_STREAM) continue;
    const billing = billingEvent(decodeJobEvent(envelope));
    if (billing === null) continue;
    const jobId = envelope.streamId;
    const key = jobId.toLowerCase(); // as PostgreSQL compares uuids
    if ('start' in billing) {
      if (!starts.has(key)) starts.set(key, { job_id: jobId, started_at: billing.start, finished_at: null });
      continue;
    }
    if (!finishes.has(key)) finishes.set(key, { job_id: jobId, finished_at: billing.finish });
    const start = starts.get(key);
    if (start !== undefined && start.finished_at === null) start.finished_at = billing.finish;
  }
  return { finishes: [...finishes.values()], starts: [...starts.values()] };
}

async function saveBilling(tx: Sql, writes: BillingWrites): Promise<void> {
  if (writes.finishes.length > 0) {
    await tx.query(
      `UPDATE job_billing b SET finished_at = f.finished_at,
         minutes = ceil(extract(epoch FROM (f.finished_at - b.started_at)) / 60)::int
       FROM jsonb_to_recordset($1::jsonb) AS f(job_id uuid, finished_at timestamptz)
       WHERE b.job_id = f.job_id AND b.finished_at IS NULL`,
      [JSON.stringify(writes.finishes)],
    );
  }
  if (writes.starts.length > 0) {
    await tx.query(
      `INSERT INTO job_billing (job_id, org_id, project_id, started_at, finished_at, minutes)
       SELECT j.id, j.org_id, j.project_id, s.started_at, s.finished_at,
         ceil(extract(epoch FROM (s.finished_at - s.started_at)) / 60)::int
       FROM jsonb_to_recordset($1::jsonb) AS s(job_id uuid, started_at timestamptz, finished_at timestamptz)
       JOIN jobs j ON j.id = s.job_id
       ON CONFLICT (job_id) DO NOTHING`,
      [JSON.stringify(writes.starts)],
    );
  }
}

/**
 * Billing minutes: a job that ran is billed ceil((finished - started) / 60 s), to the moment it
 * completed, failed or was canceled (a timeout included). A job that never ran is not billed.
 * Kept by a projector; organization and project come from the jobs view.
 */
export const billingViews: Projection = {
  name: 'billing',
  tables: ['job_billing'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    await saveBilling(tx, foldBilling(events));
  },
};
