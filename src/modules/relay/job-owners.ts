import type { EventEnvelope } from '../../events/envelope';
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
 * Org and project of each job, from its JobSubmitted event (they never change): the one lookup
 * of the relay (the subject of each job event) and the events feed (whose events a client may
 * see). A job's events come close together in the log, so a least-recently-used cache answers
 * nearly every lookup; a miss reads the job's first event.
 */
export class JobOwners {
  private readonly cache = new Map<string, JobOwner>();

  constructor(private readonly capacity = 10_000) {}

  /** The owner of the job a job event belongs to, or UnknownJobOwnerError. */
  async of(event: EventEnvelope, sql: Sql): Promise<JobOwner> {
    if (event.type === 'JobSubmitted') {
      const owner = ownerOf(event.data);
      if (owner !== null) return this.remember(event.streamId, owner);
    }
    const owner = await this.find(event.streamId, sql);
    if (owner === null) throw new UnknownJobOwnerError(event.streamId);
    return owner;
  }

  /** The job's owner, or null when no job stream starts with a JobSubmitted naming them (nothing is kept then). */
  async find(jobId: string, sql: Sql): Promise<JobOwner | null> {
    const cached = this.cache.get(jobId);
    if (cached !== undefined) return this.remember(jobId, cached);
    const result = await sql.query<{ data: unknown }>(
      `SELECT data FROM events WHERE stream_id = $1 AND stream_position = 1 AND type = 'JobSubmitted'`,
      [jobId],
    );
    const owner = result.rows[0] ? ownerOf(result.rows[0].data) : null;
    return owner === null ? null : this.remember(jobId, owner);
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

/** The two members of a JobSubmitted's data (of any schema version) the owner needs, if they are strings. */
function ownerOf(data: unknown): JobOwner | null {
  if (typeof data !== 'object' || data === null || !('orgId' in data) || !('projectId' in data)) return null;
  const { orgId, projectId } = data;
  return typeof orgId === 'string' && typeof projectId === 'string' ? { orgId, projectId } : null;
}
