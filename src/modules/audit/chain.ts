import { type EventEnvelope, GENESIS_HASH, hashEvent } from '../../events/envelope';
import type { Divergence } from './divergence';

/** A stream's row in `streams`: where its next append links to. */
export interface StreamHead {
  streamType: string;
  version: number;
  lastHash: string;
}

/**
 * `verifyChain` (event-store.ts) one event at a time, so a stream of any length is checked in
 * constant memory, and going on past a break: after a bad event the next one is checked against
 * the hash stored in the bad one, so every event changed on its own is named, not only the first.
 * The same rules and reasons as `verifyChain`, in the same order (position, link, hash).
 */
export class ChainVerifier {
  readonly breaks: Divergence[] = [];
  private prevHash = GENESIS_HASH;
  private nextPosition = 1;
  private lastPosition = 0;

  push(event: EventEnvelope): void {
    const { hash, ...unhashed } = event;
    if (event.position !== this.nextPosition) {
      this.break(event.position, 'position', this.nextPosition, event.position, `expected position ${this.nextPosition}`);
    } else if (event.prevHash !== this.prevHash) {
      this.break(event.position, 'prevHash', this.prevHash, event.prevHash, 'prevHash does not match the hash of the event before');
    } else {
      const recomputed = hashEvent(unhashed);
      if (recomputed !== hash) this.break(event.position, 'hash', recomputed, hash, 'hash does not match the event');
    }
    this.prevHash = hash;
    this.nextPosition = event.position + 1;
    this.lastPosition = event.position;
  }

  /**
   * The chain alone cannot see events cut off its end: the stream's head (version and last hash,
   * written with every append) must point at the last event read.
   */
  end(streamType: string, head: StreamHead | null): void {
    if (head === null) {
      this.breaks.push({ field: 'streams', reason: 'the stream has no row in streams' });
      return;
    }
    if (head.version !== this.lastPosition) {
      this.breaks.push({
        field: 'streams.version',
        expected: this.lastPosition,
        actual: head.version,
        reason:
          head.version > this.lastPosition
            ? `the stream's head says it has ${head.version} events; events after position ${this.lastPosition} are missing`
            : "the stream's head does not match its last event",
      });
    } else if (head.lastHash !== this.prevHash) {
      this.breaks.push({
        field: 'streams.last_hash',
        expected: this.prevHash,
        actual: head.lastHash,
        reason: "the stream's head does not link to its last event",
      });
    }
    if (head.streamType !== streamType) {
      this.breaks.push({ field: 'streams.stream_type', expected: streamType, actual: head.streamType, reason: "the stream's head names another stream type" });
    }
  }

  get valid(): boolean {
    return this.breaks.length === 0;
  }

  private break(position: number, field: string, expected: unknown, actual: unknown, reason: string): void {
    this.breaks.push({ position, field, expected, actual, reason });
  }
}
