import type { DomainEvent } from './envelope';

/** Turns the data of one schema version of an event type into the next version's. */
type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/**
 * Every change of an event's `data` shape: the type, the version it upgrades from, and how.
 * Stored events are never rewritten (their hashes cover them as they are); readers that fold
 * events upcast them first, so domain code only ever sees the current version.
 */
const UPCASTERS: Readonly<Record<string, Readonly<Record<number, Upcaster>>>> = {
  JobSubmitted: {
    // v2 records the submission's Idempotency-Key, so its view can be rebuilt from the log.
    1: (data) => ({ ...data, idempotency: null }),
  },
};

/** The current schema version of each event type that has more than one. */
export const CURRENT_SCHEMA_VERSIONS: Readonly<Record<string, number>> = Object.fromEntries(
  Object.entries(UPCASTERS).map(([type, steps]) => [type, Math.max(...Object.keys(steps).map(Number)) + 1]),
);

/** The event as its current schema version (the same object when it already is). */
export function upcast<E extends DomainEvent>(event: E): E {
  const steps = UPCASTERS[event.type];
  if (steps === undefined) return event;
  let { schemaVersion } = event;
  let data = event.data as Record<string, unknown>;
  while (steps[schemaVersion] !== undefined) {
    data = steps[schemaVersion](data);
    schemaVersion++;
  }
  return schemaVersion === event.schemaVersion ? event : { ...event, schemaVersion, data };
}
