import { randomBytes } from 'node:crypto';
import { Clock } from './clock';

/** Ids, injected like the clock. */
export abstract class IdGenerator {
  abstract next(): string;
}

/** The 74 bits of a UUIDv7 after its time (rand_a and rand_b), as one counter. */
const COUNTER_BITS = 74n;
const COUNTER_MAX = (1n << COUNTER_BITS) - 1n;

/**
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 bits that are random at each new
 * millisecond and counted up within one (RFC 9562, 6.2, method 2: "monotonic random"), so ids
 * made by one generator sort in the order they were made, also within a millisecond (the jobs of
 * a batch submission, say) and when the clock steps back. That keeps B-tree inserts local and
 * makes cursors over ids, and the queue's order among jobs of the same time, follow submission order.
 */
export class UuidV7Generator extends IdGenerator {
  private lastMs = -1n;
  private counter = 0n;

  constructor(private readonly clock: Clock) {
    super();
  }

  next(): string {
    let ms = BigInt(this.clock.now().getTime());
    if (ms > this.lastMs) {
      // A fresh random start with its top bit clear, leaving room to count up within the millisecond.
      this.counter = BigInt(`0x${randomBytes(10).toString('hex')}`) & (COUNTER_MAX >> 1n);
    } else {
      ms = this.lastMs;
      this.counter += 1n;
      if (this.counter > COUNTER_MAX) {
        ms += 1n;
        this.counter = 0n;
      }
    }
    this.lastMs = ms;
    const randA = (this.counter >> 62n) & 0xfffn;
    const randB = this.counter & ((1n << 62n) - 1n);
    const hex =
      ms.toString(16).padStart(12, '0') +
      (0x7000n | randA).toString(16).padStart(4, '0') +
      ((2n << 62n) | randB).toString(16).padStart(16, '0');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
