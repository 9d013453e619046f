import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import { UuidV7Generator } from '../../common/ids';
import type { DomainEvent, EventMetadata } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { Database } from '../database/database';
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

describe('CommandHandler (PostgreSQL): what it knows of a stream is a guess the append checks', () => {
  let testDb: TestDatabase;
  let database: Database;
  let store: EventStore;
  /** Two instances of the service on one database, each with its own cache. */
  let a: CommandHandler;
  let b: CommandHandler;
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
    a = new CommandHandler(database.db, store, new CommitSignal());
    b = new CommandHandler(database.db, store, new CommitSignal());
  });
  beforeEach(() => (reads = 0));
  afterAll(async () => {
    await database.close();
    await testDb.drop();
  });

  const on = (id: string, command: CounterCommand, options?: { newStream?: boolean }) => ({
    run: (handler: CommandHandler) =>
      handler.execute(
        {
          stream: { id, type: 'counter' },
          evolve,
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
