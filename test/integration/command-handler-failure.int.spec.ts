import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../src/common/clock';
import { UuidV7Generator } from '../../src/common/ids';
import type { DomainEvent, EventMetadata } from '../../src/events/envelope';
import { Database } from '../../src/modules/database/database';
import { type Command, CommandHandler } from '../../src/modules/event-store/command-handler';
import { CommitSignal } from '../../src/modules/event-store/commit-signal';
import { EventStore } from '../../src/modules/event-store/event-store';
import type { Sql } from '../../src/modules/database/db';
import { createTestDatabase, type TestDatabase } from '../support/postgres';

type CounterEvent = DomainEvent<'Incremented', { by: number }>;
interface Counter {
  n: number;
}
const evolve = (state: Counter | null, event: CounterEvent): Counter => ({ n: (state?.n ?? 0) + event.data.by });
const meta: EventMetadata = { correlationId: 'c', causationId: null, actor: 'system' };

/**
 * A command whose transaction fails after its append (an inline view that throws, a statement
 * the database refuses): nothing of it commits, the caller gets the error, and the handler's
 * cache does not keep the state it would have had: the next command reads the stream and
 * appends at the right version, on the right hash.
 */
describe('CommandHandler: a transaction that fails after the append', () => {
  let testDb: TestDatabase;
  let database: Database;
  let store: EventStore;
  let handler: CommandHandler;
  let commits: number;
  let reads: number;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 4, dataDir: '' });
    const clock = new ManualClock('2026-03-01T10:00:00.000Z');
    store = new EventStore(database.db, clock, new UuidV7Generator(clock));
    const readStream = store.readStream.bind(store);
    store.readStream = (...args: Parameters<EventStore['readStream']>) => {
      reads++;
      return readStream(...args);
    };
    const signal = new CommitSignal();
    const committed = signal.committed.bind(signal);
    signal.committed = () => {
      commits++;
      committed();
    };
    handler = new CommandHandler(database.db, store, signal);
  });
  beforeEach(() => {
    reads = 0;
    commits = 0;
  });
  afterAll(async () => {
    await database.close();
    await testDb.drop();
  });

  const increment = (id: string, by: number, project?: (tx: Sql) => Promise<void>) =>
    handler.execute({
      stream: { id, type: 'counter' },
      evolve,
      decide: () => [{ type: 'Incremented', schemaVersion: 1, data: { by } }],
      project: project === undefined ? undefined : (tx) => project(tx),
      metadata: meta,
    } satisfies Command<Counter, CounterEvent>);

  const failures: [string, (tx: Sql) => Promise<void>, RegExp][] = [
    [
      'an inline view that throws',
      async () => {
        throw new Error('the view could not be written');
      },
      /the view could not be written/,
    ],
    ['a statement the database refuses', async (tx) => void (await tx.query('SELECT 1 / 0')), /division by zero/],
  ];

  it.each(failures)('%s: nothing commits, and the next command reads the stream and appends after what did', async (_name, fail, message) => {
    const id = randomUUID();
    await increment(id, 1);
    await increment(id, 2);
    expect(reads).toBe(1); // the first command looked; the second went on what it had just written
    commits = 0;

    await expect(increment(id, 100, fail)).rejects.toThrow(message);
    // Nothing of it: not in the log, no commit signalled.
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }, { by: 2 }]);
    expect(commits).toBe(0);

    // The cache was dropped: the next command reads the stream (not the state with 100 folded
    // in at version 3) and appends at version 3 on the real head.
    reads = 0;
    const result = await increment(id, 10);
    expect(reads).toBe(1);
    expect(result).toMatchObject({ state: { n: 13 }, version: 3 });
    expect(commits).toBe(1);
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }, { by: 2 }, { by: 10 }]);
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 3 });
  });

  it('a new stream whose first command fails stays empty, and a later first command starts it at version 1', async () => {
    const id = randomUUID();
    await expect(increment(id, 5, failures[0][1])).rejects.toThrow(failures[0][2]);
    expect(await store.readStream(id)).toEqual([]);
    const result = await increment(id, 7);
    expect(result).toMatchObject({ state: { n: 7 }, version: 1 });
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 1 });
  });
});
