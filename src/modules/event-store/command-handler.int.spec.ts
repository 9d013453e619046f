import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import { UuidV7Generator } from '../../common/ids';
import { EventUnion, integer } from '../../events/decode';
import type { DomainEvent, EventMetadata } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { Database } from '../database/database';
import type { Sql } from '../database/db';
import { type Command, CommandHandler } from './command-handler';
import { CommitSignal } from './commit-signal';
import { EventStore } from './event-store';

// A counter that can be closed: small enough to follow, with a refusal and a no-op.
type CounterEvent = DomainEvent<'Incremented', { by: number }> | DomainEvent<'Closed', Record<string, never>>;
interface Counter {
  n: number;
  closed: boolean;
}
type CounterCommand = { type: 'increment'; by: number } | { type: 'close' };

const evolve = (state: Counter | null, event: CounterEvent): Counter => {
  const current = state ?? { n: 0, closed: false };
  return event.type === 'Incremented' ? { ...current, n: current.n + event.data.by } : { ...current, closed: true };
};
const decide = (state: Counter | null, command: CounterCommand): CounterEvent[] => {
  if (state?.closed) {
    if (command.type === 'close') return []; // closing again changes nothing
    throw new InvalidTransitionError('cannot increment a closed counter', { state: 'closed', command: command.type });
  }
  return command.type === 'increment' ? [{ type: 'Incremented', schemaVersion: 1, data: { by: command.by } }] : [{ type: 'Closed', schemaVersion: 1, data: {} }];
};
const meta: EventMetadata = { correlationId: 'c', causationId: null, actor: 'system' };
const COUNTER_EVENTS = new EventUnion<CounterEvent>('counter', {
  Incremented: { schemaVersion: 1, data: { by: integer } },
  Closed: { schemaVersion: 1, data: {} },
});
const decode = COUNTER_EVENTS.decode.bind(COUNTER_EVENTS);

// One database and one store for the file; the store counts its stream reads.
let testDb: TestDatabase;
let database: Database;
let store: EventStore;
let reads: number;

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 8, dataDir: '' });
  const clock = new ManualClock('2026-03-01T10:00:00.000Z');
  store = new EventStore(database.db, clock, new UuidV7Generator(clock));
  const readStream = store.readStream.bind(store);
  store.readStream = (...args: Parameters<EventStore['readStream']>) => {
    reads++;
    return readStream(...args);
  };
});
beforeEach(() => (reads = 0));
afterAll(async () => {
  await database.close();
  await testDb.drop();
});

describe('CommandHandler (PostgreSQL): what it knows of a stream is a guess the append checks', () => {
  /** Two instances of the service on one database, each with its own cache. */
  let a: CommandHandler;
  let b: CommandHandler;

  beforeAll(() => {
    a = new CommandHandler(database.db, store, new CommitSignal());
    b = new CommandHandler(database.db, store, new CommitSignal());
  });

  const on = (id: string, command: CounterCommand, options?: { newStream?: boolean }) => ({
    run: (handler: CommandHandler) =>
      handler.execute(
        {
          stream: { id, type: 'counter' },
          evolve,
          decode,
          decide: (state: Counter | null) => decide(state, command),
          metadata: meta,
        } satisfies Command<Counter, CounterEvent>,
        options,
      ),
  });

  it('does not read a stream it just wrote (nor a new one)', async () => {
    const id = randomUUID();
    await on(id, { type: 'increment', by: 1 }, { newStream: true }).run(a);
    await on(id, { type: 'increment', by: 2 }).run(a);
    const result = await on(id, { type: 'increment', by: 3 }).run(a);
    expect(result).toMatchObject({ state: { n: 6, closed: false }, version: 3 });
    expect(reads).toBe(0);
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 3 });
  });

  it('decides again on the stream as read when another instance wrote it since', async () => {
    const id = randomUUID();
    await on(id, { type: 'increment', by: 1 }).run(a);
    await on(id, { type: 'increment', by: 10 }).run(b);
    // a still holds version 1: its append is refused, and it reads and decides again.
    const result = await on(id, { type: 'increment', by: 100 }).run(a);
    expect(result).toMatchObject({ state: { n: 111 }, version: 3 });
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }, { by: 10 }, { by: 100 }]);
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 3 });
  });

  it('does not refuse on a guess: a refusal or a no-op is decided again on the stream as read', async () => {
    const id = randomUUID();
    await on(id, { type: 'increment', by: 1 }).run(a);
    await on(id, { type: 'close' }).run(b);
    // a's guess says open: it must refuse as the stream says, not append.
    await expect(on(id, { type: 'increment', by: 1 }).run(a)).rejects.toBeInstanceOf(InvalidTransitionError);
    // The other way round: b knows it closed, and a third writer reopened nothing; close is a no-op
    // on what b knows and on the stream alike.
    await expect(on(id, { type: 'close' }).run(b)).resolves.toMatchObject({ envelopes: [], version: 2 });
    expect(await store.version(id)).toBe(2);
  });

  it('a submission on a stream that exists already is refused as the stream says', async () => {
    const id = randomUUID();
    await on(id, { type: 'close' }).run(b);
    // newStream guesses an empty stream; the append finds it is not, and the command is decided again.
    await expect(on(id, { type: 'increment', by: 1 }, { newStream: true }).run(a)).rejects.toBeInstanceOf(InvalidTransitionError);
    expect(await store.version(id)).toBe(1);
  });

  it('gives up with the ConcurrencyError after its attempts when the stream keeps moving', async () => {
    const id = randomUUID();
    await on(id, { type: 'increment', by: 1 }).run(a);
    let interfered = 0;
    const busy = {
      stream: { id, type: 'counter' },
      evolve,
      decode,
      decide: (state: Counter | null) => decide(state, { type: 'increment', by: 1 }),
      // Someone else appends between every read and append.
      prepare: async () => {
        interfered++;
        await on(id, { type: 'increment', by: 1000 }).run(b);
      },
      metadata: meta,
    } satisfies Command<Counter, CounterEvent>;
    await expect(a.execute(busy)).rejects.toBeInstanceOf(ConcurrencyError);
    expect(interfered).toBe(8);
    // Only the interference went in: eight of b's, none of a's.
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }, ...Array.from({ length: 8 }, () => ({ by: 1000 }))]);
  });
});

/**
 * A command whose transaction fails after its append (an inline view that throws, a statement
 * the database refuses): nothing of it commits, the caller gets the error, and the handler's
 * cache does not keep the state it would have had: the next command reads the stream and
 * appends at the right version, on the right hash.
 */
describe('CommandHandler: a transaction that fails after the append', () => {
  let handler: CommandHandler;
  let commits: number;

  beforeAll(() => {
    const signal = new CommitSignal();
    const committed = signal.committed.bind(signal);
    signal.committed = () => {
      commits++;
      committed();
    };
    handler = new CommandHandler(database.db, store, signal);
  });
  beforeEach(() => (commits = 0));

  const increment = (id: string, by: number, project?: (tx: Sql) => Promise<void>) =>
    handler.execute({
      stream: { id, type: 'counter' },
      evolve,
      decode,
      decide: (state: Counter | null) => decide(state, { type: 'increment', by }),
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
