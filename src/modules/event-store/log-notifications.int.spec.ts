import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { UuidV7Generator } from '../../common/ids';
import type { EventMetadata } from '../../events/envelope';
import { type TestDatabase, createTestDatabase } from '../../../test/support/postgres';
import { poolBackends } from '../database/data-source';
import { Database } from '../database/database';
import { CommitSignal } from './commit-signal';
import { EventStore } from './event-store';
import { type LeaderSession, SoleLeadership } from './leadership';
import { LogFollower } from './log-follower';
import { LogNotifications } from './log-notifications';

/**
 * Commits of other processes wake this process's readers of the log: the trigger of migration 9
 * notifies `runway_log`, LogNotifications listens and rings the CommitSignal.
 */
const meta: EventMetadata = { correlationId: 'c-1', causationId: null, actor: 'system' };
const clock = new ManualClock('2026-03-01T10:00:00.000Z');

let testDb: TestDatabase;
/** This process's database, and "another process's": a pool and a store of its own, no shared signal. */
let here: Database;
let elsewhere: Database;
let otherStore: EventStore;

beforeAll(async () => {
  testDb = await createTestDatabase();
  here = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 4, dataDir: '' });
  elsewhere = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 2, dataDir: '' });
  otherStore = new EventStore(elsewhere.db, clock, new UuidV7Generator(clock));
});
afterAll(async () => {
  await here.close();
  await elsewhere.close();
  await testDb.drop();
});

const appendElsewhere = () =>
  elsewhere.db.transaction((tx) => otherStore.append(tx, { id: randomUUID(), type: 'counter' }, 0, [{ type: 'Counted', schemaVersion: 1, data: { n: 1 } }], meta));

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; !condition(); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

it('wakes a reader whose poll is a minute away as soon as another process commits an append', async () => {
  const signal = new CommitSignal();
  const notifications = new LogNotifications(testDb.url, signal, { retryInitialMs: 20, retryMaxMs: 100 });
  const handled: string[] = [];
  const follower = new LogFollower(
    new EventStore(here.db, clock, new UuidV7Generator(clock)),
    new SoleLeadership(here.db),
    { handle: async (_session: LeaderSession, batch) => void handled.push(...batch.events.map((e) => e.id)) },
    { name: 'notify-test', batchSize: 100, idlePollMs: 60_000, leaderRetryMs: 60_000, retryInitialMs: 100, retryMaxMs: 1_000 },
  );
  const unlisten = signal.listen(() => follower.notify());
  notifications.start();
  try {
    await waitFor(() => notifications.listening, 'the listener');
    follower.start();
    // The follower's first read finds nothing, then it waits a minute unless rung.
    await waitFor(() => follower.status().checkpoint !== null, 'the follower to start');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { envelopes } = await appendElsewhere();
    await waitFor(() => handled.includes(envelopes[0].id), 'the follower to handle the commit made elsewhere', 3_000);
    expect(notifications.heard).toBeGreaterThanOrEqual(1);
  } finally {
    unlisten();
    await follower.stop();
    await notifications.stop();
  }
});

it('listens again after its connection is cut, rings on the way back, and hears the next commit', async () => {
  const signal = new CommitSignal();
  let rings = 0;
  signal.listen(() => rings++);
  const notifications = new LogNotifications(testDb.url, signal, { retryInitialMs: 20, retryMaxMs: 100 });
  notifications.start();
  try {
    await waitFor(() => notifications.listening, 'the listener');
    const before = rings;
    const { rows } = await here.db.query<{ n: string }>(
      `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'runway-listen'`,
    );
    expect(Number(rows[0].n)).toBe(1);
    await waitFor(() => !notifications.listening, 'the cut to be seen');
    await waitFor(() => notifications.listening, 'the listener to come back');
    // Commits may have gone unheard while it was away: it rang the readers once it was back.
    expect(rings).toBeGreaterThan(before);
    const heard = notifications.heard;
    await appendElsewhere();
    await waitFor(() => notifications.heard > heard, 'the next commit to be heard');
  } finally {
    await notifications.stop();
  }
  expect(notifications.listening).toBe(false);
  // Stopped: nothing listens on the database any more.
  const { rows } = await here.db.query<{ n: string }>(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'runway-listen'`,
  );
  expect(Number(rows[0].n)).toBe(0);
});

it('is not heard from a rolled back append, only from what commits', async () => {
  const signal = new CommitSignal();
  const notifications = new LogNotifications(testDb.url, signal, { retryInitialMs: 20, retryMaxMs: 100 });
  notifications.start();
  try {
    await waitFor(() => notifications.listening, 'the listener');
    const heard = notifications.heard;
    await elsewhere.db
      .transaction(async (tx) => {
        await otherStore.append(tx, { id: randomUUID(), type: 'counter' }, 0, [{ type: 'Counted', schemaVersion: 1, data: { n: 2 } }], meta);
        throw new Error('roll back');
      })
      .catch(() => undefined);
    // Two appends in one transaction: one notification, at its commit.
    await elsewhere.db.transaction(async (tx) => {
      for (let i = 0; i < 2; i++) {
        await otherStore.append(tx, { id: randomUUID(), type: 'counter' }, 0, [{ type: 'Counted', schemaVersion: 1, data: { n: i } }], meta);
      }
    });
    await waitFor(() => notifications.heard > heard, 'the commit to be heard');
    // A second commit's notification comes after the first's: once it is here, nothing else was.
    await appendElsewhere();
    await waitFor(() => notifications.heard > heard + 1, 'the second commit to be heard');
    expect(notifications.heard).toBe(heard + 2);
  } finally {
    await notifications.stop();
  }
});

it("leaves out its own pool's commits (the process rang for them itself) and hears the others'", async () => {
  const signal = new CommitSignal();
  const notifications = new LogNotifications(testDb.url, signal, { retryInitialMs: 20, retryMaxMs: 100 }, poolBackends(here.db.pool));
  const ownStore = new EventStore(here.db, clock, new UuidV7Generator(clock));
  notifications.start();
  try {
    await waitFor(() => notifications.listening, 'the listener');
    const heard = notifications.heard;
    await here.db.transaction((tx) =>
      ownStore.append(tx, { id: randomUUID(), type: 'counter' }, 0, [{ type: 'Counted', schemaVersion: 1, data: { n: 3 } }], meta),
    );
    expect(poolBackends(here.db.pool).size).toBeGreaterThan(0);
    // Notifications come in commit order: once the other process's is here, ours would have been.
    await appendElsewhere();
    await waitFor(() => notifications.heard > heard, 'the commit made elsewhere to be heard');
    expect(notifications.heard).toBe(heard + 1);
  } finally {
    await notifications.stop();
  }
});
