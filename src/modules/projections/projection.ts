import type { EventEnvelope } from '../../events/envelope';
import type { Sql } from '../database/db';

/**
 * A view derived from the log: tables, and how events change them. The same `apply` keeps the
 * view live (inline, in the appending transaction, or by a projector following the log) and
 * rebuilds it (replaying the whole log into a fresh copy of its tables), so the two cannot drift.
 *
 * `apply` gets events in log order, as stored: it decodes those of its streams itself (upcast and
 * checked, events/decoders), so live and rebuilt views read them alike. It writes with unqualified
 * table names: a rebuild runs it with the rebuild schema first on the search path.
 */
export interface Projection {
  readonly name: string;
  /** The tables it writes, parents before children (foreign keys). */
  readonly tables: readonly string[];
  apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void>;
}
