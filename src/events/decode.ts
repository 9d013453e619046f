import type { DomainEvent } from './envelope';
import { upcast } from './upcasters';

/**
 * An event as a row of the log holds it, before it is read: any type, any schema version, any
 * data. Where the row is (stream and position) is named in errors when it is known.
 */
export interface StoredEvent {
  readonly type: string;
  readonly schemaVersion: number;
  readonly data: unknown;
  readonly id?: string;
  readonly streamId?: string;
  readonly position?: number;
}

/** One thing wrong with a stored event: `field` is `type`, `schemaVersion`, `data` or `data.<member>`. */
export interface EventProblem {
  field: string;
  actual?: unknown;
  reason: string;
}

/** A stored event that does not read as an event of its union: never folded, projected or sent on. */
export class EventDecodeError extends Error {
  readonly code = 'unreadable_event';

  constructor(
    readonly event: StoredEvent,
    readonly problems: readonly EventProblem[],
  ) {
    super(`cannot read ${where(event)}: ${problems.map((p) => `${p.field}: ${p.reason}`).join('; ')}`);
    this.name = 'EventDecodeError';
  }
}

function where({ type, schemaVersion, id, streamId, position }: StoredEvent): string {
  const at = streamId === undefined ? '' : ` at position ${position ?? '?'} of stream ${streamId}`;
  return `${String(type)} (schema version ${String(schemaVersion)})${id === undefined ? '' : ` ${id}`}${at}`;
}

// ---------------------------------------------------------------------------------------------
// Checks of one member's value

/** Whether a member's value is what the event's type says; `optional`: the member may be left out. */
export type Check = ((value: unknown) => boolean) & { readonly optional?: true };

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export const string: Check = (v) => typeof v === 'string';
export const boolean: Check = (v) => typeof v === 'boolean';
export const integer: Check = (v) => Number.isSafeInteger(v);
/** An attempt number: a whole number from 1. */
export const attempt: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 1;
/** A time as `Date.toISOString()` writes it (every time Runway records). */
export const time: Check = (v) => typeof v === 'string' && ISO_TIME.test(v) && !Number.isNaN(Date.parse(v));
export const object: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
export const strings: Check = (v) => Array.isArray(v) && v.every((item) => typeof item === 'string');
export const stringMap: Check = (v) => object(v) && Object.values(v as object).every((item) => typeof item === 'string');
export const nullable = (check: Check): Check => (v) => v === null || check(v);
export const oneOf = (...values: readonly unknown[]): Check => (v) => values.includes(v);
/** A member that may be left out (absent, not undefined: stored JSON has no undefined). */
export const optional = (check: Check): Check => Object.assign((v: unknown) => check(v), { optional: true as const });
/** An object with these members, each checked (other members are not looked at). */
export const shape = (members: Readonly<Record<string, Check>>): Check => (v) =>
  object(v) && Object.entries(members).every(([member, check]) => check((v as Record<string, unknown>)[member]));

// ---------------------------------------------------------------------------------------------
// An event union's reader

/** How each member of an event's `data` is checked: every member named, none left out. */
export type DataShape<E extends DomainEvent> = { readonly [K in keyof E['data']]-?: Check };

/** The current schema version of each event type of a union and the shape of its data. */
export type UnionShapes<E extends DomainEvent> = {
  readonly [T in E['type']]: { readonly schemaVersion: Extract<E, { type: T }>['schemaVersion']; readonly data: DataShape<Extract<E, { type: T }>> };
};

/** What reading a stored event found: the event as its current schema version, and what is wrong with it. */
export interface EventReading<E extends DomainEvent> {
  /** Upcast; to be trusted only when there are no `problems` (the audit reads on past a bad event). */
  event: E;
  problems: EventProblem[];
}

/**
 * Reads the stored events of one union: the row is upcast to its type's current schema version,
 * then its data is checked member by member against the type's shape. Members a type does not
 * name are left alone (the audit compares them with what the machine records).
 */
export class EventUnion<E extends DomainEvent> {
  private readonly types: ReadonlyMap<string, TypeShape>;

  constructor(
    /** What the union's streams are called in messages: `job`, `organization`, ... */
    readonly name: string,
    shapes: UnionShapes<E>,
  ) {
    const entries = Object.entries(shapes as Readonly<Record<string, { schemaVersion: number; data: Readonly<Record<string, Check>> }>>);
    this.types = new Map(entries.map(([type, { schemaVersion, data }]) => [type, { schemaVersion, members: Object.entries(data) }]));
  }

  has(type: string): type is E['type'] {
    return this.types.has(type);
  }

  /** The event and everything wrong with it, for a reader that reports problems rather than stop at them. */
  read(stored: StoredEvent): EventReading<E> {
    const { type } = stored;
    const expected = this.types.get(type);
    if (expected === undefined) {
      return { event: stored as E, problems: [{ field: 'type', actual: type, reason: `"${type}" is not ${article(this.name)} event` }] };
    }
    if (!object(stored.data)) {
      return { event: stored as E, problems: [{ field: 'data', actual: stored.data, reason: `${type} data is not an object` }] };
    }
    const event = upcast(stored);
    const problems: EventProblem[] = [];
    if (event.schemaVersion !== expected.schemaVersion) {
      problems.push({
        field: 'schemaVersion',
        actual: stored.schemaVersion,
        reason: `${type} has no schema version ${String(stored.schemaVersion)} (this build reads up to ${expected.schemaVersion})`,
      });
    }
    const data = event.data as Record<string, unknown>;
    for (const [member, check] of expected.members) {
      const value = valueOf(data, member);
      if (value === undefined) {
        if (check.optional !== true) problems.push({ field: `data.${member}`, reason: `${type} has no ${member}` });
      } else if (!check(value)) {
        problems.push({ field: `data.${member}`, actual: value, reason: `${type} has an invalid ${member}` });
      }
    }
    return { event: event as E, problems };
  }

  /** The event as its current schema version, or EventDecodeError naming the event and each bad field. */
  decode(stored: StoredEvent): E {
    // The common case without building a reading: every event a command, a view or a replay reads.
    const expected = this.types.get(stored.type);
    if (expected !== undefined && object(stored.data)) {
      const event = upcast(stored);
      if (event.schemaVersion === expected.schemaVersion && conforms(event.data as Record<string, unknown>, expected.members)) return event as E;
    }
    throw new EventDecodeError(stored, this.read(stored).problems);
  }
}

/** One event type's current schema version and the checks of its members. */
interface TypeShape {
  schemaVersion: number;
  members: readonly (readonly [string, Check])[];
}

/** A member's value; undefined when it is left out (JSON drops undefined: an event read before it was stored). */
const valueOf = (data: Record<string, unknown>, member: string): unknown => (Object.hasOwn(data, member) ? data[member] : undefined);

function conforms(data: Record<string, unknown>, members: TypeShape['members']): boolean {
  for (const [member, check] of members) {
    const value = valueOf(data, member);
    if (value === undefined ? check.optional !== true : !check(value)) return false;
  }
  return true;
}

const article = (name: string) => (/^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`);
