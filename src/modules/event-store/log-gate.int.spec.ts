import { randomUUID } from 'node:crypto';
import type { PoolClient } from 'pg';
import { ManualClock } from '../../common/clock';
import { UuidV7Generator } from '../../common/ids';
import type { DomainEvent, EventEnvelope, EventMetadata } from '../../events/envelope';
import { type TestDatabase, createTestDatabase, transactionElsewhere } from '../../../test/support/postgres';
import { Database } from '../database/database';
import type { Sql } from '../database/db';
import { EventStore, LOG_START, type LogPosition } from './event-store';

/**
 * The gate of the log's readers (EventStore.readAll) is this database's own: a transaction open
 * in another database of the same server holds no reader back, and a writer of this database
 * still in progress is never passed.
 */
const meta: EventMetadata = { correlationId: 'c-1', causationId: null, actor: 'system' };
const ev = (n: number): DomainEvent<'Counted', { n: number }> => ({ type: 'Counted', schemaVersion: 1, data: { n } });

/** A small deterministic generator, so a failing interleaving can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

let testDb: TestDatabase;
let database: Database;
let store: EventStore;
const clock = new ManualClock('2026-03-01T10:00:00.000Z');

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 12, dataDir: '' });
  store = new EventStore(database.db, clock, new UuidV7Generator(clock));
});
afterAll(async () => {
  await database.close();
  await testDb.drop();
});

/** SQL on one held connection, for a transaction the test opens and ends itself. */
const sqlOn = (client: PoolClient): Sql => ({
  query: async <T>(text: string, params: readonly unknown[] = []) => {
    const result = await client.query(text, params as unknown[]);
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  },
});

/** Reads from `from` as far as the gate lets a reader go now. */
async function readToGate(from: LogPosition): Promise<{ events: EventEnvelope[]; last: LogPosition; heldBack: boolean }> {
  const events: EventEnvelope[] = [];
  let last = from;
  for (;;) {
    const batch = await store.readAll(last, 100);
    events.push(...batch.events);
    last = batch.last;
    if (batch.events.length < 100) return { events, last, heldBack: batch.heldBack };
  }
}

/**
 * Reads from `from` until `count` events have come (or 5 s): a transaction of this database's
 * own autovacuum (ANALYZE writes statistics) may hold the gate for a moment, as it must.
 */
async function readUntil(from: LogPosition, count: number): Promise<{ events: EventEnvelope[]; last: LogPosition }> {
  const events: EventEnvelope[] = [];
  let last = from;
  for (const deadline = Date.now() + 5_000; events.length < count && Date.now() < deadline; ) {
    const batch = await store.readAll(last, 100);
    events.push(...batch.events);
    last = batch.last;
    if (batch.events.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { events, last };
}

const appendNow = (events: DomainEvent[]) =>
  database.db.transaction((tx) => store.append(tx, { id: randomUUID(), type: 'counter' }, 0, events, meta));

it('lets readers past a write transaction open in another database of the server', async () => {
  const start = (await readToGate(LOG_START)).last;
  const elsewhere = await transactionElsewhere();
  try {
    const { envelopes } = await appendNow([ev(1)]);
    const read = await readUntil(start, 1);
    // The other transaction is older than the event and still running: the server-wide horizon
    // (pg_snapshot_xmin) would hold the event back until it ends.
    const { rows } = await database.db.query<{ running: boolean; older: boolean }>(
      `SELECT $1::xid8 IN (SELECT pg_snapshot_xip(pg_current_snapshot())) AS running, $1::xid8 < $2::xid8 AS older`,
      [elsewhere.xid, read.last.transactionId],
    );
    expect(rows[0]).toEqual({ running: true, older: true });
    expect(read.events.map((e) => e.id)).toEqual([envelopes[0].id]);
    // ... and the other transaction was still open after the read.
    await expect(
      database.db.query(`SELECT 1 FROM pg_stat_activity WHERE backend_xid = $1::xid8::xid`, [elsewhere.xid]).then((r) => r.rowCount),
    ).resolves.toBe(1);
  } finally {
    await elsewhere.end();
  }
});

it('still holds readers back behind a write transaction of this database', async () => {
  const start = (await readToGate(LOG_START)).last;
  const blocker = await database.db.pool.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query('SELECT pg_current_xact_id()');
    const { envelopes } = await appendNow([ev(2)]);
    const held = await readToGate(start);
    expect(held.events).toEqual([]);
    expect(held.heldBack).toBe(true);
    await blocker.query('COMMIT');
    expect((await readUntil(start, 1)).events.map((e) => e.id)).toEqual([envelopes[0].id]);
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    blocker.release();
  }
});

/**
 * Writers of this database and of another one open, write, commit or roll back in a random order
 * while a reader follows the log in batches of random sizes. After every read the reader is
 * behind every writer of this database still in progress (it never passed one), and in the end
 * it has read every committed event once, in log order.
 */
it('never passes a writer of this database in progress, under random interleavings with writers elsewhere', async () => {
  const next = random(Number(process.env.RUNWAY_TEST_SEED ?? 20261208));
  let position = (await readToGate(LOG_START)).last;
  const read: EventEnvelope[] = [];
  const committed: string[] = [];
  type Local = { client: PoolClient; open: null | { xid: string; ids: string[] } };
  const locals: Local[] = [];
  for (let i = 0; i < 4; i++) locals.push({ client: await database.db.pool.connect(), open: null });
  const others: ({ xid: string; end: () => Promise<void> } | null)[] = [null, null, null];
  let passedOtherOpenTransactions = 0;
  try {
    for (let step = 0; step < 300; step++) {
      const roll = next();
      if (roll < 0.45) {
        const local = locals[Math.floor(next() * locals.length)];
        if (local.open === null) {
          await local.client.query('BEGIN');
          const sql = sqlOn(local.client);
          const ids: string[] = [];
          // One or two new streams in the transaction: its first write gives it its id.
          for (let k = next() < 0.3 ? 2 : 1; k > 0; k--) {
            const { envelopes } = await store.append(sql, { id: randomUUID(), type: 'counter' }, 0, [ev(step)], meta);
            ids.push(envelopes[0].id);
          }
          const { rows } = await local.client.query<{ xid: string }>(`SELECT pg_current_xact_id()::text AS xid`);
          local.open = { xid: rows[0].xid, ids };
        } else if (next() < 0.75) {
          await local.client.query('COMMIT');
          committed.push(...local.open.ids);
          local.open = null;
        } else {
          await local.client.query('ROLLBACK');
          local.open = null;
        }
      } else if (roll < 0.65) {
        const i = Math.floor(next() * others.length);
        const other = others[i];
        if (other === null) others[i] = await transactionElsewhere();
        else {
          await other.end();
          others[i] = null;
        }
      } else {
        const batch = await store.readAll(position, 1 + Math.floor(next() * 6));
        read.push(...batch.events);
        position = batch.last;
        for (const local of locals) {
          if (local.open === null) continue;
          expect({ step, position: BigInt(position.transactionId) < BigInt(local.open.xid) }).toEqual({ step, position: true });
        }
        if (batch.events.some((e) => others.some((o) => o !== null && BigInt(o.xid) < BigInt(positionOf(batch, e))))) passedOtherOpenTransactions++;
      }
    }
  } finally {
    for (const local of locals) {
      if (local.open !== null) {
        await local.client.query('COMMIT');
        committed.push(...local.open.ids);
      }
      local.client.release();
    }
    for (const other of others) await other?.end();
  }
  read.push(...(await readUntil(position, committed.length - read.length)).events);
  const { rows } = await database.db.query<{ id: string }>(
    `SELECT id FROM events WHERE id = ANY($1::uuid[]) ORDER BY transaction_id, global_position`,
    [committed],
  );
  expect(rows).toHaveLength(committed.length);
  // Every committed event once, in log order, and nothing else (the rolled back never appear).
  expect(read.map((e) => e.id)).toEqual(rows.map((r) => r.id));
  // The case the gate is for came up: events read past a transaction open in the other database.
  expect(passedOtherOpenTransactions).toBeGreaterThan(5);
});

/** The transaction id of an event of `batch`, from the positions readAll gives with it. */
function positionOf(batch: { events: EventEnvelope[]; positions: LogPosition[] }, event: EventEnvelope): string {
  return batch.positions[batch.events.indexOf(event)].transactionId;
}
