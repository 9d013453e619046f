import { decodeOrgEvent } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import type { Plan } from '../../events/job-events';
import type { Sql } from '../database/db';
import type { Projection } from '../projections/projection';
import { ORG_STREAM } from './org';

/** A row of `orgs`. Times are ISO-8601 strings, as the events carry them. */
export interface OrgRow {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  max_concurrency: number | null;
  created_at: string;
  updated_at: string;
}

/** What a batch changes in an organization created before it. */
export interface OrgChange {
  id: string;
  /** The new plan; null keeps it. */
  plan: Plan | null;
  /** Whether the limit is set (to `max_concurrency`, null for none), or kept. */
  set_max_concurrency: boolean;
  max_concurrency: number | null;
  updated_at: string;
}

export interface OrgKeyRow {
  id: string;
  org_id: string;
  name: string | null;
  key_hash: string;
  created_at: string;
  revoked_at: string | null;
}

export interface ProjectRow {
  id: string;
  org_id: string;
  slug: string;
  name: string;
  created_at: string;
}

/** The writes a batch of events makes to `orgs`, `org_keys` and `projects`. */
export interface OrgWrites {
  /** Organizations created in the batch, with what later events of the batch changed. */
  orgs: OrgRow[];
  /** Organizations created before the batch (or not at all: then the update finds no row). */
  orgUpdates: OrgChange[];
  /** Keys created in the batch, revoked if a later event of the batch revoked them. */
  keys: OrgKeyRow[];
  /** Keys created before the batch: each one's first revocation, which applies if it is not revoked yet. */
  keyRevocations: { id: string; revoked_at: string }[];
  projects: ProjectRow[];
}

/** A key under which ids compare as PostgreSQL compares uuids (whatever their case). */
const uuidKey = (id: string): string => id.toLowerCase();

/**
 * Folds a batch into the writes it makes, in log order (pure). An event on an organization or a
 * key created later in the same batch goes to the row that is there already, as it would alone:
 * the writer updates rows that were there before it inserts the batch's new ones.
 */
export function foldOrgs(events: readonly EventEnvelope[]): OrgWrites {
  const writes: OrgWrites = { orgs: [], orgUpdates: [], keys: [], keyRevocations: [], projects: [] };
  const createdOrgs = new Map<string, OrgRow>();
  const orgUpdates = new Map<string, OrgChange>();
  const createdKeys = new Map<string, OrgKeyRow>();
  const revocations = new Map<string, { id: string; revoked_at: string }>();
  for (const envelope of events) {
    if (envelope.streamType !== ORG_STREAM) continue;
    const event = decodeOrgEvent(envelope);
    const orgId = envelope.streamId;
    const at = envelope.occurredAt;
    switch (event.type) {
      case 'OrgCreated': {
        const row: OrgRow = { id: orgId, slug: event.data.slug, name: event.data.name, plan: event.data.plan, max_concurrency: event.data.maxConcurrency, created_at: at, updated_at: at };
        writes.orgs.push(row); // created twice, the insert fails on the primary key, as it would alone
        createdOrgs.set(uuidKey(orgId), row);
        break;
      }
      case 'OrgUpdated': {
        // plan = COALESCE(plan, plan); max_concurrency only when the event names it (null lifts the limit).
        const plan = event.data.plan ?? null;
        const setLimit = 'maxConcurrency' in event.data;
        const limit = event.data.maxConcurrency ?? null;
        const row = createdOrgs.get(uuidKey(orgId));
        if (row !== undefined) {
          if (plan !== null) row.plan = plan;
          if (setLimit) row.max_concurrency = limit;
          row.updated_at = at;
          break;
        }
        const change = orgUpdates.get(uuidKey(orgId)) ?? { id: orgId, plan: null, set_max_concurrency: false, max_concurrency: null, updated_at: at };
        if (plan !== null) change.plan = plan;
        if (setLimit) Object.assign(change, { set_max_concurrency: true, max_concurrency: limit });
        change.updated_at = at;
        orgUpdates.set(uuidKey(orgId), change);
        break;
      }
      case 'OrgKeyCreated': {
        const row: OrgKeyRow = { id: event.data.keyId, org_id: orgId, name: event.data.name, key_hash: event.data.keyHash, created_at: at, revoked_at: null };
        writes.keys.push(row);
        createdKeys.set(uuidKey(event.data.keyId), row);
        break;
      }
      case 'OrgKeyRevoked': {
        // Only a key not revoked yet: the first revocation holds.
        const key = uuidKey(event.data.keyId);
        const row = createdKeys.get(key);
        if (row !== undefined) row.revoked_at ??= at;
        else if (!revocations.has(key)) revocations.set(key, { id: event.data.keyId, revoked_at: at });
        break;
      }
      case 'ProjectCreated':
        writes.projects.push({ id: event.data.projectId, org_id: orgId, slug: event.data.slug, name: event.data.name, created_at: at });
        break;
      default: {
        const _exhaustive: never = event;
        throw new Error(`unknown org event ${(_exhaustive as { type: string }).type}`);
      }
    }
  }
  writes.orgUpdates = [...orgUpdates.values()];
  writes.keyRevocations = [...revocations.values()];
  return writes;
}

/** Updates of rows that were there, then inserts, parents before children (foreign keys). */
async function saveOrgs(tx: Sql, writes: OrgWrites): Promise<void> {
  const json = (rows: readonly object[]) => [JSON.stringify(rows)];
  if (writes.orgUpdates.length > 0) {
    await tx.query(
      `UPDATE orgs o SET plan = COALESCE(u.plan, o.plan),
         max_concurrency = CASE WHEN u.set_max_concurrency THEN u.max_concurrency ELSE o.max_concurrency END,
         updated_at = u.updated_at
       FROM jsonb_to_recordset($1::jsonb)
         AS u(id uuid, plan text, set_max_concurrency boolean, max_concurrency int, updated_at timestamptz)
       WHERE o.id = u.id`,
      json(writes.orgUpdates),
    );
  }
  if (writes.keyRevocations.length > 0) {
    await tx.query(
      `UPDATE org_keys k SET revoked_at = r.revoked_at
       FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, revoked_at timestamptz)
       WHERE k.id = r.id AND k.revoked_at IS NULL`,
      json(writes.keyRevocations),
    );
  }
  if (writes.orgs.length > 0) {
    await tx.query(
      `INSERT INTO orgs (id, slug, name, plan, max_concurrency, created_at, updated_at)
       SELECT id, slug, name, plan, max_concurrency, created_at, updated_at
       FROM jsonb_to_recordset($1::jsonb)
         AS o(id uuid, slug text, name text, plan text, max_concurrency int, created_at timestamptz, updated_at timestamptz)`,
      json(writes.orgs),
    );
  }
  if (writes.keys.length > 0) {
    await tx.query(
      `INSERT INTO org_keys (id, org_id, name, key_hash, created_at, revoked_at)
       SELECT id, org_id, name, key_hash, created_at, revoked_at
       FROM jsonb_to_recordset($1::jsonb)
         AS k(id uuid, org_id uuid, name text, key_hash text, created_at timestamptz, revoked_at timestamptz)`,
      json(writes.keys),
    );
  }
  if (writes.projects.length > 0) {
    await tx.query(
      `INSERT INTO projects (id, org_id, slug, name, created_at)
       SELECT id, org_id, slug, name, created_at
       FROM jsonb_to_recordset($1::jsonb) AS p(id uuid, org_id uuid, slug text, name text, created_at timestamptz)`,
      json(writes.projects),
    );
  }
}

/**
 * Organizations, their keys and projects: kept inline, read at once by auth and submissions. A
 * batch is folded in memory and written with a statement per kind of write.
 */
export const orgViews: Projection = {
  name: 'orgs',
  tables: ['orgs', 'org_keys', 'projects'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    await saveOrgs(tx, foldOrgs(events));
  },
};
