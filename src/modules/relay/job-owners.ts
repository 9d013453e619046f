import type { EventEnvelope } from '../../events/envelope';
import type { JobSubmittedData } from '../../events/job-events';
import type { Sql } from '../database/db';

/** The organization and project a job belongs to: the two subject tokens before the job's id. */
export interface JobOwner {
  orgId: string;
  projectId: string;
}

/** A job stream without a readable JobSubmitted at position 1: the relay cannot address its events. */
export class UnknownJobOwnerError extends Error {
  readonly code = 'unknown_job_owner';
  constructor(readonly jobId: string) {
    super(`job ${jobId} has no JobSubmitted event with orgId and projectId at position 1`);
    this.name = 'UnknownJobOwnerError';
  }
}

/**
 * Org and project of each job, from its JobSubmitted event. A job's events come close together
 * in the log, so a small least-recently-used cache answers nearly every lookup; a miss reads the
 * job's first event.
 */
export class JobOwners {
  private readonly cache = new Map<string, JobOwner>();

  constructor(private readonly capacity = 10_000) {}

  async of(event: EventEnvelope, sql: Sql): Promise<JobOwner> {
    if (event.type === 'JobSubmitted') {
      const owner = ownerOf(event.data);
      if (owner !== null) return this.remember(event.streamId, owner);
    }
    const cached = this.cache.get(event.streamId);
    if (cached !== undefined) return this.remember(event.streamId, cached);
    const result = await sql.query<{ data: unknown }>(
      `SELECT data FROM events WHERE stream_id = $1 AND stream_position = 1 AND type = 'JobSubmitted'`,
      [event.streamId],
    );
    const owner = result.rows[0] ? ownerOf(result.rows[0].data) : null;
    if (owner === null) throw new UnknownJobOwnerError(event.streamId);
    return this.remember(event.streamId, owner);
  }

  get size(): number {
    return this.cache.size;
  }

  private remember(jobId: string, owner: JobOwner): JobOwner {
    // A Map iterates in insertion order: re-inserting makes this the most recent entry.
    this.cache.delete(jobId);
    this.cache.set(jobId, owner);
    if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value as string);
    return owner;
  }
}

function ownerOf(data: unknown): JobOwner | null {
  const { orgId, projectId } = (data ?? {}) as Partial<JobSubmittedData>;
  return typeof orgId === 'string' && typeof projectId === 'string' ? { orgId, projectId } : null;
}
