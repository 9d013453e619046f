import type { EventEnvelope } from '../../events/envelope';
import type { JobEvent } from '../../events/job-events';
import type { RunnerEvent } from '../../events/runner-events';
import type { Sql } from '../database/db';
import type { Projection } from '../projections/projection';
import { RUNNER_STREAM } from './runner';

/** Runners and the specs they serve: kept inline, read at once by auth and claiming. */
export const runnerViews: Projection = {
  name: 'runners',
  tables: ['runners', 'runner_specs'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    for (const envelope of events) {
      if (envelope.streamType !== RUNNER_STREAM) continue;
      const event = envelope as unknown as RunnerEvent;
      const id = envelope.streamId;
      const at = envelope.occurredAt;
      switch (event.type) {
        case 'RunnerRegistered':
          await tx.query(
            `INSERT INTO runners (id, slug, name, token_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
            [id, event.data.slug, event.data.name, event.data.tokenHash, at],
          );
          await setSpecs(tx, id, event.data.specIds);
          break;
        case 'RunnerTokenRotated':
          await tx.query(`UPDATE runners SET token_hash = $2, updated_at = $3 WHERE id = $1`, [id, event.data.tokenHash, at]);
          break;
        case 'RunnerUpdated':
          await tx.query(`UPDATE runners SET name = COALESCE($2, name), updated_at = $3 WHERE id = $1`, [id, event.data.name ?? null, at]);
          if (event.data.specIds !== undefined) await setSpecs(tx, id, event.data.specIds);
          break;
        case 'RunnerArchived':
        case 'RunnerUnarchived':
          await tx.query(`UPDATE runners SET archived = $2, updated_at = $3 WHERE id = $1`, [id, event.type === 'RunnerArchived', at]);
          break;
        case 'RunnerConnected':
        case 'RunnerDisconnected':
          break; // runner_status, kept by a projector
        default: {
          const _exhaustive: never = event;
          throw new Error(`unknown runner event ${(_exhaustive as { type: string }).type}`);
        }
      }
    }
  },
};

async function setSpecs(tx: Sql, runnerId: string, specIds: readonly string[]): Promise<void> {
  await tx.query(`DELETE FROM runner_specs WHERE runner_id = $1`, [runnerId]);
  await tx.query(`INSERT INTO runner_specs (runner_id, spec_id) SELECT $1, unnest($2::uuid[])`, [runnerId, specIds]);
}

/**
 * Where each runner is (connected, where, what it said of its machine, when it was last seen),
 * kept by a projector from runner events and the job events the runner caused itself.
 */
export const runnerStatusViews: Projection = {
  name: 'runner-status',
  tables: ['runner_status'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    for (const envelope of events) {
      const at = envelope.occurredAt;
      if (envelope.streamType === RUNNER_STREAM) {
        const event = envelope as unknown as RunnerEvent;
        const id = envelope.streamId;
        if (event.type === 'RunnerRegistered') {
          await tx.query(`INSERT INTO runner_status (runner_id) VALUES ($1) ON CONFLICT DO NOTHING`, [id]);
        } else if (event.type === 'RunnerConnected') {
          await tx.query(
            `UPDATE runner_status SET connected = true, connection_id = $2, gateway = $3, connected_at = $4,
               last_seen_at = $4, fingerprint = $5 WHERE runner_id = $1`,
            [id, event.data.connectionId, event.data.gateway, at, JSON.stringify(event.data.fingerprint)],
          );
        } else if (event.type === 'RunnerDisconnected') {
          await tx.query(
            `UPDATE runner_status SET connected = false, connection_id = NULL, gateway = NULL,
               last_seen_at = CASE WHEN $3 THEN $4::timestamptz ELSE last_seen_at END
             WHERE runner_id = $1 AND connection_id = $2`,
            [id, event.data.connectionId, event.data.reason === 'closed', at],
          );
        }
      } else if (envelope.streamType === 'job') {
        const runner = runnerSeenIn(envelope as unknown as JobEvent);
        if (runner !== null) await tx.query(`UPDATE runner_status SET last_seen_at = $2 WHERE runner_id = $1`, [runner, at]);
      }
    }
  },
};

/** The runner whose own message this job event records, if any (timeouts and cancels are not). */
function runnerSeenIn(event: JobEvent): string | null {
  switch (event.type) {
    case 'JobClaimed':
    case 'JobStarted':
    case 'JobCompleted':
    case 'JobCancelAcknowledged':
      return event.data.runnerId;
    case 'JobFailed':
      return event.data.failure === 'nonzero_exit' || event.data.failure === 'runner_error' ? event.data.runnerId : null;
    case 'JobSubmitted':
    case 'JobCanceled':
    case 'JobRequeued':
      return null;
    default: {
      const _exhaustive: never = event;
      throw new Error(`unknown job event ${(_exhaustive as { type: string }).type}`);
    }
  }
}
