import { createHash } from 'node:crypto';

/** Who caused an event: the operator, an organization key, a runner, or Runway itself. */
export type Actor = `admin` | `key:${string}` | `runner:${string}` | `system`;

/** Metadata every stored event carries (PROTOCOL.md, "Event envelope"). */
export interface EventMetadata {
  correlationId: string;
  causationId: string | null;
  actor: Actor;
}

/** A domain event before it is stored: what `decide` returns. */
export interface DomainEvent<Type extends string = string, Data = unknown> {
  readonly type: Type;
  readonly schemaVersion: number;
  readonly data: Data;
}

/** A stored event as REST, NATS and the export show it (PROTOCOL.md, "Event envelope"). */
export interface EventEnvelope<E extends DomainEvent = DomainEvent> {
  id: string;
  streamId: string;
  streamType: string;
  position: number;
  globalPosition: number;
  type: E['type'];
  schemaVersion: number;
  data: E['data'];
  metadata: EventMetadata;
  occurredAt: string;
  hash: string;
  prevHash: string;
}

/** The `prevHash` of the first event of every stream. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * Canonical JSON: object keys sorted by code point, no insignificant white space, `undefined`
 * members dropped (as JSON.stringify does). Numbers and strings are written as JSON.stringify
 * writes them, so the form of a value read back from JSONB is the form it was hashed in.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const out = JSON.stringify(value);
    if (out === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
    return out;
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  }
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  const members = Object.keys(value)
    .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
  return `{${members.join(',')}}`;
}

/** `hash = sha256(prevHash + canonical JSON of the envelope without hash and prevHash)`, hex. */
export function hashEvent(envelope: Omit<EventEnvelope, 'hash'>): string {
  const { prevHash, ...rest } = envelope;
  return createHash('sha256').update(prevHash).update(canonicalJson(rest)).digest('hex');
}

export function sha256Hex(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('hex');
}
