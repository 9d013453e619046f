import { Injectable } from '@nestjs/common';
import type { JobEvent } from '../../events/job-events';
import type { JobState } from '../../machines/job.machine';
import { Bus } from '../messaging/bus';
import type { CancelMessage, DispatchMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { JobsRepository } from './jobs.repository';

/** What the other roles hear after a job's events commit. */
@Injectable()
export class JobNotifier {
  constructor(
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly jobs: JobsRepository,
  ) {}

  async committed(state: JobState, events: readonly JobEvent[]): Promise<void> {
    const specs = new Set<string>();
    for (const event of events) {
      switch (event.type) {
        case 'JobSubmitted':
        case 'JobRequeued':
          specs.add(state.spec);
          break;
        case 'JobCanceled':
          // A job canceled while pending held no runner and no slot.
          if (event.data.runnerId !== null) {
            const cancel: CancelMessage = { runner: event.data.runnerId, job: state.jobId, attempt: event.data.attempt, reason: event.data.reason };
            await this.bus.publish(this.subjects.runnerCancel(event.data.runnerId), cancel);
            await this.freedSlot(state, specs);
          }
          break;
        case 'JobCompleted':
        case 'JobFailed':
          await this.freedSlot(state, specs);
          break;
        case 'JobClaimed':
        case 'JobStarted':
        case 'JobCancelAcknowledged':
          break;
        default: {
          const _exhaustive: never = event;
          throw new Error(`unknown job event ${(_exhaustive as JobEvent).type}`);
        }
      }
    }
    for (const spec of specs) await this.bus.publish(this.subjects.dispatch(spec), { spec } satisfies DispatchMessage);
  }

  /**
   * An in-flight job ended: if its org has an in-flight limit, it may now run another of its
   * pending jobs, on any spec. An org without one held nothing back (the runner that ran the job
   * asks for its next one itself).
   */
  private async freedSlot(state: JobState, specs: Set<string>): Promise<void> {
    for (const spec of await this.jobs.pendingSpecsOfLimited(state.orgId)) specs.add(spec);
  }
}
