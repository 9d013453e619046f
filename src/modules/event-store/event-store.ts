import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConcurrencyError } from '../../common/errors';
import { IdGenerator } from '../../common/ids';
import {
  type DomainEvent,
  type EventEnvelope,
  type EventMetadata,
  CanonicalJson,
  GENESIS_HASH,
  hashEvent,
  hashedTextAroundPosition,
} from '../../events/envelope';
import { Db, type Sql } from '../database/db';
import { type InlineWrite, Placeholders, runInlineWrites } from '../database/inline-write';

/** Where a reader of the whole log stands: the last event it has taken, or the start. */
export interface LogPosition {
  /** xid8 of the writing transaction, as a decimal string ("0" at the start). */
  transactionId: string;
  globalPosition: number;
}

export const LOG_START: LogPosition = { transactionId: '0', globalPosition: 0 };

/**
 * The gate of the log's readers, an SQL expression (xid8): readers take only events whose
 * transaction is older than it. Over the statement's snapshot `s` (`pg_current_snapshot()`, the
 * one its read of `events` sees), it is the oldest transaction in progress in `s` that may be
 * this database's, or `s`'s xmax when there is none. A transaction in another database of the
 * server (a migration, a batch job, a forgotten session) holds no reader back; one in this
 * database does, as it must.
 *
 * Why it is gap-safe: take an event in `events` whose transaction x is older than the gate G.
 * - x < xmin(s), or x < xmax(s) and not in s's in-progress list: x had ended when `s` was taken,
 *   so if it committed, its events are visible in `s` (the reader's own snapshot: the statement's),
 *   and if it rolled back, it has none.
 * - x is in s's in-progress list: it was not kept in the gate, so it was seen running in
 *   pg_stat_activity with another database's name. A transaction belongs to its backend's database
 *   for its whole life and ids are not reused, so x never wrote this database's log: it has no
 *   events here, now or later. (When it was seen does not matter: once seen elsewhere, it is
 *   elsewhere.)
 * So every event older than G that will ever exist is visible now, and a reader that takes them
 * in log order never passes one that commits later. Whatever the read cannot place stays in the
 * gate: a transaction that ended between `s` and the read of pg_stat_activity (it may have been
 * this database's; its rows are invisible to `s`), a prepared transaction (no backend), a backend
 * whose row the role may not see (backend_xid is null without pg_read_all_stats), a walsender
 * (no database). So at worst the gate is the server-wide horizon the readers had before:
 * `pg_snapshot_xmin(s)`. A transaction still running at or past xmax(s) (nothing later has ended
 * yet) is not in the list, and needs not be: the gate is at most xmax(s), so it is never passed.
 * `pg_snapshot_xip` lists top-level transaction ids, as events record them
 * (`pg_current_xact_id()`); `backend_xid` is the 32-bit form, compared after `::xid` (in-progress
 * ids are less than 2^31 apart, so the low 32 bits name one transaction).
 */
export const LOG_GATE = `(SELECT COALESCE(
      (SELECT min(x) FROM pg_snapshot_xip(snap.s) x
        WHERE x::xid NOT IN (SELECT backend_xid FROM pg_stat_activity
                              WHERE backend_xid IS NOT NULL AND datname <> current_database())),
      pg_snapshot_xmax(snap.s))
    FROM (SELECT pg_current_snapshot() AS s) snap)`;

export interface AppendResult<E extends DomainEvent = DomainEvent> {
  nextVersion: number;
  envelopes: EventEnvelope<E>[];
}

export type ChainCheck = { valid: true; eventCount: number } | { valid: false; eventCount: number; brokenAt: number; reason: string };

interface EventRow {
  global_position: string;
  transaction_id: string;
  id: string;
  stream_id: string;
  stream_type: string;
  stream_position: number;
  type: string;
  schema_version: number;
  data: unknown;
  metadata: EventMetadata;
  occurred_at: Date;
  hash: string;
  prev_hash: string;
}

// `transaction_id` is selected as text (xid8 does not fit a JS number); ORDER BY must name the
// table's column (`events.transaction_id`), or it sorts the text alias: '100004' < '99995'.
const EVENT_COLUMNS = `global_position, transaction_id::text AS transaction_id, id, stream_id, stream_type,
  stream_position, type, schema_version, data, metadata, occurred_at, hash, prev_hash`;

function toEnvelope(row: EventRow): EventEnvelope {
  return {
    id: row.id,
    streamId: row.stream_id,
    streamType: row.stream_type,
    position: row.stream_position,
    globalPosition: Number(row.global_position),
    type: row.type,
    schemaVersion: row.schema_version,
    data: row.data,
    metadata: row.metadata,
    occurredAt: row.occurred_at.toISOString(),
    hash: row.hash,
    prevHash: row.prev_hash,
  };
}

/**
 * A check an append makes in its own statement, before it locks the stream: `sql` is a SELECT of
 * one row with a boolean column `ok` (its placeholders from `param`); when `ok` is false the
 * stream is not even locked, nothing is appended and `refuse(row)` is thrown. A plain SELECT
 * reads what committed before the statement began; one that must read after locks it takes
 * calls a VOLATILE function that takes them and then reads (see `runway_claim_check`).
 */
export interface AppendCheck {
  sql: (param: (value: unknown) => string) => string;
  refuse: (row: Record<string, unknown>) => Error;
}

/**
 * The event store: streams of events in PostgreSQL with optimistic concurrency, a per-stream
 * SHA-256 chain, and a gap-safe reader of the whole log.
 *
 * An append must be the first write of its transaction (inline views are written after it).
 * The stream row's lock is then what gives the transaction its id, so within a stream later
 * versions always have later transaction ids, and the log order (transaction_id,
 * global_position) keeps every stream in version order.
 */
@Injectable()
export class EventStore {
  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
  ) {}

  /**
   * Appends `events` to a stream inside the caller's transaction `tx`, if the stream is at
   * `expectedVersion` (0: the stream must not exist yet). Otherwise throws ConcurrencyError and
   * writes nothing. Returns the stored envelopes.
   *
   * `prevHash`, when the caller knows it (the hash of the stream's event at `expectedVersion`,
   * as it read it), lets a single event go in one statement, its position and hash drawn and
   * computed by PostgreSQL; without it, or for several events, it takes two. `inline`: writes of
   * inline views that follow the events; in that one statement when there is one (a statement
   * is atomic, so it needs no transaction of its own: see `appendsInOneStatement`), else as
   * statements of their own after the events.
   */
  async append<E extends DomainEvent>(
    tx: Sql,
    stream: { id: string; type: string },
    expectedVersion: number,
    events: readonly E[],
    metadata: EventMetadata,
    options: { prevHash?: string; inline?: readonly InlineWrite[]; check?: AppendCheck } = {},
  ): Promise<AppendResult<E>> {
    if (events.length === 0) return { nextVersion: expectedVersion, envelopes: [] };
    const inline = options.inline ?? [];
    if (options.check !== undefined && (expectedVersion === 0 || !EventStore.appendsInOneStatement(expectedVersion, events.length, options.prevHash))) {
      throw new Error('an append with a check must be one event on an existing stream whose head the caller names');
    }
    if (EventStore.appendsInOneStatement(expectedVersion, events.length, options.prevHash)) {
      const knownHead = expectedVersion === 0 ? GENESIS_HASH : (options.prevHash as string);
      return this.appendOne(tx, stream, expectedVersion, events[0], metadata, knownHead, inline, options.check);
    }
    const appended = await this.appendMany(tx, stream, expectedVersion, events, metadata);
    await runInlineWrites(tx, inline);
    return appended;
  }

  /**
   * Whether `append` writes the events and its inline writes with one statement: one event, with
   * the stream's head known. Such an append may run outside a transaction (on the pool).
   */
  static appendsInOneStatement(expectedVersion: number, eventCount: number, prevHash: string | undefined): boolean {
    return eventCount === 1 && (expectedVersion === 0 || prevHash !== undefined);
  }

  private async appendMany<E extends DomainEvent>(
    tx: Sql,
    stream: { id: string; type: string },
    expectedVersion: number,
    events: readonly E[],
    metadata: EventMetadata,
  ): Promise<AppendResult<E>> {
    const head = await this.lockHead(tx, stream, expectedVersion, events.length);
    const occurredAt = this.clock.now().toISOString();
    let prevHash = head.lastHash;
    const envelopes: EventEnvelope<E>[] = events.map((event, i) => {
      const unhashed = { ...this.draft(stream, expectedVersion + i + 1, event, metadata, occurredAt, prevHash), globalPosition: head.positions[i] };
      const hash = hashEvent(unhashed);
      prevHash = hash;
      return { ...unhashed, hash };
    });
    const nextVersion = expectedVersion + events.length;
    // One round trip: the rows, and the stream's new head.
    await tx.query(
      `WITH appended AS (
         INSERT INTO events (global_position, id, stream_id, stream_type, stream_position, type,
           schema_version, data, metadata, occurred_at, hash, prev_hash)
         SELECT g, i, $1, $2, p, t, v, d, m, $10, h, ph
           FROM unnest($3::bigint[], $4::uuid[], $5::int[], $6::text[], $7::int[], $8::jsonb[], $9::jsonb[],
                       $11::text[], $12::text[]) AS e(g, i, p, t, v, d, m, h, ph)
         RETURNING 1)
       UPDATE streams SET version = $13, last_hash = $14
        WHERE stream_id = $1 AND (SELECT count(*) FROM appended) = $15`,
      [
        stream.id,
        stream.type,
        envelopes.map((e) => e.globalPosition),
        envelopes.map((e) => e.id),
        envelopes.map((e) => e.position),
        envelopes.map((e) => e.type),
        envelopes.map((e) => e.schemaVersion),
        envelopes.map((e) => JSON.stringify(e.data)),
        envelopes.map((e) => JSON.stringify(e.metadata)),
        occurredAt,
        envelopes.map((e) => e.hash),
        envelopes.map((e) => e.prevHash),
        nextVersion,
        prevHash,
        events.length,
      ],
    );
    return { nextVersion, envelopes };
  }

  /**
   * Starts new streams, one event each, with one statement (`appendEach`, every entry at version
   * 0): the streams' rows, the events and the `inline` writes. If any of the streams exists
   * already, throws its ConcurrencyError: nothing may then commit, so `tx` must be a transaction
   * the caller rolls back on a throw (the others' events went in).
   */
  async startStreams<E extends DomainEvent>(
    tx: Sql,
    starts: readonly { stream: { id: string; type: string }; event: E; metadata: EventMetadata }[],
    inline: readonly InlineWrite[] = [],
  ): Promise<EventEnvelope<E>[]> {
    const results = await this.appendEach(
      tx,
      starts.map((start) => ({ ...start, expectedVersion: 0, prevHash: GENESIS_HASH })),
      inline,
    );
    const refused = results.find((result) => result instanceof ConcurrencyError);
    if (refused !== undefined) throw refused;
    return results as EventEnvelope<E>[];
  }

  /**
   * Appends one event to each of several streams with one statement (a group commit), each at
   * its expected version and known head: new streams (expectedVersion 0) are created, existing
   * ones locked in stream order (so two such statements never wait on each other in a cycle) and
   * checked. An entry whose stream is not where it expected gets a ConcurrencyError and writes
   * nothing, its writes included; the others go in. The `inline` writes (merged by name) take
   * effect for the entries that went in.
   *
   * Per-stream order in the log holds without the single append's rule that the append be its
   * transaction's first write: an entry's expected head was read (or written by this process)
   * and committed before the entry was decided, so before this statement began, and this
   * statement's transaction id is drawn after it began; the head's lock then orders it after any
   * writer of the stream still in progress, whose commit moves the head and refuses the entry.
   * So an event's transaction is always younger than its predecessor's in its stream.
   */
  async appendEach<E extends DomainEvent>(
    sql: Sql,
    entries: readonly { stream: { id: string; type: string }; expectedVersion: number; prevHash: string; event: E; metadata: EventMetadata }[],
    inline: readonly InlineWrite[] = [],
  ): Promise<(EventEnvelope<E> | ConcurrencyError)[]> {
    if (entries.length === 0) return [];
    if (new Set(entries.map((entry) => entry.stream.id.toLowerCase())).size !== entries.length) {
      throw new Error('appendEach: a stream is named twice');
    }
    const occurredAt = this.clock.now().toISOString();
    const drafts = entries.map((entry) => ({
      entry,
      ...this.positionless(entry.stream, entry.expectedVersion + 1, entry.event, entry.metadata, occurredAt, entry.prevHash),
    }));
    const placeholders = new Placeholders([
      drafts.map((d) => d.unplaced.streamId),
      drafts.map((d) => d.unplaced.streamType),
      drafts.map((d) => d.entry.expectedVersion),
      drafts.map((d) => d.entry.prevHash),
      drafts.map((d) => d.unplaced.id),
      drafts.map((d) => d.unplaced.type),
      drafts.map((d) => d.unplaced.schemaVersion),
      drafts.map((d) => d.data),
      drafts.map((d) => d.metadata),
      drafts.map((d) => d.before),
      drafts.map((d) => d.after),
      occurredAt,
    ]);
    const writes = inline.length === 0 ? '' : `,\n${placeholders.withItems(inline, (streamId) => `${streamId} IN (SELECT stream_id FROM appended)`)}`;
    const { rows } = await sql.query<{ n: string; global_position: string | null; hash: string | null; head_version: number | null }>(
      `WITH input AS (
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::uuid[], $6::text[], $7::int[], $8::jsonb[], $9::jsonb[], $10::bytea[], $11::bytea[])
           WITH ORDINALITY AS i(stream_id, stream_type, expected, prev_hash, id, type, v, d, m, before, after, n)),
       head AS (
         SELECT s.stream_id, s.version, s.last_hash FROM streams s
          WHERE s.stream_id IN (SELECT stream_id FROM input WHERE expected > 0)
          ORDER BY s.stream_id FOR UPDATE),
       ready AS (
         SELECT i.* FROM input i LEFT JOIN head hd ON hd.stream_id = i.stream_id
          WHERE i.expected = 0 OR (hd.version = i.expected AND hd.last_hash = i.prev_hash)),
       drawn AS (SELECT r.*, nextval('events_global_position_seq') AS g FROM (SELECT * FROM ready ORDER BY n) r),
       h AS (SELECT drawn.*, encode(sha256(before || convert_to(g::text, 'UTF8') || after), 'hex') AS hash FROM drawn),
       created AS (
         INSERT INTO streams (stream_id, stream_type, version, last_hash)
         SELECT stream_id, stream_type, 1, hash FROM h WHERE expected = 0
         ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id),
       appended AS (
         INSERT INTO events (global_position, id, stream_id, stream_type, stream_position, type,
           schema_version, data, metadata, occurred_at, hash, prev_hash)
         SELECT g, id, stream_id, stream_type, expected + 1, type, v, d, m, $12, hash, prev_hash FROM h
          WHERE expected > 0 OR stream_id IN (SELECT stream_id FROM created)
         RETURNING stream_id, global_position, hash),
       moved AS (
         UPDATE streams s SET version = h.expected + 1, last_hash = h.hash FROM h
          WHERE s.stream_id = h.stream_id AND h.expected > 0 RETURNING 1)${writes}
       SELECT i.n, a.global_position, a.hash, hd.version AS head_version
         FROM input i LEFT JOIN appended a ON a.stream_id = i.stream_id LEFT JOIN head hd ON hd.stream_id = i.stream_id
        ORDER BY i.n`,
      placeholders.values,
    );
    return drafts.map(({ entry, unplaced }, i) => {
      const row = rows[i];
      if (row === undefined || row.global_position === null || row.hash === null) {
        return new ConcurrencyError(entry.stream.id, entry.expectedVersion, row?.head_version ?? null);
      }
      return { ...unplaced, globalPosition: Number(row.global_position), hash: row.hash } as EventEnvelope<E>;
    });
  }

  /**
   * An event ready for a statement that draws its global position: its envelope but for the
   * position and hash, its data and metadata encoded once (the same text is hashed and stored),
   * and the text its hash covers on either side of the position (see `hashedTextAroundPosition`).
   */
  private positionless<E extends DomainEvent>(
    stream: { id: string; type: string },
    position: number,
    event: E,
    metadata: EventMetadata,
    occurredAt: string,
    prevHash: string,
  ): { unplaced: Omit<EventEnvelope<E>, 'globalPosition' | 'hash'>; data: string; metadata: string; before: Buffer; after: Buffer } {
    const unplaced = this.draft(stream, position, event, metadata, occurredAt, prevHash);
    const data = new CanonicalJson(event.data);
    const encodedMetadata = new CanonicalJson(metadata);
    const { before, after } = hashedTextAroundPosition({ ...unplaced, data, metadata: encodedMetadata });
    return { unplaced, data: data.text, metadata: encodedMetadata.text, before: Buffer.from(before, 'utf8'), after: Buffer.from(after, 'utf8') };
  }

  /** An event's envelope but for its global position and hash. */
  private draft<E extends DomainEvent>(
    stream: { id: string; type: string },
    position: number,
    event: E,
    metadata: EventMetadata,
    occurredAt: string,
    prevHash: string,
  ): Omit<EventEnvelope<E>, 'globalPosition' | 'hash'> {
    return {
      id: this.ids.next(),
      streamId: stream.id,
      streamType: stream.type,
      position,
      type: event.type,
      schemaVersion: event.schemaVersion,
      data: event.data,
      metadata,
      occurredAt,
      prevHash,
    };
  }

  /**
   * One event in one round trip. The hash covers the global position, which the statement draws,
   * so PostgreSQL computes it: sha256 of the canonical text around the position (see
   * `hashedTextAroundPosition`), the same bytes `hashEvent` hashes.
   *
   * To an existing stream: the stream's row lock first (it gives the transaction its id, as in
   * the two-statement path), then, if the stream is at `expectedVersion` with `prevHash` as its
   * head, the position, the event and the new head. A new stream: the position is drawn before
   * the stream row is created (nobody can have appended to a stream that does not exist yet), and
   * a stream created meanwhile by someone else makes the insert do nothing.
   */
  private async appendOne<E extends DomainEvent>(
    tx: Sql,
    stream: { id: string; type: string },
    expectedVersion: number,
    event: E,
    metadata: EventMetadata,
    prevHash: string,
    inline: readonly InlineWrite[],
    check?: AppendCheck,
  ): Promise<AppendResult<E>> {
    const { unplaced, data, metadata: encodedMetadata, before, after } = this.positionless(
      stream,
      expectedVersion + 1,
      event,
      metadata,
      this.clock.now().toISOString(),
      prevHash,
    );
    const { occurredAt } = unplaced;
    const insert = `INSERT INTO events (global_position, id, stream_id, stream_type, stream_position, type,
           schema_version, data, metadata, occurred_at, hash, prev_hash)
         SELECT h.g, $4, $1, $2, $5, $6, $7, $8, $9, $10, h.hash, $11 FROM h`;
    const hashed = `SELECT g, encode(sha256($12::bytea || convert_to(g::text, 'UTF8') || $13::bytea), 'hex') AS hash`;
    const params = [
      stream.id,
      stream.type,
      expectedVersion,
      unplaced.id,
      unplaced.position,
      event.type,
      event.schemaVersion,
      data,
      encodedMetadata,
      occurredAt,
      prevHash,
      before,
      after,
    ];
    // The inline views' writes, each taking effect only if the event went in.
    const placeholders = new Placeholders(params);
    const writes = inline.length === 0 ? '' : `,\n${placeholders.withItems(inline, () => 'EXISTS (SELECT 1 FROM appended)')}`;
    const checked = check === undefined ? '' : `checked AS (${check.sql((value) => placeholders.param(value))}),\n`;
    let row:
      | { version: number | null; xid_before: string | null; global_position: string | null; hash: string | null; checked?: Record<string, unknown> }
      | undefined;
    if (expectedVersion === 0) {
      const { rows } = await tx.query<{ global_position: string; hash: string }>(
        `WITH drawn AS (SELECT nextval('events_global_position_seq') AS g),
         h AS (${hashed} FROM drawn),
         created AS (
           INSERT INTO streams (stream_id, stream_type, version, last_hash)
           SELECT $1, $2, $3::int + 1, h.hash FROM h
           ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id),
         appended AS (${insert} JOIN created ON true RETURNING global_position, hash)${writes}
         SELECT global_position, hash FROM appended`,
        placeholders.values,
      );
      if (rows[0] === undefined) throw new ConcurrencyError(stream.id, 0, await this.version(stream.id, tx));
      row = { version: 0, xid_before: null, ...rows[0] };
    } else {
      const { rows } = await tx.query<NonNullable<typeof row>>(
        `WITH ${checked}head AS (
           SELECT version, last_hash, pg_current_xact_id_if_assigned()::text AS xid_before
             FROM streams WHERE stream_id = $1${check === undefined ? '' : ' AND (SELECT ok FROM checked)'} FOR UPDATE),
         drawn AS (SELECT nextval('events_global_position_seq') AS g FROM head
                    WHERE version = $3 AND last_hash = $11),
         h AS (${hashed} FROM drawn),
         appended AS (${insert} RETURNING global_position, hash),
         moved AS (
           -- Runs whether or not the query reads it, as every data-modifying WITH does.
           UPDATE streams SET version = $5, last_hash = a.hash FROM appended a WHERE stream_id = $1 RETURNING 1)${writes}
         SELECT head.version, head.xid_before, a.global_position, a.hash${
           check === undefined ? '\n           FROM head' : ', (SELECT to_jsonb(checked) FROM checked) AS checked\n           FROM (SELECT 1) one LEFT JOIN head ON true'
         } LEFT JOIN appended a ON true`,
        placeholders.values,
      );
      row = rows[0];
      if (check !== undefined && row !== undefined && row.checked?.ok !== true) throw check.refuse(row.checked ?? {});
      if (row === undefined || row.version !== expectedVersion) throw new ConcurrencyError(stream.id, expectedVersion, row?.version ?? null);
      if (row.xid_before !== null) {
        // A write before the lock would give this transaction an older id than a writer it waited for.
        throw new Error(`append to stream ${stream.id} must be the first write of its transaction`);
      }
      if (row.global_position === null) {
        throw new Error(`stream ${stream.id} is at version ${expectedVersion} but its head is not the event the caller read`);
      }
    }
    const envelope = {
      ...unplaced,
      globalPosition: Number(row.global_position),
      hash: row.hash as string,
    } as EventEnvelope<E>;
    return { nextVersion: expectedVersion + 1, envelopes: [envelope] };
  }

  /**
   * Takes the stream's row lock (creating the stream when expectedVersion is 0), checks its
   * version, and only then draws the events' global positions, so positions follow the lock order.
   */
  private async lockHead(
    tx: Sql,
    stream: { id: string; type: string },
    expectedVersion: number,
    count: number,
  ): Promise<{ lastHash: string; positions: number[] }> {
    const drawPositions = `(SELECT array_agg(nextval('events_global_position_seq')) FROM generate_series(1, $2::int))::text[]`;
    if (expectedVersion === 0) {
      // A racing creator holds the row until it ends; if it commits, this insert does nothing.
      const created = await tx.query<{ positions: string[] }>(
        `WITH created AS (
           INSERT INTO streams (stream_id, stream_type, version, last_hash) VALUES ($1, $3, 0, $4)
           ON CONFLICT (stream_id) DO NOTHING RETURNING stream_id)
         SELECT ${drawPositions} AS positions FROM created`,
        [stream.id, count, stream.type, GENESIS_HASH],
      );
      const row = created.rows[0];
      if (row !== undefined) return { lastHash: GENESIS_HASH, positions: row.positions.map(Number) };
      throw new ConcurrencyError(stream.id, 0, await this.version(stream.id, tx));
    }
    const head = await tx.query<{ version: number; last_hash: string; xid_before: string | null; positions: string[] }>(
      `WITH head AS (
         SELECT version, last_hash, pg_current_xact_id_if_assigned()::text AS xid_before
           FROM streams WHERE stream_id = $1 FOR UPDATE)
       SELECT head.*, CASE WHEN version = $3 THEN ${drawPositions} END AS positions FROM head`,
      [stream.id, count, expectedVersion],
    );
    const row = head.rows[0];
    if (row === undefined || row.version !== expectedVersion) {
      throw new ConcurrencyError(stream.id, expectedVersion, row?.version ?? null);
    }
    if (row.xid_before !== null) {
      // A write before the lock would give this transaction an older id than a writer it waited for.
      throw new Error(`append to stream ${stream.id} must be the first write of its transaction`);
    }
    return { lastHash: row.last_hash, positions: row.positions.map(Number) };
  }

  /** A stream's events in version order (from `fromVersion`, exclusive). */
  async readStream(streamId: string, fromVersion = 0, sql: Sql = this.db): Promise<EventEnvelope[]> {
    const result = await sql.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_position > $2 ORDER BY stream_position`,
      [streamId, fromVersion],
    );
    return result.rows.map(toEnvelope);
  }

  /**
   * The next batch of the whole log after `after`, in log order, taking only events whose
   * transaction is older than every transaction still running that may write this database
   * (LOG_GATE): an event committed later can never land before a position a reader has passed.
   * `heldBack`: committed events after the batch were left for later because such a transaction
   * older than theirs still runs; a reader that waits for commits looks again soon rather than at
   * its next idle poll. `appendsExcluded`:
   * the caller holds a lock that no append can pass (see ProjectionRebuilder), so every event is
   * committed and the gate is dropped.
   */
  async readAll(
    after: LogPosition,
    limit: number,
    sql: Sql = this.db,
    options: { appendsExcluded?: boolean } = {},
  ): Promise<{ events: EventEnvelope[]; last: LogPosition; positions: LogPosition[]; heldBack: boolean }> {
    // Log order is transaction order, so the events past the gate come after every event before
    // it: the batch is the rows up to the first one past the gate.
    const gate = options.appendsExcluded ? 'true' : `transaction_id < ${LOG_GATE}`;
    const result = await sql.query<EventRow & { passed: boolean }>(
      `SELECT ${EVENT_COLUMNS}, ${gate} AS passed FROM events
        WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
        ORDER BY events.transaction_id, events.global_position
        LIMIT $3`,
      [after.transactionId, after.globalPosition, limit],
    );
    const held = result.rows.findIndex((row) => !row.passed);
    const rows = held === -1 ? result.rows : result.rows.slice(0, held);
    const positions = rows.map((row) => ({ transactionId: row.transaction_id, globalPosition: Number(row.global_position) }));
    return { events: rows.map(toEnvelope), last: positions[positions.length - 1] ?? after, positions, heldBack: held !== -1 };
  }

  /**
   * The next `limit` events in (stream, position) order after `after`: every stream whole and
   * in order, one after the other (for audits, which check one stream at a time), with the
   * transaction that wrote each.
   */
  async readStreams(
    after: { streamId: string; position: number },
    limit: number,
    sql: Sql = this.db,
  ): Promise<{ envelope: EventEnvelope; transactionId: string }[]> {
    const { rows } = await sql.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events
        WHERE (stream_id, stream_position) > ($1::uuid, $2::int)
        ORDER BY stream_id, stream_position
        LIMIT $3`,
      [after.streamId, after.position, limit],
    );
    return rows.map((row) => ({ envelope: toEnvelope(row), transactionId: row.transaction_id }));
  }

  /** The log position of a stored event, for readers that resume after a global position. */
  async positionOf(globalPosition: number): Promise<LogPosition | null> {
    const result = await this.db.query<{ transaction_id: string }>(
      `SELECT transaction_id::text AS transaction_id FROM events WHERE global_position = $1`,
      [globalPosition],
    );
    const row = result.rows[0];
    return row ? { transactionId: row.transaction_id, globalPosition } : null;
  }

  /** The stream's version, or 0 if it does not exist. */
  async version(streamId: string, sql: Sql = this.db): Promise<number> {
    const result = await sql.query<{ version: number }>(`SELECT version FROM streams WHERE stream_id = $1`, [streamId]);
    return result.rows[0]?.version ?? 0;
  }

  /** Recomputes a stream's hash chain: names the first position whose stored row does not match. */
  async verifyStream(streamId: string): Promise<ChainCheck> {
    const events = await this.readStream(streamId);
    return verifyChain(events);
  }
}

/** Checks positions are 1..n and each hash covers the event and links to the one before. */
export function verifyChain(events: readonly EventEnvelope[]): ChainCheck {
  let prevHash = GENESIS_HASH;
  for (const [i, event] of events.entries()) {
    const { hash, ...unhashed } = event;
    const reason =
      event.position !== i + 1
        ? `expected position ${i + 1}`
        : event.prevHash !== prevHash
          ? 'prevHash does not match the hash of the event before'
          : hashEvent(unhashed) !== hash
            ? 'hash does not match the event'
            : null;
    if (reason !== null) return { valid: false, eventCount: events.length, brokenAt: event.position, reason };
    prevHash = hash;
  }
  return { valid: true, eventCount: events.length };
}
