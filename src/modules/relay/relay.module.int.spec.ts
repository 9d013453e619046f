import { randomBytes, randomUUID } from 'node:crypto';
import { type DynamicModule, Logger, Module } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Clock, ManualClock } from '../../common/clock';
import { IdGenerator, UuidV7Generator } from '../../common/ids';
import { loadConfig, RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import type { EventEnvelope } from '../../events/envelope';
import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { DatabaseModule } from '../database/database.module';
import { Db } from '../database/db';
import { CommitSignal } from '../event-store/commit-signal';
import { EventStore } from '../event-store/event-store';
import { EventStoreModule } from '../event-store/event-store.module';
import { Bus } from '../messaging/bus';
import { LocalBus } from '../messaging/local-bus';
import { MessagingModule } from '../messaging/messaging.module';
import { NatsBus } from '../messaging/nats-bus';
import { Relay } from './relay';
import { RelayModule } from './relay.module';

const NATS_URL = process.env.RUNWAY_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

@Module({})
class TestCoreModule {
  static forRoot(config: RunwayConfig): DynamicModule {
    const clock = new ManualClock('2026-05-01T12:00:00.000Z');
    return {
      module: TestCoreModule,
      global: true,
      providers: [
        { provide: RUNWAY_CONFIG, useValue: config },
        { provide: Clock, useValue: clock },
        { provide: IdGenerator, useValue: new UuidV7Generator(clock) },
      ],
      exports: [RUNWAY_CONFIG, Clock, IdGenerator],
    };
  }
}

async function boot(config: RunwayConfig): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({
    imports: [TestCoreModule.forRoot(config), DatabaseModule.forRoot(), EventStoreModule, MessagingModule.forRoot(), RelayModule],
  }).compile();
  return moduleRef.init();
}

/** Appends a submitted job, as a command would, and rings the commit signal. */
async function submitJob(app: TestingModule): Promise<EventEnvelope> {
  const jobId = randomUUID();
  const { envelopes } = await app.get(Db).transaction((tx) =>
    app.get(EventStore).append(
      tx,
      { id: jobId, type: 'job' },
      0,
      [{ type: 'JobSubmitted', schemaVersion: 2, data: { jobId, orgId: randomUUID(), projectId: randomUUID(), spec: 'x86-8c', cmd: ['true'] } }],
      { correlationId: 'c-module', causationId: null, actor: 'system' },
    ),
  );
  app.get(CommitSignal).committed();
  return envelopes[0];
}

async function firstMessageOf(nc: NatsConnection, stream: string): Promise<{ subject: string; id: string }> {
  const consumer = await jetstream(nc).consumers.get(stream);
  const message = await consumer.next({ expires: 10_000 });
  if (message === null) throw new Error(`nothing in ${stream}`);
  return { subject: message.subject, id: message.json<EventEnvelope>().id };
}

async function waitFor(condition: () => boolean, within = 10_000): Promise<void> {
  const deadline = Date.now() + within;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('RelayModule', () => {
  let testDb: TestDatabase;

  beforeAll(() => Logger.overrideLogger(['error']));
  beforeEach(async () => {
    testDb = await createTestDatabase();
  });
  afterEach(async () => {
    await testDb.drop();
  });

  it('with NATS: starts the relay at bootstrap, wakes it on commits, stops it and closes the bus at shutdown', async () => {
    const prefix = `test.m${randomBytes(5).toString('hex')}`;
    const app = await boot(loadConfig({ DATABASE_URL: testDb.url, NATS_URL, RUNWAY_NATS_PREFIX: prefix }));
    const reader = await connect({ servers: NATS_URL });
    const stream = `${prefix.toUpperCase().replace(/\./g, '_')}_JOBS`;
    try {
      const relay = app.get(Relay);
      expect(relay).toBeInstanceOf(Relay);
      const bus = app.get(Bus);
      expect(bus).toBeInstanceOf(NatsBus);
      const event = await submitJob(app);
      await waitFor(() => relay.lag().checkpoint !== null); // it made the stream and resumed
      const message = await firstMessageOf(reader, stream);
      expect(message.id).toBe(event.id);
      expect(message.subject).toMatch(new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.jobs\\.[^.]+\\.[^.]+\\.${event.streamId}\\.JobSubmitted$`));

      await app.close();
      expect(relay.lag().leader).toBe(false);
      expect((bus as NatsBus).connection.isClosed()).toBe(true);
    } finally {
      await app.close();
      await (await jetstreamManager(reader)).streams.delete(stream).catch(() => undefined);
      await reader.close();
    }
  });

  it('without NATS: the in-process bus, and no relay', async () => {
    const app = await boot(loadConfig({ DATABASE_URL: testDb.url }));
    try {
      expect(app.get(Bus)).toBeInstanceOf(LocalBus);
      expect(app.get(Relay)).toBeNull();
      await submitJob(app);
    } finally {
      await app.close();
    }
  });
});
