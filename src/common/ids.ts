import { randomBytes } from 'node:crypto';
import { Clock } from './clock';

/** Ids, injected like the clock. */
export abstract class IdGenerator {
  abstract next(): string;
}

/**
 * UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits. Ids sort by creation time,
 * which keeps B-tree inserts local and makes cursors over ids follow submission order.
 */
export class UuidV7Generator extends IdGenerator {
  constructor(private readonly clock: Clock) {
    super();
  }

  next(): string {
    const bytes = randomBytes(16);
    const ms = BigInt(this.clock.now().getTime());
    for (let i = 0; i < 6; i++) bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = bytes.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }
}

export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
