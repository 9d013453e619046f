import type { Clock } from '../../common/clock';
import type { EventEnvelope } from '../../events/envelope';
import { compareLogPositions, saveCheckpoint } from '../event-store/checkpoints';
import type { EventStore, LogPosition } from '../event-store/event-store';
import type { LeaderSession, Leadership } from '../event-store/leadership';
import { type FollowerStatus, LogFollower, SAFETY_POLL_MS } from '../event-store/log-follower';
import type { Projection } from './projection';
import { checkpointName } from './registry';

/** The checkpoint moved under the projector (a rebuild swapped the view in): start again from it. */
class CheckpointMoved extends Error {}

/**
 * Keeps one async projection: follows the log from its checkpoint and applies each batch and the
 * new checkpoint in one transaction, so the view holds every event exactly once.
 */
export class Projector {
  private readonly follower: LogFollower;
  private expected: LogPosition | null = null;

  constructor(
    readonly projection: Projection,
    store: EventStore,
    leadership: Leadership,
    private readonly clock: Clock,
    options: { batchSize?: number; idlePollMs?: number; coalesceMs?: number } = {},
  ) {
    this.follower = new LogFollower(
      store,
      leadership,
      {
        resume: async (_, saved) => (this.expected = saved),
        handle: (session, batch) => this.apply(session, batch),
      },
      {
        name: checkpointName(projection),
        batchSize: options.batchSize ?? 1_000,
        idlePollMs: options.idlePollMs ?? SAFETY_POLL_MS,
        // The async views trail the log anyway (runner status, billing); a round per commit
        // would cost a transaction and a checkpoint write per event.
        coalesceMs: options.coalesceMs ?? 100,
        leaderRetryMs: 3_000,
        retryInitialMs: 100,
        retryMaxMs: 10_000,
      },
      clock,
    );
  }

  start(): void {
    this.follower.start();
  }

  stop(): Promise<void> {
    return this.follower.stop();
  }

  notify(): void {
    this.follower.notify();
  }

  status(): FollowerStatus {
    return this.follower.status();
  }

  private async apply(session: LeaderSession, batch: { events: EventEnvelope[]; last: LogPosition }): Promise<void> {
    const name = checkpointName(this.projection);
    await session.transaction(async (tx) => {
      // The checkpoint row is the projection's lock: a rebuild that swaps the view in holds it too.
      const { rows } = await tx.query<{ transaction_id: string; global_position: string }>(
        `SELECT transaction_id::text AS transaction_id, global_position FROM checkpoints WHERE name = $1 FOR UPDATE`,
        [name],
      );
      const current = rows[0] ? { transactionId: rows[0].transaction_id, globalPosition: Number(rows[0].global_position) } : null;
      if (current !== null && (this.expected === null || compareLogPositions(current, this.expected) !== 0)) {
        throw new CheckpointMoved(`the checkpoint of ${name} moved; resuming from it`);
      }
      await this.projection.apply(tx, batch.events);
      await saveCheckpoint(tx, name, batch.last, this.clock.now());
    });
    this.expected = batch.last;
  }
}
