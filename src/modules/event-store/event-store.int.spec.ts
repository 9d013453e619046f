import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { ConcurrencyError } from '../../common/errors';
import { UuidV7Generator } from '../../common/ids';
import type { DomainEvent, EventMetadata } from '../../events/envelope';
import { GENESIS_HASH, hashEvent } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { Database } from '../database/database';
import { EventStore, LOG_START, type LogPosition } from './event-store';

const meta: EventMetadata = { correlationId: 'c-1', causationId: null, actor: 'system' };
const ev = (n: number): DomainEvent<'Counted', { n: number }> => ({ type: 'Counted', schemaVersion: 1, data: { n } });

describe('EventStore (PostgreSQL)', () => {
  let testDb: TestDatabase;
  let database: Database;
  let store: EventStore;
  const clock = new ManualClock('2026-03-01T10:00:00.000Z');

  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 24, dataDir: '' });
    store = new EventStore(database.db, clock, new UuidV7Generator(clock));
  });
  afterAll(async () => {
    await database.close();
    await testDb.drop();
  });

  const newStream = () => ({ id: randomUUID(), type: 'counter' });
  const appendNow = (stream: { id: string; type: string }, expected: number, events: DomainEvent[]) =>
    database.db.transaction((tx) => store.append(tx, stream, expected, events, meta));

  it('appends to a new stream and reads it back as the envelopes of docs/protocol.md', async () => {
    const stream = newStream();
    const { nextVersion, envelopes } = await appendNow(stream, 0, [ev(1), ev(2)]);
    expect(nextVersion).toBe(2);
    const read = await store.readStream(stream.id);
    expect(read).toEqual(envelopes);
    expect(read.map((e) => e.position)).toEqual([1, 2]);
    expect(read[0]).toMatchObject({
      streamId: stream.id,
      streamType: 'counter',
      type: 'Counted',
      schemaVersion: 1,
      data: { n: 1 },
      metadata: meta,
      occurredAt: '2026-03-01T10:00:00.000Z',
      prevHash: GENESIS_HASH,
    });
    expect(read[1].prevHash).toBe(read[0].hash);
    expect(read[1].globalPosition).toBeGreaterThan(read[0].globalPosition);
    const { hash, ...rest } = read[1];
    expect(hashEvent(rest)).toBe(hash);
    await expect(store.verifyStream(stream.id)).resolves.toEqual({ valid: true, eventCount: 2 });
  });

  describe('one event in one statement (the caller names the head it read)', () => {
    const appendOne = (stream: { id: string; type: string }, expected: number, event: DomainEvent, prevHash: string) =>
      database.db.transaction((tx) => store.append(tx, stream, expected, [event], meta, { prevHash }));
    // Non-ASCII text, escapes and nesting: PostgreSQL must hash exactly the bytes hashEvent does.
    const odd = (n: number): DomainEvent => ({
      type: 'Counted',
      schemaVersion: 1,
      data: { n, text: 'Grüße, 日本語, emoji 🚀, "quoted" \\ back\nslash', nested: { z: [1, 2.5, null], a: true } },
    });

    it('computes in PostgreSQL the hash hashEvent computes, on a new and an existing stream', async () => {
      const stream = newStream();
      let head = GENESIS_HASH;
      for (let version = 0; version < 3; version++) {
        const { nextVersion, envelopes } = await appendOne(stream, version, odd(version), head);
        expect(nextVersion).toBe(version + 1);
        const { hash, ...rest } = envelopes[0];
        expect(hashEvent(rest)).toBe(hash);
        expect(envelopes[0].prevHash).toBe(head);
        head = hash;
      }
      const read = await store.readStream(stream.id);
      expect(read.map((e) => e.hash)).toEqual(read.map((e) => hashEvent({ ...e, hash: undefined } as never)));
      await expect(store.verifyStream(stream.id)).resolves.toEqual({ valid: true, eventCount: 3 });
      // The stream's head is the last event's hash, so the two-statement path links on from it.
      await appendNow(stream, 3, [ev(4), ev(5)]);
      await expect(store.verifyStream(stream.id)).resolves.toEqual({ valid: true, eventCount: 5 });
    });

    it('refuses a stale version or a head that is not the one read, and writes nothing', async () => {
      const stream = newStream();
      const first = (await appendOne(stream, 0, ev(1), GENESIS_HASH)).envelopes[0];
      await expect(appendOne(stream, 0, ev(2), GENESIS_HASH)).rejects.toBeInstanceOf(ConcurrencyError);
      await expect(appendOne(stream, 2, ev(2), first.hash)).rejects.toMatchObject({ code: 'concurrency_conflict', actualVersion: 1 });
      await expect(appendOne(stream, 1, ev(2), GENESIS_HASH)).rejects.toThrow(/its head is not the event the caller read/);
      expect((await store.readStream(stream.id)).map((e) => e.data)).toEqual([{ n: 1 }]);
      expect(await store.version(stream.id)).toBe(1);
    });

    it('lets exactly one of two racing writers win', async () => {
      const stream = newStream();
      const first = (await appendOne(stream, 0, ev(0), GENESIS_HASH)).envelopes[0];
      const results = await Promise.allSettled([appendOne(stream, 1, ev(1), first.hash), appendOne(stream, 1, ev(2), first.hash)]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(lost).toHaveLength(1);
      expect(lost[0].reason).toBeInstanceOf(ConcurrencyError);
      await expect(store.verifyStream(stream.id)).resolves.toEqual({ valid: true, eventCount: 2 });
    });

    it('must still be the first write of its transaction', async () => {
      const stream = newStream();
      const first = (await appendOne(stream, 0, ev(0), GENESIS_HASH)).envelopes[0];
      const other = newStream();
      await expect(
        database.db.transaction(async (tx) => {
          await store.append(tx, other, 0, [ev(1)], meta);
          await store.append(tx, stream, 1, [ev(1)], meta, { prevHash: first.hash });
        }),
      ).rejects.toThrow(/must be the first write of its transaction/);
      expect(await store.version(stream.id)).toBe(1);
      expect(await store.version(other.id)).toBe(0);
    });
  });

  it('refuses an append at a stale or future version with a ConcurrencyError and writes nothing', async () => {
    const stream = newStream();
    await appendNow(stream, 0, [ev(1)]);
    for (const expected of [0, 2, 5]) {
      const error = await appendNow(stream, expected, [ev(9)]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConcurrencyError);
      expect(error).toMatchObject({ code: 'concurrency_conflict', streamId: stream.id, actualVersion: 1 });
    }
    expect((await store.readStream(stream.id)).map((e) => e.data)).toEqual([{ n: 1 }]);
    expect(await store.version(stream.id)).toBe(1);
  });

  it('lets exactly one of two racing writers win, on a new and on an existing stream', async () => {
    for (const initial of [0, 1]) {
      const stream = newStream();
      if (initial > 0) await appendNow(stream, 0, [ev(0)]);
      const results = await Promise.allSettled([appendNow(stream, initial, [ev(1)]), appendNow(stream, initial, [ev(2)])]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0].reason).toBeInstanceOf(ConcurrencyError);
      expect(await store.version(stream.id)).toBe(initial + 1);
    }
  });

  it('keeps versions gapless and unique under many concurrent appenders that retry', async () => {
    const stream = newStream();
    const writers = 16;
    const appendsEach = 8;
    let conflicts = 0;
    const writer = async (w: number) => {
      for (let i = 0; i < appendsEach; i++) {
        for (;;) {
          const version = await store.version(stream.id);
          try {
            await appendNow(stream, version, [{ type: 'Counted', schemaVersion: 1, data: { w, i } }]);
            break;
          } catch (error) {
            if (!(error instanceof ConcurrencyError)) throw error;
            conflicts++;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
    const events = await store.readStream(stream.id);
    expect(events.map((e) => e.position)).toEqual(Array.from({ length: writers * appendsEach }, (_, i) => i + 1));
    // every write landed exactly once
    const keys = new Set(events.map((e) => JSON.stringify(e.data)));
    expect(keys.size).toBe(writers * appendsEach);
    expect(conflicts).toBeGreaterThan(0);
    await expect(store.verifyStream(stream.id)).resolves.toMatchObject({ valid: true });
  });

  it('does not let a reader skip a slow transaction that holds a lower global position', async () => {
    const before = await drain(LOG_START);
    const slow = newStream();
    const fast = newStream();
    let releaseSlow!: () => void;
    const slowMayCommit = new Promise<void>((resolve) => (releaseSlow = resolve));
    let slowAppended!: () => void;
    const slowHasAppended = new Promise<void>((resolve) => (slowAppended = resolve));
    const slowTx = database.db.transaction(async (tx) => {
      const result = await store.append(tx, slow, 0, [ev(1)], meta);
      slowAppended();
      await slowMayCommit;
      return result;
    });
    await slowHasAppended;
    const fastResult = await appendNow(fast, 0, [ev(2)]);

    // The fast event is committed with a higher position, but the slow one may still commit below it.
    const whileSlowRuns = await store.readAll(before, 100);
    expect(whileSlowRuns.events.map((e) => e.streamId)).not.toContain(fast.id);
    // ... and the reader is told that a committed event waits behind the gate.
    expect(whileSlowRuns.heldBack).toBe(true);

    releaseSlow();
    const slowResult = await slowTx;
    expect(slowResult.envelopes[0].globalPosition).toBeLessThan(fastResult.envelopes[0].globalPosition);
    // Both are committed now. The gate is this database's own (other test files' transactions
    // do not hold it), but a transaction of this database's own autovacuum (ANALYZE writes
    // statistics) may for a moment: read on until both have come, slow first.
    const ours = new Set<string>([slow.id, fast.id]);
    const read: string[] = [];
    let position = whileSlowRuns.last;
    for (const deadline = Date.now() + 5_000; read.length < 2 && Date.now() < deadline; ) {
      const batch = await store.readAll(position, 100);
      read.push(...batch.events.map((e) => e.streamId).filter((id) => ours.has(id)));
      position = batch.last;
      if (batch.events.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(read).toEqual([slow.id, fast.id]);
  });

  it('reads the whole log in batches, every event once, each stream in version order', async () => {
    const start = await drain(LOG_START);
    const streams = Array.from({ length: 10 }, newStream);
    await Promise.all(
      streams.map(async (stream) => {
        for (let v = 0; v < 5; v++) await appendNow(stream, v, [ev(v)]);
      }),
    );
    const seen: { streamId: string; position: number }[] = [];
    let position = start;
    // All 50 are committed; the gate is this database's own, but its autovacuum's ANALYZE may
    // hold it for a moment. An empty batch then means "not yet": read on until the 50 came.
    const deadline = Date.now() + 5_000;
    while (seen.length < 50 && Date.now() < deadline) {
      const batch = await store.readAll(position, 7);
      if (batch.events.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      seen.push(...batch.events.map((e) => ({ streamId: e.streamId, position: e.position })));
      position = batch.last;
    }
    // Nothing more than the 50, and nothing twice.
    expect((await store.readAll(position, 7)).events).toEqual([]);
    expect(seen).toHaveLength(50);
    for (const stream of streams) {
      expect(seen.filter((e) => e.streamId === stream.id).map((e) => e.position)).toEqual([1, 2, 3, 4, 5]);
    }
    const resumed = await store.positionOf(position.globalPosition);
    expect(resumed).toEqual(position);
  });

  it('orders the log by transaction id as a number, across a power of ten (e.g. 99995 .. 100004)', async () => {
    // Rows as transactions around the largest power of ten the server's transaction ids have
    // passed would have written them (inserted directly: ids cannot be chosen), so they sort
    // differently as text ('100000' < '99995') and are all older than any snapshot.
    const { rows } = await database.db.query<{ xid: string }>(`SELECT pg_current_xact_id()::text AS xid`);
    const power = 10 ** Math.floor(Math.log10(Number(rows[0].xid) - 10));
    const first = power - 5;
    const stream = newStream();
    await database.db.query(
      `INSERT INTO events (global_position, transaction_id, id, stream_id, stream_type, stream_position, type,
         schema_version, data, metadata, occurred_at, hash, prev_hash)
       SELECT nextval('events_global_position_seq'), ($2::bigint - 1 + n)::text::xid8, gen_random_uuid(), $1, 'counter', n,
              'Counted', 1, jsonb_build_object('n', n), '{}', now(), repeat('0', 64), repeat('0', 64)
         FROM generate_series(1, 10) AS n`,
      [stream.id, first],
    );
    const seen: number[] = [];
    let position: LogPosition = { transactionId: String(first - 1), globalPosition: 0 };
    while (seen.length < 10) {
      const batch = await store.readAll(position, 4);
      expect(batch.events.length).toBeGreaterThan(0);
      seen.push(...batch.events.filter((e) => e.streamId === stream.id).map((e) => e.position));
      position = batch.last;
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('detects a changed row with the chain check and names the position', async () => {
    const stream = newStream();
    await appendNow(stream, 0, [ev(1), ev(2), ev(3)]);
    // Runway never changes an event; simulate someone with superuser rights doing it.
    await database.db.transaction(async (tx) => {
      await tx.query('ALTER TABLE events DISABLE TRIGGER events_append_only');
      await tx.query(`UPDATE events SET data = '{"n": 20}' WHERE stream_id = $1 AND stream_position = 2`, [stream.id]);
      await tx.query('ALTER TABLE events ENABLE TRIGGER events_append_only');
    });
    await expect(store.verifyStream(stream.id)).resolves.toMatchObject({ valid: false, brokenAt: 2, eventCount: 3 });
  });

  it('refuses updates and deletes of events at the database', async () => {
    const stream = newStream();
    await appendNow(stream, 0, [ev(1)]);
    await expect(database.db.query(`UPDATE events SET type = 'X' WHERE stream_id = $1`, [stream.id])).rejects.toThrow(/append-only/);
    await expect(database.db.query(`DELETE FROM events WHERE stream_id = $1`, [stream.id])).rejects.toThrow(/append-only/);
    await expect(database.db.query(`TRUNCATE events`)).rejects.toThrow(/append-only/);
  });

  async function drain(from: LogPosition): Promise<LogPosition> {
    let position = from;
    for (;;) {
      const batch = await store.readAll(position, 1000);
      if (batch.events.length === 0) return position;
      position = batch.last;
    }
  }
});
