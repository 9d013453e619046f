import { Logger } from '@nestjs/common';
import { Clock, SystemClock } from '../../common/clock';
import type { EventEnvelope } from '../../events/envelope';
import { EventStore, LOG_START, type LogPosition } from '../event-store/event-store';
import type { Subjects } from '../messaging/subjects';
import { compareLogPositions, loadCheckpoint, logPositionOfEvent, saveCheckpoint } from './checkpoints';
import type { JetStreamPublisher } from './jetstream-publisher';
import { JobOwners } from './job-owners';
import type { LeaderSession, Leadership } from './leadership';

/** The stream type of job streams: only their events go to JetStream. */
const JOB_STREAM_TYPE = 'job';

export interface RelayOptions {
  /** Its checkpoint row, and the name of its leadership lock. Default `jetstream:<stream name>`. */
  name: string;
  /** Events read from the log at a time; a checkpoint is saved after each batch. */
  batchSize: number;
  /** How often an idle relay looks at the log (`notify()` wakes it sooner). */
  idlePollMs: number;
  /** How often an instance that is not the leader tries to become it. */
  leaderRetryMs: number;
  /** Backoff after a failure (NATS or the database): doubles from the first to the last. */
  retryInitialMs: number;
  retryMaxMs: number;
}

/** How far the relay has got, for metrics and tests. */
export interface RelayLag {
  /** Whether this instance is the one publishing. */
  leader: boolean;
  /** How many times this instance has become the leader. */
  terms: number;
  /** The last event this instance published and JetStream acked. */
  lastPublished: { eventId: string; globalPosition: number } | null;
  lastPublishedAt: Date | null;
  /** The position this instance last saved (or resumed from). */
  checkpoint: LogPosition | null;
  /** Failures since the last batch that went through, and the last one's message. */
  failures: number;
  lastError: string | null;
}

export interface RelayDependencies {
  store: EventStore;
  publisher: JetStreamPublisher;
  leadership: Leadership;
  subjects: Subjects;
  clock?: Clock;
}

/** A timer that a `ring()` ends early; a ring while nobody waits ends the next wait at once. */
class Bell {
  private rung = false;
  private waiter: (() => void) | null = null;

  ring(): void {
    if (this.waiter === null) this.rung = true;
    else this.waiter();
  }

  async wait(ms: number): Promise<void> {
    if (this.rung) {
      this.rung = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.waiter?.(), ms);
      this.waiter = () => {
        clearTimeout(timer);
        this.waiter = null;
        resolve();
      };
    });
  }
}

/**
 * Publishes every committed job event to JetStream, in log order, once.
 *
 * One instance publishes at a time (leadership: an advisory lock); the others wait their turn.
 * The leader reads the committed log with the gap-safe reader from its checkpoint, publishes
 * each event under `<prefix>.jobs.<org>.<project>.<job>.<EventType>` with the event id as
 * message id, waits for each ack, and saves the checkpoint after each batch. A failure (NATS
 * away, a database error) is retried with backoff from the last checkpoint, so nothing is
 * skipped; what is published twice is dropped by JetStream's duplicate window. On taking over,
 * the leader also moves its checkpoint up to the event the stream already holds last, so a crash
 * between publish and checkpoint republishes nothing even after the window.
 */
export class Relay {
  private readonly logger = new Logger(Relay.name);
  private readonly options: RelayOptions;
  private readonly clock: Clock;
  private readonly owners = new JobOwners();
  /** Rung by notify() and stop(): ends an idle wait. */
  private readonly poll = new Bell();
  /** Rung by stop(): ends a backoff or a wait for leadership. */
  private readonly halt = new Bell();
  private running: Promise<void> | null = null;
  private stopping = false;
  private state: RelayLag = { leader: false, terms: 0, lastPublished: null, lastPublishedAt: null, checkpoint: null, failures: 0, lastError: null };

  constructor(
    private readonly deps: RelayDependencies,
    options: Partial<RelayOptions> = {},
  ) {
    this.clock = deps.clock ?? new SystemClock();
    this.options = {
      name: `jetstream:${deps.publisher.options.stream}`,
      batchSize: 500,
      idlePollMs: 100,
      leaderRetryMs: 3_000,
      retryInitialMs: 100,
      retryMaxMs: 10_000,
      ...options,
    };
  }

  get name(): string {
    return this.options.name;
  }

  /** Starts relaying in the background (contending for leadership first). */
  start(): void {
    if (this.running !== null) return;
    this.stopping = false;
    this.running = this.run().catch((error: unknown) => this.logger.error(`relay stopped: ${message(error)}`));
  }

  /** Stops after the batch in flight (or at once if idle or waiting) and gives up leadership. */
  async stop(): Promise<void> {
    if (this.running === null) return;
    this.stopping = true;
    this.poll.ring();
    this.halt.ring();
    await this.running;
    this.running = null;
  }

  /** Something was just committed: look at the log now rather than at the next poll. */
  notify(): void {
    this.poll.ring();
  }

  lag(): RelayLag {
    return { ...this.state };
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let session: LeaderSession | null = null;
      try {
        session = await this.deps.leadership.acquire();
      } catch (error) {
        this.failed('could not contend for leadership', error);
      }
      if (session === null) {
        await this.halt.wait(this.options.leaderRetryMs);
        continue;
      }
      this.state.leader = true;
      this.state.terms++;
      this.logger.log(`leading: relaying job events to JetStream stream ${this.deps.publisher.options.stream}`);
      try {
        await this.lead(session);
      } finally {
        this.state.leader = false;
        await session.release().catch(() => undefined);
      }
      if (!this.stopping) this.logger.warn('lost leadership (its database connection dropped); stopped publishing, contending again');
    }
  }

  /** Relays while this instance leads; every failure is retried from the checkpoint. */
  private async lead(session: LeaderSession): Promise<void> {
    const active = () => !this.stopping && !session.lost;
    while (active()) {
      try {
        await this.deps.publisher.ensureStream();
        let position = await this.resume(session);
        while (active()) {
          const batch = await this.deps.store.readAll(position, this.options.batchSize, session.sql);
          for (const event of batch.events) {
            if (event.streamType !== JOB_STREAM_TYPE) continue;
            const subject = await this.subjectOf(event, session);
            if (session.lost) return;
            await this.deps.publisher.publish(subject, event);
            this.state.lastPublished = { eventId: event.id, globalPosition: event.globalPosition };
            this.state.lastPublishedAt = this.clock.now();
          }
          if (batch.events.length > 0) {
            await saveCheckpoint(session.sql, this.options.name, batch.last, this.clock.now());
            position = batch.last;
            this.state.checkpoint = position;
          }
          this.state.failures = 0;
          if (batch.events.length < this.options.batchSize) await this.poll.wait(this.options.idlePollMs);
        }
      } catch (error) {
        if (!active()) return;
        this.state.failures++;
        const delay = Math.min(this.options.retryMaxMs, this.options.retryInitialMs * 2 ** (this.state.failures - 1));
        this.failed(`relaying failed (attempt ${this.state.failures}); retrying from the checkpoint in ${delay} ms`, error);
        await this.halt.wait(delay);
      }
    }
  }

  /**
   * The checkpoint, or the position of the event the stream holds last if that is further on:
   * everything up to it was published (the relay goes in log order) and need not go again.
   */
  private async resume(session: LeaderSession): Promise<LogPosition> {
    const saved = (await loadCheckpoint(session.sql, this.options.name)) ?? LOG_START;
    let position = saved;
    const lastId = await this.deps.publisher.lastMessageId();
    const published = lastId === null ? null : await logPositionOfEvent(session.sql, lastId);
    if (published !== null && compareLogPositions(published, saved) > 0) {
      this.logger.log(`the stream already holds events past the checkpoint; resuming after event ${lastId}`);
      await saveCheckpoint(session.sql, this.options.name, published, this.clock.now());
      position = published;
    }
    this.state.checkpoint = position;
    return position;
  }

  private async subjectOf(event: EventEnvelope, session: LeaderSession): Promise<string> {
    const owner = await this.owners.of(event, session.sql);
    return this.deps.subjects.jobEvent(owner.orgId, owner.projectId, event.streamId, event.type);
  }

  private failed(what: string, error: unknown): void {
    this.state.lastError = message(error);
    this.logger.warn(`${what}: ${this.state.lastError}`);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
