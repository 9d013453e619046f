import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import type { EventMetadata } from '../../events/envelope';
import type { JobState } from '../../machines/job.machine';
import { JobCommands } from '../jobs/job-commands';
import { Metrics, tierOf } from '../metrics/metrics';
import { type Candidate, SchedulingRepository } from './scheduling.repository';

/** Why a candidate could not be claimed under the locks. */
class NotClaimable extends Error {
  constructor(readonly runnerFull: boolean) {
    super(runnerFull ? 'the runner is at its capacity' : 'the job is no longer claimable');
  }
}

/** How many candidates one claim looks at before it says there is nothing. */
const CANDIDATES = 16;

/**
 * Claims the next job for a runner: one transaction per try, under advisory locks on the runner,
 * the organization and (unclaimed plan) the source IP, so capacity and in-flight limits hold
 * exactly however many claimers race on however many instances. The job machine decides the
 * claim; a job someone else took first is skipped for the next candidate.
 */
@Injectable()
export class Scheduler {
  constructor(
    private readonly repository: SchedulingRepository,
    private readonly jobs: JobCommands,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {}

  /** The job claimed for the runner, or null when none fits now. */
  async claim(runner: { id: string; capacity: number }, metadata: EventMetadata): Promise<JobState | null> {
    const specIds = await this.repository.runnerSpecs(runner.id);
    if (specIds === null || specIds.length === 0) return null;
    const candidates = await this.repository.candidates(specIds, CANDIDATES);
    for (const candidate of candidates) {
      const outcome = await this.tryClaim(runner, candidate, metadata);
      if (outcome === 'runner_full') return null;
      if (outcome !== 'skipped') return outcome;
    }
    return null;
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
        {
          prepare: async (tx) => {
            await this.repository.lock(tx, runner.id, candidate);
            const { runnerFree, jobClaimable } = await this.repository.stillClaimable(tx, runner.id, runner.capacity, candidate);
            if (!runnerFree) throw new NotClaimable(true);
            if (!jobClaimable) throw new NotClaimable(false);
          },
        },
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
