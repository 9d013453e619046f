import { Injectable, Logger } from '@nestjs/common';
import type { EventEnvelope, EventMetadata } from '../../events/envelope';
import { decodeJobEvent } from '../../events/decoders';
import type { JobEvent } from '../../events/job-events';
import { type JobCommand, type JobState, decide, evolve } from '../../machines/job.machine';
import type { Sql } from '../database/db';
import type { InlineWrite } from '../database/inline-write';
import { CommandHandler } from '../event-store/command-handler';
import type { AppendCheck } from '../event-store/event-store';
import { JobNotifier } from './job-notifier';
import { JOB_STREAM, jobStatesWrite } from './job.views';

export interface JobCommandHooks {
  /** A check in the append's statement (see Command.check). */
  check?: AppendCheck;
  /** Writes of other views, in the append's statement with the jobs view's (see Command.inline). */
  inline?: readonly InlineWrite[];
  /** After the append and the jobs view, in the same transaction (statements of its own). */
  alsoInTransaction?: (tx: Sql, envelopes: readonly EventEnvelope<JobEvent>[], state: JobState) => Promise<void>;
}

export interface JobCommandResult {
  state: JobState;
  envelopes: EventEnvelope<JobEvent>[];
}

/**
 * Every change of a job goes through here: the job machine decides the command on the folded
 * stream, the events and the jobs view commit together, and then (never before the commit) the
 * other roles are told what changed.
 */
@Injectable()
export class JobCommands {
  private readonly logger = new Logger(JobCommands.name);

  constructor(
    private readonly commands: CommandHandler,
    private readonly notifier: JobNotifier,
  ) {}

  async execute(
    jobId: string,
    command: JobCommand,
    metadata: EventMetadata,
    hooks: JobCommandHooks = {},
  ): Promise<JobCommandResult> {
    const result = await this.commands.execute<JobState, JobEvent>({
      stream: { id: jobId, type: JOB_STREAM },
      evolve,
      decode: decodeJobEvent,
      decide: (state) => decide(state, command),
      check: hooks.check,
      inline: (state) => [jobStatesWrite([state]), ...(hooks.inline ?? [])],
      project: hooks.alsoInTransaction,
      metadata,
    }, {
      // A submission names a job id just drawn: no stream to read (if there were, its append
      // would be refused and the command decided again on what is there).
      newStream: command.type === 'submit',
    });
    const state = result.state as JobState;
    await this.afterCommit(state, result.events);
    return { state, envelopes: result.envelopes };
  }

  /**
   * Submits several jobs at once, all or nothing: their JobSubmitted events and jobs-view rows in
   * one statement of one transaction, `alsoInTransaction` after them (an Idempotency-Key's
   * claim). Each job's command must be a `submit` naming a fresh job id.
   */
  async submitAll(
    submissions: readonly { jobId: string; command: Extract<JobCommand, { type: 'submit' }> }[],
    metadata: EventMetadata,
    alsoInTransaction?: (tx: Sql) => Promise<void>,
  ): Promise<JobState[]> {
    const started = await this.commands.startAll<JobState, JobEvent>(
      submissions.map(({ jobId, command }) => ({
        stream: { id: jobId, type: JOB_STREAM },
        evolve,
        decide: (state) => decide(state, command),
        metadata,
      })),
      {
        inline: (states) => [jobStatesWrite(states)],
        project: alsoInTransaction === undefined ? undefined : (tx) => alsoInTransaction(tx),
      },
    );
    // One wake-up per spec is enough for the gateways: they claim until nothing fits.
    const specs = new Set<string>();
    for (const { state, event } of started) {
      if (specs.has(state.spec)) continue;
      specs.add(state.spec);
      await this.afterCommit(state, [event]);
    }
    return started.map(({ state }) => state);
  }

  async afterCommit(state: JobState, events: readonly JobEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.notifier.committed(state, events);
    } catch (error) {
      // The events are committed; a lost notification is recovered by the gateways' sweep and
      // by cancel redelivery on reconnect.
      this.logger.warn(`could not notify about job ${state.jobId}: ${(error as Error).message}`);
    }
  }
}
