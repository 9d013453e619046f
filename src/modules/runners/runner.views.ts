import { decodeJobEvent, decodeRunnerEvent } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import type { JobEvent } from '../../events/job-events';
import type { Sql } from '../database/db';
import type { Projection } from '../projections/projection';
import { RUNNER_STREAM } from './runner';

/*
 * Both projections here fold a whole batch of events in memory, in log order, into the rows it
 * leaves behind, and write those with a few set-based statements: the same rows as applying the
 * events one by one, in a few round trips whatever the batch's size.
 */

/** A key under which ids compare as PostgreSQL compares uuids (whatever their case). */
const uuidKey = (id: string): string => id.toLowerCase();

// ---------------------------------------------------------------------------------------------
// runners, runner_specs

/** A row of `runners`. Times are ISO-8601 strings, as the events carry them. */
export interface RunnerRow {
  id: string;
  slug: string;
  name: string;
  token_hash: string;
  archived: boolean;
  created_at: string;
  updated_at: string;
}

/** What a batch changes in a runner registered before it; null leaves a column as it is. */
export interface RunnerChange {
  id: string;
  token_hash: string | null;
  name: string | null;
  archived: boolean | null;
  updated_at: string;
}

/** The writes a batch of events makes to `runners` and `runner_specs`. */
export interface RunnerWrites {
  /** Runners registered in the batch, with what later events of the batch changed. */
  inserts: RunnerRow[];
  /** Runners registered before the batch (or not at all: then the update finds no row). */
  updates: RunnerChange[];
  /** Runners whose specs the batch set, each with its last list, which replaces what it had. */
  specs: { runnerId: string; specIds: string[] }[];
}

/** Folds a batch into the writes it makes to `runners` and `runner_specs` (pure). */
export function foldRunners(events: readonly EventEnvelope[]): RunnerWrites {
  const inserts: RunnerRow[] = [];
  const registered = new Map<string, RunnerRow>();
  const updates = new Map<string, RunnerChange>();
  const specs = new Map<string, { runnerId: string; specIds: string[] }>();
  for (const envelope of events) {
    if (envelope.streamType !== RUNNER_STREAM) continue;
    const event = decodeRunnerEvent(envelope);
    const id = envelope.streamId;
    const key = uuidKey(id);
    const at = envelope.occurredAt;
    // Into the row the batch registered, or, before that, into the row that is there already.
    const change = (fields: Partial<Pick<RunnerRow, 'token_hash' | 'name' | 'archived'>>) => {
      const row = registered.get(key);
      if (row !== undefined) {
        Object.assign(row, fields, { updated_at: at });
        return;
      }
      const update = updates.get(key) ?? { id, token_hash: null, name: null, archived: null, updated_at: at };
      updates.set(key, Object.assign(update, fields, { updated_at: at }));
    };
    switch (event.type) {
      case 'RunnerRegistered': {
        const row: RunnerRow = { id, slug: event.data.slug, name: event.data.name, token_hash: event.data.tokenHash, archived: false, created_at: at, updated_at: at };
        inserts.push(row); // a second registration of one id fails on the primary key, as it would alone
        registered.set(key, row);
        specs.set(key, { runnerId: id, specIds: [...event.data.specIds] });
        break;
      }
      case 'RunnerTokenRotated':
        change({ token_hash: event.data.tokenHash });
        break;
      case 'RunnerUpdated':
        change(event.data.name == null ? {} : { name: event.data.name });
        if (event.data.specIds !== undefined) specs.set(key, { runnerId: id, specIds: [...event.data.specIds] });
        break;
      case 'RunnerArchived':
      case 'RunnerUnarchived':
        change({ archived: event.type === 'RunnerArchived' });
        break;
      case 'RunnerConnected':
      case 'RunnerDisconnected':
        break; // runner_status, kept by a projector
      default: {
        const _exhaustive: never = event;
        throw new Error(`unknown runner event ${(_exhaustive as { type: string }).type}`);
      }
    }
  }
  return { inserts, updates: [...updates.values()], specs: [...specs.values()] };
}

/** Writes a batch's runner writes: updates first, so they reach only the rows that were there. */
async function saveRunners(tx: Sql, writes: RunnerWrites): Promise<void> {
  if (writes.updates.length > 0) {
    await tx.query(
      `UPDATE runners r SET token_hash = COALESCE(u.token_hash, r.token_hash), name = COALESCE(u.name, r.name),
         archived = COALESCE(u.archived, r.archived), updated_at = u.updated_at
       FROM jsonb_to_recordset($1::jsonb) AS u(id uuid, token_hash text, name text, archived boolean, updated_at timestamptz)
       WHERE r.id = u.id`,
      [JSON.stringify(writes.updates)],
    );
  }
  if (writes.inserts.length > 0) {
    await tx.query(
      `INSERT INTO runners (id, slug, name, token_hash, archived, created_at, updated_at)
       SELECT id, slug, name, token_hash, archived, created_at, updated_at
       FROM jsonb_to_recordset($1::jsonb)
         AS r(id uuid, slug text, name text, token_hash text, archived boolean, created_at timestamptz, updated_at timestamptz)`,
      [JSON.stringify(writes.inserts)],
    );
  }
  if (writes.specs.length > 0) {
    await tx.query(`DELETE FROM runner_specs WHERE runner_id = ANY($1::uuid[])`, [writes.specs.map((s) => s.runnerId)]);
    const pairs = writes.specs.flatMap((s) => s.specIds.map((specId) => [s.runnerId, specId] as const));
    if (pairs.length > 0) {
      await tx.query(`INSERT INTO runner_specs (runner_id, spec_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])`, [
        pairs.map((p) => p[0]),
        pairs.map((p) => p[1]),
      ]);
    }
  }
}

/** Runners and the specs they serve: kept inline, read at once by auth and claiming. */
export const runnerViews: Projection = {
  name: 'runners',
  tables: ['runners', 'runner_specs'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    await saveRunners(tx, foldRunners(events));
  },
};

// ---------------------------------------------------------------------------------------------
// runner_status

/**
 * A row of `runner_status` as the fold carries it: times as ISO-8601 strings (the events' or the
 * database's), the fingerprint as the JSON text the jsonb column is written from.
 */
export interface RunnerStatusRow {
  runner_id: string;
  connected: boolean;
  connection_id: string | null;
  gateway: string | null;
  connected_at: string | null;
  last_seen_at: string | null;
  fingerprint: string | null;
}

/** The runners whose status a batch may change: its runner streams and the runners its job events name. */
export function runnersIn(events: readonly EventEnvelope[]): string[] {
  const ids = new Map<string, string>();
  for (const envelope of events) {
    const runner =
      envelope.streamType === RUNNER_STREAM ? envelope.streamId
      : envelope.streamType === 'job' ? runnerSeenIn(decodeJobEvent(envelope))
      : null;
    if (runner !== null && !ids.has(uuidKey(runner))) ids.set(uuidKey(runner), runner);
  }
  return [...ids.values()];
}

/**
 * Folds a batch of events, in log order, over the status rows of the runners it names (`current`:
 * those of `runnersIn(events)` that exist) and returns the rows it changed or created, as they are
 * after the batch. Event by event:
 *
 * - RunnerRegistered creates the row (connected false, the rest null) unless there is one;
 * - RunnerConnected sets connected, connection, gateway, connected_at, last_seen_at and
 *   fingerprint, on a row that exists;
 * - RunnerDisconnected clears connected, connection and gateway (and sets last_seen_at if the
 *   runner closed the connection itself) only while the row still holds that connection: a late
 *   disconnect of an earlier connection changes nothing;
 * - a job event the runner caused itself (`runnerSeenIn`) sets last_seen_at, on a row that exists.
 */
export function foldRunnerStatus(current: readonly RunnerStatusRow[], events: readonly EventEnvelope[]): RunnerStatusRow[] {
  const rows = new Map(current.map((row) => [uuidKey(row.runner_id), { ...row }]));
  const changed = new Set<string>();
  for (const envelope of events) {
    const at = envelope.occurredAt;
    if (envelope.streamType === RUNNER_STREAM) {
      const event = decodeRunnerEvent(envelope);
      const key = uuidKey(envelope.streamId);
      const row = rows.get(key);
      if (event.type === 'RunnerRegistered') {
        if (row !== undefined) continue;
        rows.set(key, { runner_id: envelope.streamId, connected: false, connection_id: null, gateway: null, connected_at: null, last_seen_at: null, fingerprint: null });
      } else if (event.type === 'RunnerConnected') {
        if (row === undefined) continue;
        const { connectionId, gateway, fingerprint } = event.data;
        Object.assign(row, { connected: true, connection_id: connectionId, gateway, connected_at: at, last_seen_at: at, fingerprint: JSON.stringify(fingerprint) ?? null });
      } else if (event.type === 'RunnerDisconnected') {
        if (row === undefined || row.connection_id === null || uuidKey(row.connection_id) !== uuidKey(event.data.connectionId)) continue;
        Object.assign(row, { connected: false, connection_id: null, gateway: null, last_seen_at: event.data.reason === 'closed' ? at : row.last_seen_at });
      } else {
        continue;
      }
      changed.add(key);
    } else if (envelope.streamType === 'job') {
      const runner = runnerSeenIn(decodeJobEvent(envelope));
      const row = runner === null ? undefined : rows.get(uuidKey(runner));
      if (row === undefined) continue;
      row.last_seen_at = at;
      changed.add(uuidKey(row.runner_id));
    }
  }
  return [...changed].map((key) => rows.get(key) as RunnerStatusRow);
}

/** The status rows of these runners, locked for the batch (times as ISO-8601, the fingerprint as JSON text). */
async function loadRunnerStatus(tx: Sql, runnerIds: readonly string[]): Promise<RunnerStatusRow[]> {
  const { rows } = await tx.query<RunnerStatusRow>(
    `SELECT runner_id, connected, connection_id, gateway, to_jsonb(connected_at) #>> '{}' AS connected_at,
       to_jsonb(last_seen_at) #>> '{}' AS last_seen_at, fingerprint::text AS fingerprint
     FROM runner_status WHERE runner_id = ANY($1::uuid[]) ORDER BY runner_id FOR UPDATE`,
    [runnerIds],
  );
  return rows;
}

async function saveRunnerStatus(tx: Sql, rows: readonly RunnerStatusRow[]): Promise<void> {
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO runner_status (runner_id, connected, connection_id, gateway, connected_at, last_seen_at, fingerprint)
     SELECT runner_id, connected, connection_id, gateway, connected_at, last_seen_at, fingerprint::jsonb
     FROM jsonb_to_recordset($1::jsonb) AS s(runner_id uuid, connected boolean, connection_id uuid, gateway text,
       connected_at timestamptz, last_seen_at timestamptz, fingerprint text)
     ON CONFLICT (runner_id) DO UPDATE SET connected = EXCLUDED.connected, connection_id = EXCLUDED.connection_id,
       gateway = EXCLUDED.gateway, connected_at = EXCLUDED.connected_at, last_seen_at = EXCLUDED.last_seen_at,
       fingerprint = EXCLUDED.fingerprint`,
    [JSON.stringify(rows)],
  );
}

/**
 * Where each runner is (connected, where, what it said of its machine, when it was last seen),
 * kept by a projector from runner events and the job events the runner caused itself. A batch
 * reads the rows of the runners it names, folds its events over them and writes back those it
 * changed: a disconnect applies only to the connection the row holds at that point of the batch.
 */
export const runnerStatusViews: Projection = {
  name: 'runner-status',
  tables: ['runner_status'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    const runnerIds = runnersIn(events);
    if (runnerIds.length === 0) return;
    await saveRunnerStatus(tx, foldRunnerStatus(await loadRunnerStatus(tx, runnerIds), events));
  },
};

/** The runner whose own message this job event records, if any (timeouts and cancels are not). */
function runnerSeenIn(event: JobEvent): string | null {
  switch (event.type) {
    case 'JobClaimed':
    case 'JobStarted':
    case 'JobCompleted':
    case 'JobCancelAcknowledged':
      return event.data.runnerId;
    case 'JobFailed':
      return event.data.failure === 'nonzero_exit' || event.data.failure === 'runner_error' ? event.data.runnerId : null;
    case 'JobSubmitted':
    case 'JobCanceled':
    case 'JobRequeued':
      return null;
    default: {
      const _exhaustive: never = event;
      throw new Error(`unknown job event ${(_exhaustive as { type: string }).type}`);
    }
  }
}
