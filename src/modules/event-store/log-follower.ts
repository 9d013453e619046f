import { Logger } from '@nestjs/common';
import { Backoff } from '../../common/backoff';
import { Clock, SystemClock } from '../../common/clock';
import type { EventEnvelope } from '../../events/envelope';
import { loadCheckpoint } from './checkpoints';
import { EventStore, LOG_START, type LogPosition } from './event-store';
import type { LeaderSession, Leadership } from './leadership';

export interface LogFollowerOptions {
  /** Its checkpoint row, and the name of its leadership lock. */
  name: string;
  /** Events read from the log at a time. */
  batchSize: number;
  /** How often an idle follower looks at the log (`notify()` wakes it sooner). */
  idlePollMs: number;
  /**
   * The least time from one read of the log to the next after a read that was not a full batch,
   * however often `notify()` rings: under a steady stream of commits the follower then takes
   * what they added together, a batch a round, rather than going round once per commit. It is
   * the most this adds to the follower's lag. 0: read again as soon as notified.
   */
  coalesceMs?: number;
  /** How often an instance that is not the leader tries to become it. */
  leaderRetryMs: number;
  /** Backoff after a failure (`Backoff`: exponential with jitter), from the first up to the last. */
  retryInitialMs: number;
  retryMaxMs: number;
}

/** What a follower does with the log. */
export interface LogHandler {
  /** Where to start this leadership term; by default the saved checkpoint. */
  resume?(session: LeaderSession, checkpoint: LogPosition): Promise<LogPosition>;
  /** Handles one batch, in log order, and saves `batch.last` as the checkpoint. */
  handle(session: LeaderSession, batch: { events: EventEnvelope[]; last: LogPosition }): Promise<void>;
}

/** How far a follower has got, for metrics and tests. */
export interface FollowerStatus {
  /** Whether this instance is the one following. */
  leader: boolean;
  /** How many times this instance has become the leader. */
  terms: number;
  /** The position this instance last saved (or resumed from). */
  checkpoint: LogPosition | null;
  /** The last event handled, and when. */
  lastEvent: { id: string; globalPosition: number; occurredAt: string } | null;
  lastHandledAt: Date | null;
  /**
   * Whether its last read of the log left committed events behind the gate (an older
   * transaction still ran): it reads again soon, without waiting for a notify or its idle poll.
   */
  heldBack: boolean;
  /** Failures since the last batch that went through, and the last one's message. */
  failures: number;
  lastError: string | null;
}

/**
 * How often a reader of the log looks at it with nothing to wake it: a safety net only. Commits
 * ring the readers of every process (CommitSignal, LISTEN `runway_log`); this catches one whose
 * ring was lost (the listening connection was being opened again).
 */
export const SAFETY_POLL_MS = 2_000;

/** The first wait before reading again when events were held back by the gate (see `heldBack`). */
export const HELD_BACK_FIRST_MS = 5;

/** A timer that a `ring()` ends early; a ring while nobody waits ends the next wait at once. */
export class Bell {
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
 * Follows the committed log for one reader (the relay, each projector): one instance at a time
 * (leadership), from its checkpoint, in log order, through the gap-safe reader, so nothing is
 * skipped and nothing is handled out of order. A failure is retried with backoff from the last
 * checkpoint.
 */
export class LogFollower {
  private readonly logger: Logger;
  private readonly clock: Clock;
  /** Rung by notify() and stop(): ends an idle wait. */
  private readonly poll = new Bell();
  /** Rung by stop(): ends a backoff or a wait for leadership. */
  private readonly halt = new Bell();
  /** The delay before retrying after a failure; starts again from the shortest once a read of the log goes through. */
  private readonly backoff: Backoff;
  /**
   * The wait before reading again while committed events are held back behind an older
   * transaction still running (EventStore.readAll's `heldBack`): from a few milliseconds, doubling
   * up to the idle poll, so a reader neither waits a whole idle poll for events already committed
   * nor spins while a long transaction of Runway's database holds the gate.
   */
  private readonly heldBack: Backoff;
  private running: Promise<void> | null = null;
  private stopping = false;
  private state: FollowerStatus = {
    leader: false,
    terms: 0,
    checkpoint: null,
    lastEvent: null,
    lastHandledAt: null,
    heldBack: false,
    failures: 0,
    lastError: null,
  };

  constructor(
    private readonly store: EventStore,
    private readonly leadership: Leadership,
    private readonly handler: LogHandler,
    readonly options: LogFollowerOptions,
    clock?: Clock,
  ) {
    this.clock = clock ?? new SystemClock();
    this.logger = new Logger(`LogFollower ${options.name}`);
    this.backoff = new Backoff(options.retryInitialMs, options.retryMaxMs);
    const idle = Math.max(1, options.idlePollMs);
    this.heldBack = new Backoff(Math.min(HELD_BACK_FIRST_MS, idle), idle);
  }

  /** Starts following in the background (contending for leadership first). */
  start(): void {
    if (this.running !== null) return;
    this.stopping = false;
    this.running = this.run().catch((error: unknown) => this.logger.error(`stopped: ${message(error)}`));
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

  status(): FollowerStatus {
    return { ...this.state };
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      let session: LeaderSession | null = null;
      try {
        session = await this.leadership.acquire();
      } catch (error) {
        this.failed('could not contend for leadership', error);
      }
      if (session === null) {
        await this.halt.wait(this.options.leaderRetryMs);
        continue;
      }
      this.state.leader = true;
      this.state.terms++;
      this.logger.log('leading');
      try {
        await this.lead(session);
      } finally {
        this.state.leader = false;
        await session.release().catch(() => undefined);
      }
      if (!this.stopping) this.logger.warn('lost leadership (its database connection dropped); contending again');
    }
  }

  /** Follows while this instance leads; every failure is retried from the checkpoint. */
  private async lead(session: LeaderSession): Promise<void> {
    const active = () => !this.stopping && !session.lost;
    while (active()) {
      try {
        const saved = (await loadCheckpoint(session.sql, this.options.name)) ?? LOG_START;
        let position = this.handler.resume ? await this.handler.resume(session, saved) : saved;
        this.state.checkpoint = position;
        while (active()) {
          const readAt = performance.now();
          const batch = await this.store.readAll(position, this.options.batchSize, session.sql);
          if (batch.events.length > 0) {
            await this.handler.handle(session, batch);
            if (session.lost) return;
            position = batch.last;
            const last = batch.events[batch.events.length - 1];
            this.state.checkpoint = position;
            this.state.lastEvent = { id: last.id, globalPosition: last.globalPosition, occurredAt: last.occurredAt };
            this.state.lastHandledAt = this.clock.now();
          }
          this.state.heldBack = batch.heldBack;
          this.state.failures = 0;
          this.backoff.reset();
          if (batch.events.length < this.options.batchSize) {
            if (!batch.heldBack) this.heldBack.reset();
            await this.poll.wait(batch.heldBack ? this.heldBack.next() : this.options.idlePollMs);
            // Real time, not the injected clock: the waits are real timers either way.
            const early = (this.options.coalesceMs ?? 0) - (performance.now() - readAt);
            if (early > 0 && active()) await this.halt.wait(early);
          }
        }
      } catch (error) {
        if (!active()) return;
        this.state.failures++;
        const delay = this.backoff.next();
        this.failed(`failed (attempt ${this.state.failures}); retrying from the checkpoint in ${delay} ms`, error);
        await this.halt.wait(delay);
      }
    }
  }

  private failed(what: string, error: unknown): void {
    this.state.lastError = message(error);
    this.logger.warn(`${what}: ${this.state.lastError}`);
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
