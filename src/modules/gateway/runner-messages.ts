import { Inject, Injectable, Logger } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { InvalidTransitionError } from '../../common/errors';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { type JobState, acceptsCancelAck, acceptsHeartbeat } from '../../machines/job.machine';
import { isDatabaseUnavailable } from '../database/db';
import { Bus } from '../messaging/bus';
import type { HeartbeatMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { RunnerSessions } from '../runners/runner-sessions';
import { Dispatcher } from './dispatcher';
import { GatewayInstance } from './gateway-instance';
import { GatewayRepository } from './gateway.repository';
import { BadMessage, type RunnerMessage } from './protocol';
import type { RunnerConnection } from './runner-connection';
import { RunnerJobs } from './runner-jobs';

/**
 * How long a held job's state is trusted for heartbeats before it is read again: a cancel or a
 * timeout decided elsewhere reaches the runner as a pushed cancel, so this only bounds how long a
 * runner whose cancel was lost is still acknowledged (well inside the heartbeat timeout).
 */
const HELD_STATE_MAX_AGE_MS = 15_000;

/**
 * What the gateway does with each message a connected runner sends, whatever carries the
 * frames: every message is decided by the job machine (through RunnerJobs) and answered on the
 * runner's connection; a refused one gets an `error` frame and the connection stays open.
 */
@Injectable()
export class RunnerMessages {
  private readonly logger = new Logger(RunnerMessages.name);

  constructor(
    private readonly runnerJobs: RunnerJobs,
    private readonly sessions: RunnerSessions,
    private readonly dispatcher: Dispatcher,
    private readonly repository: GatewayRepository,
    private readonly instance: GatewayInstance,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    @Inject(RUNWAY_CONFIG) private readonly config: RunwayConfig,
  ) {}

  /**
   * Handles one message; called one after the other per connection, in the order they came. A
   * frame that moves a job on gives its rate-limit token back (see the gateway's `read`). A
   * refused message throws what refused it, for the gateway's ErrorFrameFilter to answer with an
   * `error` frame, except where the protocol answers otherwise: a report the machine refuses for
   * a job whose cancel the runner still owes is answered with that `cancel` again, and a `hello`
   * the database cannot take closes the socket with 1013 (the runner reconnects shortly).
   */
  async handle(connection: RunnerConnection, message: RunnerMessage): Promise<void> {
    const job = 'job' in message ? message.job : undefined;
    try {
      if (message.type === 'hello') return await this.hello(connection, message);
      if (connection.hello === null) throw new BadMessage('send hello first');
      const metadata = connection.metadata;
      switch (message.type) {
        case 'ready':
          // Never refused: a runner asking for its next job is what the service is for.
          if ((await this.dispatcher.ready(connection)) === 'pushed') connection.messages.refund();
          return;
        case 'running': {
          const before = connection.heldState(message.job)?.status;
          const state = await this.runnerJobs.running(connection.runnerId, message.job, message.attempt, connection.hello.fingerprint, metadata);
          if (before !== 'running') connection.messages.refund();
          connection.hold(state, this.now());
          return this.ack(connection, message);
        }
        case 'heartbeat':
          await this.heartbeat(connection, message.job, message.attempt);
          return this.ack(connection, message);
        case 'completed':
          await this.runnerJobs.completed(connection.runnerId, message.job, message.attempt, message.exitCode, message, metadata);
          connection.release(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        case 'failed':
          await this.runnerJobs.failed(connection.runnerId, message.job, message.attempt, message.error, message.exitCode, message, metadata);
          connection.release(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        case 'canceled':
          await this.runnerJobs.canceled(connection.runnerId, message.job, message.attempt, metadata);
          connection.release(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        default: {
          const _exhaustive: never = message;
          throw new BadMessage(`unhandled message ${(_exhaustive as RunnerMessage).type}`);
        }
      }
    } catch (error) {
      if (message.type === 'hello') {
        // Not recorded as connected: the runner says hello again on a new connection.
        connection.hello = null;
        if (isDatabaseUnavailable(error)) {
          connection.socket.close(1013, 'the database is not available; reconnect shortly');
          return;
        }
      }
      if (await this.cancelInstead(connection, error, job)) return;
      throw error;
    }
  }

  /** The connection of a runner that said hello closed: the runner is recorded as gone. */
  async disconnected(connection: RunnerConnection): Promise<void> {
    await this.sessions
      .disconnected(connection.runnerId, connection.id, 'closed', connection.metadata)
      .catch((error: unknown) => this.logger.warn(`could not record runner ${connection.runnerId} leaving: ${(error as Error).message}`));
  }

  private async hello(connection: RunnerConnection, message: Extract<RunnerMessage, { type: 'hello' }>): Promise<void> {
    connection.hello = { version: message.version, capacity: message.capacity, fingerprint: message.fingerprint };
    connection.specs = new Set(await this.repository.specsOf(connection.runnerId));
    await this.sessions.connected(
      connection.runnerId,
      {
        connectionId: connection.id,
        gateway: this.instance.id,
        agentVersion: message.version,
        capacity: message.capacity,
        fingerprint: message.fingerprint,
      },
      connection.metadata,
    );
    const rows = await this.repository.assignedTo(connection.runnerId);
    // What the runner says it still holds. Jobs assigned to it that it does not hold (they died
    // with a restart) are lost before it is welcomed, so it is free for work from its first
    // `ready` and they need not wait out the heartbeat timeout. A runner that does not say (an
    // older agent) keeps the earlier rule: claimed jobs are pushed again, running ones wait for
    // its `running`.
    const holds = message.jobs === undefined ? null : new Set(message.jobs.map(({ job, attempt }) => `${job}:${attempt}`));
    const kept = [];
    for (const row of rows) {
      if (row.status !== 'canceled' && holds !== null && !holds.has(`${row.id}:${row.attempt}`)) await this.lose(connection, row);
      else kept.push(row);
    }
    connection.send({
      type: 'welcome',
      runner: connection.runnerId,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.config.heartbeatTimeoutMs,
      // The largest frame this server takes: a runner sizes its reports to fit.
      maxMessageBytes: this.config.maxMessageBytes,
    });
    for (const row of kept) {
      if (row.status === 'canceled') {
        // A cancel the runner has not acknowledged yet, e.g. sent while it was away.
        connection.send({ type: 'cancel', job: row.id, attempt: row.attempt, reason: 'canceled' });
      } else if (row.status === 'claimed') {
        // Claimed for it, but the push may have been lost with the last connection: push it again.
        connection.push(await this.runnerJobs.load(row.id), this.now());
      }
    }
  }

  /** The runner does not hold a job assigned to it: its attempt is lost (requeued or failed, as the machine says). */
  private async lose(connection: RunnerConnection, row: { id: string; attempt: number }): Promise<void> {
    const state = await this.runnerJobs.lost(connection.runnerId, row.id, row.attempt, connection.metadata);
    if (state !== null) this.logger.log(`runner ${connection.runnerId} no longer holds job ${row.id} attempt ${row.attempt}: ${state.status === 'pending' ? 'requeued' : 'failed'} (runner_lost)`);
  }

  private async heartbeat(connection: RunnerConnection, jobId: string, attempt: number): Promise<void> {
    const now = this.now();
    const held = connection.fresh(jobId, now, HELD_STATE_MAX_AGE_MS);
    if (held === null || !acceptsHeartbeat(held, connection.runnerId, attempt)) {
      // Not held, held too long, or refused: read it again before refusing (the held state may be
      // behind), and let the machine say why.
      let state: JobState;
      try {
        state = await this.runnerJobs.load(jobId);
      } catch (error) {
        // The database is down: a heartbeat the state last read accepts still counts, however old
        // that state, so an outage does not time out the healthy jobs it outlasts.
        const stale = connection.heldState(jobId);
        if (!isDatabaseUnavailable(error) || stale === undefined || !acceptsHeartbeat(stale, connection.runnerId, attempt)) throw error;
        state = stale;
      }
      connection.hold(state, now);
      this.runnerJobs.checkHeartbeat(state, connection.runnerId, attempt);
    }
    await this.bus.publish(this.subjects.heartbeat(connection.runnerId), { runner: connection.runnerId, job: jobId, attempt } satisfies HeartbeatMessage);
  }

  private ack(connection: RunnerConnection, message: Extract<RunnerMessage, { job: string }>): void {
    connection.send({ type: 'ack', job: message.job, attempt: message.attempt, of: message.type });
  }

  /**
   * A message the machine refused for a job whose cancel this runner has not acknowledged: the
   * runner is sent the `cancel` again instead of an error, and true is returned.
   */
  private async cancelInstead(connection: RunnerConnection, error: unknown, job: string | undefined): Promise<boolean> {
    if (!(error instanceof InvalidTransitionError) || job === undefined) return false;
    const state = await this.runnerJobs.load(job).catch(() => null);
    if (state === null || !acceptsCancelAck(state, connection.runnerId, state.attempt)) return false;
    connection.send({ type: 'cancel', job, attempt: state.attempt, reason: 'canceled' });
    return true;
  }

  private now(): number {
    return this.clock.now().getTime();
  }
}
