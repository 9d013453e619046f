import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import type { EventMetadata } from '../../events/envelope';
import type { JobState } from '../../machines/job.machine';
import { JobCommands } from '../jobs/job-commands';
import { Metrics, tierOf } from '../metrics/metrics';
import { type Candidate, NotClaimable, SchedulingRepository } from './scheduling.repository';

/**
 * What a claim came to: the job, or why there was none: `nothing` fits the runner now (no job on
 * its specs that may run), or the runner is at its capacity (`runner_full`).
 */
export type ClaimOutcome = { job: JobState } | { job: null; reason: 'nothing' | 'runner_full' };

/** How many candidates one claim looks at before it says there is nothing. */
const CANDIDATES = 16;

/**
 * Claims the next job for a runner: one statement per try, under advisory locks on the runner,
 * the organization (with an in-flight limit) and (unclaimed plan) the source IP, so capacity and
 * in-flight limits hold exactly however many claimers race on however many instances. The job
 * machine decides the claim; a job another claimer is on, or took first, is skipped for the next
 * candidate.
 */
@Injectable()
export class Scheduler {
  /** Jobs a claim in this process is trying now. */
  private readonly underway = new Set<string>();

  constructor(
    private readonly repository: SchedulingRepository,
    private readonly jobs: JobCommands,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {}

  /** The job claimed for the runner, or why none was. */
  async claim(runner: { id: string; capacity: number }, metadata: EventMetadata): Promise<ClaimOutcome> {
    // Enough to find CANDIDATES beyond those other claims here are on.
    const candidates = await this.repository.candidates(runner.id, CANDIDATES + this.underway.size);
    for (const candidate of candidates) {
      // Claimers in this process spread over the candidates instead of all trying the first.
      if (this.underway.has(candidate.id)) continue;
      this.underway.add(candidate.id);
      const outcome = await this.tryClaim(runner, candidate, metadata).finally(() => this.underway.delete(candidate.id));
      if (outcome === 'runner_full') return { job: null, reason: 'runner_full' };
      if (outcome !== 'skipped') return { job: outcome };
    }
    return { job: null, reason: 'nothing' };
  }

  private async tryClaim(
    runner: { id: string; capacity: number },
    candidate: Candidate,
    metadata: EventMetadata,
  ): Promise<JobState | 'runner_full' | 'skipped'> {
    try {
      const { state } = await this.jobs.execute(
        candidate.id,
        { type: 'claim', runnerId: runner.id, at: this.clock.now().toISOString() },
        metadata,
        // The locks, and the check under them, in the append's own statement: one statement a claim.
        { check: this.repository.claimCheck({ runnerId: runner.id, capacity: runner.capacity, candidate }) },
      );
      const tier = tierOf(state.priority);
      this.metrics.claims.inc({ tier });
      this.metrics.queueDuration.observe({ tier }, (Date.parse(state.claimedAt as string) - Date.parse(state.createdAt)) / 1000);
      return state;
    } catch (error) {
      if (error instanceof NotClaimable) return error.runnerFull ? 'runner_full' : 'skipped';
      // Someone else claimed or canceled it first.
      if (error instanceof InvalidTransitionError || error instanceof ConcurrencyError) return 'skipped';
      throw error;
    }
  }
}
