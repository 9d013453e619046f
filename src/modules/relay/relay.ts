import { Logger } from '@nestjs/common';
import { Clock, SystemClock } from '../../common/clock';
import type { EventEnvelope } from '../../events/envelope';
import type { EventStore, LogPosition } from '../event-store/event-store';
import { LogFollower, type LogFollowerOptions, SAFETY_POLL_MS } from '../event-store/log-follower';
import { compareLogPositions, logPositionOfEvent, saveCheckpoint } from '../event-store/checkpoints';
import type { LeaderSession, Leadership } from '../event-store/leadership';
import type { Subjects } from '../messaging/subjects';
import type { JetStreamPublisher } from './jetstream-publisher';
import { JobOwners } from './job-owners';

/** The stream type of job streams: only their events go to JetStream. */
const JOB_STREAM_TYPE = 'job';

/** The follower's options; `name` defaults to `jetstream:<stream name>`. */
export type RelayOptions = LogFollowerOptions;

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
  /** Whether its last read left committed events behind an older running transaction (FollowerStatus). */
  heldBack: boolean;
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
  private readonly clock: Clock;
  private readonly owners = new JobOwners();
  private readonly follower: LogFollower;
  private lastPublished: RelayLag['lastPublished'] = null;
  private lastPublishedAt: Date | null = null;

  constructor(
    private readonly deps: RelayDependencies,
    options: Partial<RelayOptions> = {},
  ) {
    this.clock = deps.clock ?? new SystemClock();
    const resolved: RelayOptions = {
      name: `jetstream:${deps.publisher.options.stream}`,
      batchSize: 500,
      idlePollMs: SAFETY_POLL_MS,
      // The feed's subscribers wait for it: a short wait, enough to publish bursts together.
      coalesceMs: 10,
      leaderRetryMs: 3_000,
      retryInitialMs: 100,
      retryMaxMs: 10_000,
      ...options,
    };
    this.follower = new LogFollower(
      deps.store,
      deps.leadership,
      { resume: (session, saved) => this.resume(session, saved), handle: (session, batch) => this.publish(session, batch) },
      resolved,
      this.clock,
    );
  }

  get name(): string {
    return this.follower.options.name;
  }

  /** Starts relaying in the background (contending for leadership first). */
  start(): void {
    this.follower.start();
  }

  /** Stops after the batch in flight (or at once if idle or waiting) and gives up leadership. */
  stop(): Promise<void> {
    return this.follower.stop();
  }

  /** Something was just committed: look at the log now rather than at the next poll. */
  notify(): void {
    this.follower.notify();
  }

  lag(): RelayLag {
    const { leader, terms, checkpoint, heldBack, failures, lastError } = this.follower.status();
    return { leader, terms, lastPublished: this.lastPublished, lastPublishedAt: this.lastPublishedAt, checkpoint, heldBack, failures, lastError };
  }

  /** Publishes a batch, each event acked before the next, then saves the checkpoint. */
  private async publish(session: LeaderSession, batch: { events: EventEnvelope[]; last: LogPosition }): Promise<void> {
    for (const event of batch.events) {
      if (event.streamType !== JOB_STREAM_TYPE) continue;
      const owner = await this.owners.of(event, session.sql);
      if (session.lost) return;
      await this.deps.publisher.publish(this.deps.subjects.jobEvent(owner.orgId, owner.projectId, event.streamId, event.type), event);
      this.lastPublished = { eventId: event.id, globalPosition: event.globalPosition };
      this.lastPublishedAt = this.clock.now();
    }
    await saveCheckpoint(session.sql, this.name, batch.last, this.clock.now());
  }

  /**
   * The checkpoint, or the position of the event the stream holds last if that is further on:
   * everything up to it was published (the relay goes in log order) and need not go again.
   */
  private async resume(session: LeaderSession, saved: LogPosition): Promise<LogPosition> {
    await this.deps.publisher.ensureStream();
    const lastId = await this.deps.publisher.lastMessageId();
    const published = lastId === null ? null : await logPositionOfEvent(session.sql, lastId);
    if (published === null || compareLogPositions(published, saved) <= 0) return saved;
    this.logger.log(`the stream already holds events past the checkpoint; resuming after event ${lastId}`);
    await saveCheckpoint(session.sql, this.name, published, this.clock.now());
    return published;
  }

}
