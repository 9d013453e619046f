import { createHash } from 'node:crypto';

/** Who caused an event: the operator, an organization key, a runner, or Runway itself. */
export type Actor = `admin` | `key:${string}` | `runner:${string}` | `system`;

/** Metadata every stored event carries (docs/protocol.md, "The event envelope"). */
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

/** A stored event as REST, NATS and the export show it (docs/protocol.md, "The event envelope"). */
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
  if (value instanceof CanonicalJson) return value.text;
  if (value === null || typeof value !== 'object') {
    const out = JSON.stringify(value);
    if (out === undefined) throw new TypeError(`cannot encode ${typeof value} as JSON`);
    return out;
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`;
  }
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  return `{${canonicalMembers(value as Record<string, unknown>).join(',')}}`;
}

/** A value already in canonical JSON, for a writer that must not encode it twice. */
export class CanonicalJson {
  readonly text: string;

  constructor(value: unknown) {
    this.text = canonicalJson(value);
  }
}

/** An object's members as canonical JSON writes them (`"key":value`), in its order. */
function canonicalMembers(value: Record<string, unknown>): string[] {
  return Object.keys(value)
    .filter((key) => value[key] !== undefined)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`);
}

/** `hash = sha256(prevHash + canonical JSON of the envelope without hash and prevHash)`, hex. */
export function hashEvent(envelope: Omit<EventEnvelope, 'hash'>): string {
  const { prevHash, ...rest } = envelope;
  return createHash('sha256').update(prevHash).update(canonicalJson(rest)).digest('hex');
}

/**
 * What an event's hash covers, split around its global position, for a writer that draws the
 * position in the same statement that stores the event: `hashEvent(envelope)` is
 * `sha256(before + String(globalPosition) + after)`.
 */
export function hashedTextAroundPosition(
  envelope: Omit<EventEnvelope, 'hash' | 'globalPosition' | 'data' | 'metadata'> & { data: unknown; metadata: EventMetadata | CanonicalJson },
): { before: string; after: string } {
  const { prevHash, ...rest } = envelope;
  const members = (keys: string[]) => canonicalMembers(Object.fromEntries(keys.map((key) => [key, (rest as Record<string, unknown>)[key]])));
  const keys = Object.keys(rest).filter((key) => key !== 'globalPosition');
  // Canonical JSON sorts by key; the members before the position are those whose keys sort first.
  const head = keys.filter((key) => key < 'globalPosition');
  const tail = keys.filter((key) => key > 'globalPosition');
  return {
    before: `${prevHash}{${members(head).map((m) => `${m},`).join('')}"globalPosition":`,
    after: `${members(tail).map((m) => `,${m}`).join('')}}`,
  };
}

export function sha256Hex(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('hex');
}
