import type { EventEnvelope } from '../../events/envelope';
import { upcast } from '../../events/upcasters';
import type { JobEvent } from '../../events/job-events';
import { type JobState, evolve, fold } from '../../machines/job.machine';
import type { Sql } from '../database/db';
import type { Projection } from '../projections/projection';

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

/** Writes folded jobs to the jobs view (one statement for any number of jobs). */
export async function saveJobStates(tx: Sql, jobs: readonly JobState[]): Promise<void> {
  if (jobs.length === 0) return;
  await tx.query(
    `INSERT INTO jobs SELECT * FROM jsonb_populate_recordset(NULL::jobs, $1::jsonb)
     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, attempt = EXCLUDED.attempt,
       runner_id = EXCLUDED.runner_id, claimed_at = EXCLUDED.claimed_at, started_at = EXCLUDED.started_at,
       finished_at = EXCLUDED.finished_at, exit_code = EXCLUDED.exit_code, failure = EXCLUDED.failure,
       version = EXCLUDED.version, cancel_acknowledged = EXCLUDED.cancel_acknowledged, state = EXCLUDED.state`,
    [JSON.stringify(jobs.map(row))],
  );
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
    const events = await tx.query<JobEvent>(
      `SELECT type, schema_version AS "schemaVersion", data FROM public.events WHERE stream_id = $1 ORDER BY stream_position`,
      [id],
    );
    const folded = fold(events.rows.map(upcast));
    if (folded !== null) states.set(id, folded);
  }
  return states;
}

/**
 * Jobs and submissions' Idempotency-Keys: kept inline (claiming and the API read them at once).
 * Commands write the state they folded (`saveJobStates`); replay folds event by event here.
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
      const event = envelope as unknown as JobEvent;
      states.set(envelope.streamId, evolve(states.get(envelope.streamId) ?? null, event));
      if (event.type === 'JobSubmitted' && event.data.idempotency !== null) {
        // A key is reused only after its window, so the later submission is the one that holds it.
        await tx.query(
          `INSERT INTO job_idempotency_keys (org_id, key, request_hash, job_id, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (org_id, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at`,
          [event.data.orgId, event.data.idempotency.key, event.data.idempotency.requestHash, event.data.jobId, event.data.submittedAt],
        );
      }
    }
    await saveJobStates(tx, ids.map((id) => states.get(id) as JobState));
  },
};

/**
 * Billing minutes: a job that ran is billed ceil((finished - started) / 60 s), to the moment it
 * completed, failed or was canceled (a timeout included). A job that never ran is not billed.
 * Kept by a projector; organization and project come from the jobs view.
 */
export const billingViews: Projection = {
  name: 'billing',
  tables: ['job_billing'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    for (const envelope of events) {
      if (envelope.streamType !== JOB_STREAM) continue;
      const event = envelope as unknown as JobEvent;
      if (event.type === 'JobStarted') {
        await tx.query(
          `INSERT INTO job_billing (job_id, org_id, project_id, started_at)
           SELECT id, org_id, project_id, $2 FROM jobs WHERE id = $1
           ON CONFLICT (job_id) DO NOTHING`,
          [envelope.streamId, event.data.startedAt],
        );
      } else if (event.type === 'JobCompleted' || event.type === 'JobFailed' || event.type === 'JobCanceled') {
        const finishedAt = event.type === 'JobCanceled' ? event.data.canceledAt : event.data.finishedAt;
        await tx.query(
          `UPDATE job_billing SET finished_at = $2,
             minutes = ceil(extract(epoch FROM ($2::timestamptz - started_at)) / 60)::int
           WHERE job_id = $1 AND finished_at IS NULL`,
          [envelope.streamId, finishedAt],
        );
      }
    }
  },
};
