import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError, NotFoundError } from '../../common/errors';
import type { EventMetadata } from '../../events/envelope';
import { decodeJobEvent } from '../../events/decoders';
import { type JobState, decide, evolve } from '../../machines/job.machine';
import { CommandHandler } from '../event-store/command-handler';
import { JobCommands } from '../jobs/job-commands';
import { type JobOutput, JobOutputRepository } from '../jobs/job-output.repository';
import { Metrics } from '../metrics/metrics';
import { type ClaimOutcome, Scheduler } from '../scheduling/scheduler';
import type { JobPayload } from './protocol';

export function jobPayload(job: JobState): JobPayload {
  return {
    id: job.jobId,
    attempt: job.attempt,
    spec: job.spec,
    image: job.image,
    cmd: job.cmd,
    entrypoint: job.entrypoint,
    env: job.env,
    timeout: job.timeout,
    filePaths: job.filePaths,
  };
}

/**
 * What a runner may do to jobs, whichever way it talks (WebSocket or REST): every message is a
 * command decided by the job machine, fenced by runner and attempt.
 */
@Injectable()
export class RunnerJobs {
  constructor(
    private readonly scheduler: Scheduler,
    private readonly jobs: JobCommands,
    private readonly commands: CommandHandler,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {}

  claim(runnerId: string, capacity: number, metadata: EventMetadata): Promise<ClaimOutcome> {
    return this.scheduler.claim({ id: runnerId, capacity }, metadata);
  }

  /** The job's current state, or NotFoundError. */
  async load(jobId: string): Promise<JobState> {
    const { state } = await this.commands.load(jobId, evolve, decodeJobEvent);
    if (state === null) throw new NotFoundError(`job ${jobId} not found`);
    return state;
  }

  /** Checks a heartbeat against a known state without writing anything (throws when refused). */
  checkHeartbeat(state: JobState, runnerId: string, attempt: number): void {
    decide(state, { type: 'heartbeat', runnerId, attempt, at: this.clock.now().toISOString() });
  }

  async running(runnerId: string, job: string, attempt: number, fingerprint: Record<string, unknown> | null, metadata: EventMetadata) {
    const result = await this.jobs.execute(job, { type: 'start', runnerId, attempt, fingerprint, at: this.now() }, metadata);
    if (result.envelopes.length > 0) this.metrics.jobUpdates.inc({ status: 'running' });
    return result.state;
  }

  async completed(runnerId: string, job: string, attempt: number, exitCode: number, output: JobOutput, metadata: EventMetadata) {
    const result = await this.jobs.execute(
      job,
      { type: 'complete', runnerId, attempt, exitCode, output: JobOutputRepository.summarize(output), at: this.now() },
      metadata,
      { inline: JobOutputRepository.writes(job, attempt, output) },
    );
    this.metrics.jobUpdates.inc({ status: 'completed' });
    return result.state;
  }

  async failed(
    runnerId: string,
    job: string,
    attempt: number,
    error: string,
    exitCode: number | null,
    output: JobOutput,
    metadata: EventMetadata,
  ) {
    const result = await this.jobs.execute(
      job,
      { type: 'fail', runnerId, attempt, error, exitCode, output: JobOutputRepository.summarize(output), at: this.now() },
      metadata,
      { inline: JobOutputRepository.writes(job, attempt, output) },
    );
    this.metrics.jobUpdates.inc({ status: 'failed' });
    return result.state;
  }

  /**
   * The runner no longer holds `job` (it said hello without it, or its long-poll left before the
   * answer): the attempt is lost, requeued or failed as the machine says. Null when the job moved
   * on meanwhile (a timeout, a cancel): there is nothing left to lose.
   */
  async lost(runnerId: string, job: string, attempt: number, metadata: EventMetadata): Promise<JobState | null> {
    try {
      const result = await this.jobs.execute(job, { type: 'runnerLost', runnerId, attempt, at: this.now() }, metadata);
      return result.state;
    } catch (error) {
      if (error instanceof InvalidTransitionError || error instanceof ConcurrencyError) return null;
      throw error;
    }
  }

  async canceled(runnerId: string, job: string, attempt: number, metadata: EventMetadata) {
    const result = await this.jobs.execute(job, { type: 'acknowledgeCancel', runnerId, attempt, at: this.now() }, metadata);
    return result.state;
  }

  private now(): string {
    return this.clock.now().toISOString();
  }
}
