import { randomUUID } from 'node:crypto';
import { ManualClock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import { UuidV7Generator } from '../../common/ids';
import { EventUnion, integer } from '../../events/decode';
import type { DomainEvent, EventMetadata } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { Database } from '../database/database';
import type { Sql } from '../database/db';
import type { InlineWrite } from '../database/inline-write';
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

/**
 * Inline writes (`Command.inline`) go into the append's own statement: they take effect exactly
 * when the event does, a refused append writes none of them, and a write the database refuses
 * takes the event with it. Without `prepare` or `project` the command needs no transaction.
 */
describe('CommandHandler: inline writes in the append statement', () => {
  let a: CommandHandler;
  let b: CommandHandler;
  let transactions: number;

  beforeAll(async () => {
    await database.db.query(`CREATE TABLE inline_probe (stream_id uuid NOT NULL, n int NOT NULL CHECK (n < 1000))`);
    a = new CommandHandler(database.db, store, new CommitSignal());
    b = new CommandHandler(database.db, store, new CommitSignal());
    const transaction = database.db.transaction.bind(database.db);
    database.db.transaction = ((work) => {
      transactions++;
      return transaction(work);
    }) as typeof database.db.transaction;
  });
  beforeEach(() => (transactions = 0));

  /** Records the counter's new value with each event. */
  const PROBE_SQL: InlineWrite['sql'] = (rows, wentIn) =>
    `INSERT INTO inline_probe (stream_id, n) SELECT p.stream_id, p.n FROM jsonb_to_recordset(${rows}) AS p(stream_id uuid, n int) WHERE ${wentIn('p.stream_id')}`;
  const probe = (id: string) => (state: Counter): InlineWrite[] => [{ name: 'probe', rows: [{ stream_id: id, n: state.n }], sql: PROBE_SQL }];
  const increment = (handler: CommandHandler, id: string, by: number, options?: { newStream?: boolean }) =>
    handler.execute(
      {
        stream: { id, type: 'counter' },
        evolve,
        decode,
        decide: (state: Counter | null) => decide(state, { type: 'increment', by }),
        inline: probe(id),
        metadata: meta,
      } satisfies Command<Counter, CounterEvent>,
      options,
    );
  const probed = async (id: string) =>
    (await database.db.query<{ n: number }>(`SELECT n FROM inline_probe WHERE stream_id = $1 ORDER BY n`, [id])).rows.map((r) => r.n);

  it('writes the views with the event, in one statement and no transaction, new stream or not', async () => {
    const id = randomUUID();
    await increment(a, id, 1, { newStream: true });
    await increment(a, id, 2);
    expect(transactions).toBe(0);
    expect(await probed(id)).toEqual([1, 3]);
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 2 });
  });

  it('a refused append (another instance wrote first) writes none of its views; the retry writes them once', async () => {
    const id = randomUUID();
    await increment(a, id, 1, { newStream: true });
    await increment(b, id, 10);
    // a's cached version is stale: its first append is refused, then it reads and appends.
    await increment(a, id, 100);
    expect(await probed(id)).toEqual([1, 11, 111]);
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }, { by: 10 }, { by: 100 }]);
  });

  it('a new stream another writer started first: the refused creation writes nothing', async () => {
    const id = randomUUID();
    await increment(b, id, 5, { newStream: true });
    await increment(a, id, 7, { newStream: true });
    expect(await probed(id)).toEqual([5, 12]);
    expect(await store.version(id)).toBe(2);
  });

  it('a write the database refuses takes the event with it', async () => {
    const id = randomUUID();
    await increment(a, id, 1, { newStream: true });
    // The probe's CHECK (n < 1000) refuses the row: the statement fails whole.
    await expect(increment(a, id, 5000)).rejects.toThrow(/inline_probe/);
    expect((await store.readStream(id)).map((e) => e.data)).toEqual([{ by: 1 }]);
    expect(await probed(id)).toEqual([1]);
    // The cache was dropped: the next command appends at version 2 on the real head.
    await increment(a, id, 2);
    expect(await probed(id)).toEqual([1, 3]);
    await expect(store.verifyStream(id)).resolves.toEqual({ valid: true, eventCount: 2 });
  });

  it('with a prepare step it runs in a transaction, the inline writes still in the append statement', async () => {
    const id = randomUUID();
    await a.execute({
      stream: { id, type: 'counter' },
      evolve,
      decode,
      decide: (state: Counter | null) => decide(state, { type: 'increment', by: 4 }),
      prepare: async (tx) => void (await tx.query('SELECT 1')),
      inline: probe(id),
      metadata: meta,
    } satisfies Command<Counter, CounterEvent>);
    expect(transactions).toBe(1);
    expect(await probed(id)).toEqual([4]);
  });
});
