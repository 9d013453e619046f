import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { ConcurrencyError } from '../../common/errors';
import { UuidV7Generator } from '../../common/ids';
import { type DomainEvent, type EventEnvelope, type EventMetadata, GENESIS_HASH } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { Database } from '../database/database';
import type { InlineWrite } from '../database/inline-write';
import { EventStore, LOG_START, type LogPosition } from './event-store';
import { GroupCommit } from './group-commit';

const meta: EventMetadata = { correlationId: 'c-1', causationId: null, actor: 'system' };
const ev = (data: Record<string, unknown>): DomainEvent => ({ type: 'Counted', schemaVersion: 1, data });
const counter = () => ({ id: randomUUID(), type: 'counter' });

/** Records a value with each event that goes in; refuses a value of 1,000 or more. */
const PROBE_SQL: InlineWrite['sql'] = (rows, wentIn) =>
  `INSERT INTO group_probe (stream_id, n) SELECT p.stream_id, p.n FROM jsonb_to_recordset(${rows}) AS p(stream_id uuid, n int) WHERE ${wentIn('p.stream_id')}`;
const probe = (streamId: string, n: number): InlineWrite[] => [{ name: 'probe', rows: [{ stream_id: streamId, n }], sql: PROBE_SQL }];

let testDb: TestDatabase;
let database: Database;
let store: EventStore;

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 16, dataDir: '' });
  const clock = new ManualClock('2026-03-01T10:00:00.000Z');
  store = new EventStore(database.db, clock, new UuidV7Generator(clock));
  await database.db.query(`CREATE TABLE group_probe (stream_id uuid NOT NULL, n int NOT NULL CHECK (n < 1000))`);
});
afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const probed = async (streamId: string) =>
  (await database.db.query<{ n: number }>(`SELECT n FROM group_probe WHERE stream_id = $1 ORDER BY n`, [streamId])).rows.map((r) => r.n);

/** The stream's head as a writer reads it: its version and the hash of its last event. */
async function head(streamId: string): Promise<{ version: number; prevHash: string }> {
  const events = await store.readStream(streamId);
  return { version: events.length, prevHash: events[events.length - 1]?.hash ?? GENESIS_HASH };
}

describe('EventStore.appendEach: one event to each of several streams, in one statement', () => {
  it('appends those at their expected head and refuses the others, whose writes do not happen', async () => {
    const [fresh, current, stale] = [counter(), counter(), counter()];
    for (const stream of [current, stale]) await database.db.transaction((tx) => store.append(tx, stream, 0, [ev({ n: 0 })], meta));
    const staleHead = await head(stale.id);
    await database.db.transaction((tx) => store.append(tx, stale, 1, [ev({ n: 1 })], meta, { prevHash: staleHead.prevHash }));

    const currentHead = await head(current.id);
    const results = await store.appendEach(
      database.db,
      [
        { stream: fresh, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ n: 10 }), metadata: meta },
        { stream: stale, expectedVersion: 1, prevHash: staleHead.prevHash, event: ev({ n: 11 }), metadata: meta },
        { stream: current, expectedVersion: 1, prevHash: currentHead.prevHash, event: ev({ n: 12 }), metadata: meta },
      ],
      [...probe(fresh.id, 10), ...probe(stale.id, 11), ...probe(current.id, 12)],
    );
    expect(results[0]).toMatchObject({ streamId: fresh.id, position: 1, data: { n: 10 } });
    expect(results[1]).toBeInstanceOf(ConcurrencyError);
    expect(results[1]).toMatchObject({ streamId: stale.id, expectedVersion: 1, actualVersion: 2 });
    expect(results[2]).toMatchObject({ streamId: current.id, position: 2, data: { n: 12 } });
    // What each envelope says is what is stored, and the chains hold.
    for (const stream of [fresh, current]) {
      const stored = await store.readStream(stream.id);
      expect(stored[stored.length - 1]).toEqual(results.find((r) => !(r instanceof ConcurrencyError) && r.streamId === stream.id));
      await expect(store.verifyStream(stream.id)).resolves.toMatchObject({ valid: true });
    }
    expect((await store.readStream(stale.id)).map((e) => e.data)).toEqual([{ n: 0 }, { n: 1 }]);
    expect([await probed(fresh.id), await probed(stale.id), await probed(current.id)]).toEqual([[10], [], [12]]);
  });

  it('refuses a new stream someone else started, and only that one', async () => {
    const [taken, free] = [counter(), counter()];
    await database.db.transaction((tx) => store.append(tx, taken, 0, [ev({ n: 1 })], meta));
    const results = await store.appendEach(database.db, [
      { stream: taken, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ n: 2 }), metadata: meta },
      { stream: free, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ n: 3 }), metadata: meta },
    ], [...probe(taken.id, 2), ...probe(free.id, 3)]);
    expect(results[0]).toBeInstanceOf(ConcurrencyError);
    expect(results[1]).toMatchObject({ streamId: free.id, position: 1 });
    expect(await store.version(taken.id)).toBe(1);
    expect([await probed(taken.id), await probed(free.id)]).toEqual([[], [3]]);
  });
});

describe('GroupCommit', () => {
  it('puts appends that arrive together in one statement, each with its own answer', async () => {
    const group = new GroupCommit(database.db, store);
    const query = database.db.query.bind(database.db);
    let statements = 0;
    database.db.query = ((...args: Parameters<typeof query>) => {
      statements++;
      return query(...args);
    }) as typeof database.db.query;
    try {
      const streams = Array.from({ length: 40 }, counter);
      const envelopes = await Promise.all(
        streams.map((stream, i) => group.append({ stream, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ i }), metadata: meta, inline: probe(stream.id, i) })),
      );
      expect(envelopes.map((e) => [e.streamId, e.data])).toEqual(streams.map((stream, i) => [stream.id, { i }]));
      // The first goes at once, alone; the others wait for it and share a statement or two.
      expect(statements).toBeLessThanOrEqual(4);
      statements = 0;
      for (const [i, stream] of streams.entries()) expect(await probed(stream.id)).toEqual([i]);
    } finally {
      database.db.query = query;
    }
  });

  it('a refused append leaves the others of its statement committed; a write the database refuses fails only its own append', async () => {
    const group = new GroupCommit(database.db, store, { maxGroup: 64, maxInFlight: 1 });
    const streams = Array.from({ length: 8 }, counter);
    for (const stream of streams) await database.db.transaction((tx) => store.append(tx, stream, 0, [ev({ n: 0 })], meta));
    const heads = await Promise.all(streams.map((stream) => head(stream.id)));
    // Hold the only statement slot, so the eight wait and go together.
    const blocker = counter();
    const first = group.append({ stream: blocker, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({}), metadata: meta, inline: [] });
    const results = await Promise.allSettled(
      streams.map((stream, i) =>
        group.append({
          stream,
          // Stream 2 is named at a head it is not at; stream 5's write breaks the probe's CHECK.
          expectedVersion: i === 2 ? 0 : 1,
          prevHash: i === 2 ? GENESIS_HASH : heads[i].prevHash,
          event: ev({ n: i }),
          metadata: meta,
          inline: probe(stream.id, i === 5 ? 5000 : i),
        }),
      ),
    );
    await first;
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
    expect(String((results[5] as PromiseRejectedResult).reason)).toMatch(/group_probe/);
    for (const [i, stream] of streams.entries()) {
      const committed = i !== 2 && i !== 5;
      expect({ i, version: await store.version(stream.id), probed: await probed(stream.id) }).toEqual({ i, version: committed ? 2 : 1, probed: committed ? [i] : [] });
    }
  });

  it('a second append to a stream waits for the next statement', async () => {
    const group = new GroupCommit(database.db, store, { maxGroup: 64, maxInFlight: 1 });
    const stream = counter();
    const blocker = group.append({ stream: counter(), expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({}), metadata: meta, inline: [] });
    const a = group.append({ stream, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ n: 1 }), metadata: meta, inline: [] });
    // Decided on nothing it has seen committed: it goes after a, and finds the stream moved.
    const b = group.append({ stream, expectedVersion: 0, prevHash: GENESIS_HASH, event: ev({ n: 2 }), metadata: meta, inline: [] });
    await blocker;
    await expect(a).resolves.toMatchObject({ position: 1 });
    await expect(b).rejects.toBeInstanceOf(ConcurrencyError);
    expect(await store.version(stream.id)).toBe(1);
  });

  /**
   * The log's order must keep every stream in version order, whoever writes: group statements of
   * several instances and single appends in transactions, racing on the same streams, each
   * writer reading the head and retrying when it moved. Read back in log order (transaction id,
   * then position), every stream's events come 1, 2, 3, ...
   */
  it('keeps every stream in order in the log under racing group statements and single appends', async () => {
    const instances = [new GroupCommit(database.db, store), new GroupCommit(database.db, store), new GroupCommit(database.db, store, { maxGroup: 4, maxInFlight: 1 })];
    const start = await drainPosition(LOG_START);
    const streams = Array.from({ length: 6 }, counter);
    const perWriter = 12;
    let conflicts = 0;
    const writer = async (w: number) => {
      for (let i = 0; i < perWriter; i++) {
        const stream = streams[(w + i) % streams.length];
        for (;;) {
          const { version, prevHash } = await head(stream.id);
          try {
            if (w % 4 === 3) {
              await database.db.transaction((tx) => store.append(tx, stream, version, [ev({ w, i })], meta, { prevHash }));
            } else {
              await instances[w % instances.length].append({ stream, expectedVersion: version, prevHash, event: ev({ w, i }), metadata: meta, inline: [] });
            }
            break;
          } catch (error) {
            if (!(error instanceof ConcurrencyError)) throw error;
            conflicts++;
          }
        }
      }
    };
    const writers = 16;
    await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
    expect(conflicts).toBeGreaterThan(0);

    // Everything committed; read the whole log from `start` in log order.
    const ours = new Set<string>(streams.map((s) => s.id));
    const read: EventEnvelope[] = [];
    let position = start;
    for (const deadline = Date.now() + 20_000; read.length < writers * perWriter && Date.now() < deadline; ) {
      const batch = await store.readAll(position, 50);
      read.push(...batch.events.filter((e) => ours.has(e.streamId)));
      position = batch.last;
      if (batch.events.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(read).toHaveLength(writers * perWriter);
    for (const stream of streams) {
      const positions = read.filter((e) => e.streamId === stream.id).map((e) => e.position);
      expect(positions).toEqual(Array.from({ length: positions.length }, (_, i) => i + 1));
      await expect(store.verifyStream(stream.id)).resolves.toMatchObject({ valid: true, eventCount: positions.length });
    }
  }, 60_000);
});

/** The log position after everything committed so far. */
async function drainPosition(from: LogPosition): Promise<LogPosition> {
  let position = from;
  for (;;) {
    const batch = await store.readAll(position, 1000);
    if (batch.events.length === 0) return position;
    position = batch.last;
  }
}
