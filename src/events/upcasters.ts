import type { DomainEvent } from './envelope';

/** Turns the data of one schema version of an event type into the next version's. */
type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/**
 * Every change of an event's `data` shape: the type, the version it upgrades from, and how.
 * Stored events are never rewritten (their hashes cover them as they are); readers decode them
 * (decoders.ts), which upcasts them first, so domain code only ever sees the current version.
 */
const UPCASTERS: Readonly<Record<string, Readonly<Record<number, Upcaster>>>> = {
  JobSubmitted: {
    // v2 records the submission's Idempotency-Key, so its view can be rebuilt from the log.
    1: (data) => ({ ...data, idempotency: null }),
  },
};

/**
 * Readings of stored events at the version they are, for shapes that an earlier build let into
 * the log although they mean nothing more than what they are read as here. Each says which
 * members were no-ops: the views never applied them, so the folds must not either.
 */
const NORMALIZERS: Readonly<Record<string, Upcaster>> = {
  // `PATCH /v1/orgs/{org} {"plan": null}` was appended as is; the orgs view kept the plan
  // (COALESCE). A null plan changed nothing. (A null maxConcurrency did: it lifts the limit.)
  OrgUpdated: (data) => withoutNull(data, ['plan']),
  // `PATCH /v1/runners/{runner} {"name": null}` likewise: the runners view kept the name.
  RunnerUpdated: (data) => withoutNull(data, ['name', 'specIds']),
};

/** `data` without the members of `keys` that are null (the same object when none is). */
function withoutNull(data: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  if (!keys.some((key) => Object.hasOwn(data, key) && data[key] === null)) return data;
  return Object.fromEntries(Object.entries(data).filter(([key, value]) => !(keys.includes(key) && value === null)));
}

/** The current schema version of each event type that has more than one. */
export const CURRENT_SCHEMA_VERSIONS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(UPCASTERS).map(([type, steps]) => [type, Math.max(...Object.keys(steps).map(Number)) + 1]),
);

/**
 * The event as its current schema version, read as the no-op members it may carry meant (the
 * same object when there is nothing to change).
 */
export function upcast<E extends DomainEvent>(event: E): E {
  const steps = UPCASTERS[event.type];
  const normalize = NORMALIZERS[event.type];
  if (steps === undefined && normalize === undefined) return event;
  let { schemaVersion } = event;
  let data = event.data as Record<string, unknown>;
  while (steps?.[schemaVersion] !== undefined) {
    data = steps[schemaVersion](data);
    schemaVersion++;
  }
  if (normalize !== undefined && data !== null && typeof data === 'object') data = normalize(data);
  return schemaVersion === event.schemaVersion && data === event.data ? event : { ...event, schemaVersion, data };
}
