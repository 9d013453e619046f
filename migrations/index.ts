import { EventStore1764489600000 } from './1764489600000-event-store';
import { Views1764489600001 } from './1764489600001-views';

/** Every migration in order. Listed, not globbed, so the same list runs from .ts and from dist. */
export const MIGRATIONS = [EventStore1764489600000, Views1764489600001];
