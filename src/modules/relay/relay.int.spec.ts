import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { type ConsumerMessages, jetstream, jetstreamManager, type PubAck, StorageType } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { ManualClock } from '../../common/clock';
import { UuidV7Generator } from '../../common/ids';
import type { EventEnvelope, EventMetadata } from '../../events/envelope';
import type { JobEvent, JobSubmittedData } from '../../events/job-events';
import { createTestDatabase, type TestDatabase, transactionElsewhere } from '../../../test/support/postgres';
import { Database } from '../database/database';
import { EventStore } from '../event-store/event-store';
import { NatsBus } from '../messaging/nats-bus';
import { Subjects } from '../messaging/subjects';
import { loadCheckpoint } from '../event-store/checkpoints';
import { JetStreamPublisher, type JobsStreamOptions } from './jetstream-publisher';
import { AdvisoryLockLeadership, LEADERSHIP_LOCK_CLASS, SoleLeadership } from '../event-store/leadership';
import { Relay, type RelayOptions } from './relay';

const NATS_URL = process.env.RUNWAY_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const NATS_SERVER = process.env.RUNWAY_TEST_NATS_SERVER ?? '/usr/sbin/nats-server';
const meta: EventMetadata = { correlationId: 'c-relay', causationId: null, actor: 'system' };

/** What a JetStream consumer got: one message of the jobs stream. */
interface Received {
  seq: number;
  subject: string;
  msgId: string | undefined;
  envelope: EventEnvelope;
}

/** Reads the jobs stream from its start with an ordered consumer, for as long as it runs. */
class StreamReader {
  readonly received: Received[] = [];
  private messages: ConsumerMessages | null = null;
  private done: Promise<void> | null = null;

  constructor(
    private readonly connection: NatsConnection,
    private readonly stream: string,
  ) {}

  async start(): Promise<this> {
    const consumer = await jetstream(this.connection).consumers.get(this.stream);
    const messages = await consumer.consume();
    this.messages = messages;
    this.done = (async () => {
      for await (const m of messages) {
        this.received.push({ seq: m.seq, subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id'), envelope: m.json<EventEnvelope>() });
      }
    })();
    return this;
  }

  /** Waits until the consumer has got every one of `ids` (message ids). */
  async until(ids: readonly string[], within = 15_000): Promise<void> {
    await waitFor(() => {
      const got = new Set(this.received.map((r) => r.msgId));
      return ids.every((id) => got.has(id));
    }, within, () => `the consumer got ${this.received.length} messages, waiting for ${ids.length} ids`);
  }

  async stop(): Promise<void> {
    this.messages?.stop();
    await this.done?.catch(() => undefined);
  }
}

/** Polls a condition that something else will make true; fails with a message after `within`. */
async function waitFor(condition: () => boolean | Promise<boolean>, within = 15_000, describe: () => string = () => 'condition'): Promise<void> {
  const deadline = Date.now() + within;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('Relay (PostgreSQL + NATS JetStream)', () => {
  const clock = new ManualClock('2026-05-01T12:00:00.000Z');
  let testDb: TestDatabase;
  let database: Database;
  let store: EventStore;
  let subjects: Subjects;
  let stream: string;
  let bus: NatsBus;
  let reader: NatsConnection;
  const relays: Relay[] = [];
  const streamReaders: StreamReader[] = [];

  beforeAll(() => {
    // Failures are what several tests cause on purpose; the assertions say what happened.
    Logger.overrideLogger(['error']);
  });

  beforeEach(async () => {
    testDb = await createTestDatabase();
    database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 4, dataDir: '' });
    store = new EventStore(database.db, clock, new UuidV7Generator(clock));
    // A prefix of its own: its own stream (and checkpoint), so runs on one server do not meet.
    subjects = new Subjects(`test.r${randomBytes(5).toString('hex')}`);
    stream = subjects.jobsStreamName();
    bus = await NatsBus.connect([NATS_URL], 'runway-relay-test');
    reader = await connect({ servers: NATS_URL, name: 'runway-relay-test-reader' });
  });

  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.stop()));
    await Promise.all(streamReaders.splice(0).map((r) => r.stop()));
    await (await jetstreamManager(reader)).streams.delete(stream).catch(() => undefined);
    await reader.close();
    await bus.close();
    await database.close();
    await testDb.drop();
  });

  const streamOptions = (): JobsStreamOptions => ({
    stream,
    subjects: subjects.allJobEvents(),
    duplicateWindowMs: 10 * 60 * 1000,
    publishTimeoutMs: 2_000,
  });

  function newRelay(options: Partial<RelayOptions> = {}, publisher = new JetStreamPublisher(bus.connection, streamOptions())): Relay {
    const name = `jetstream:${stream}`;
    const relay = new Relay(
      { store, publisher, subjects, clock, leadership: new AdvisoryLockLeadership(testDb.url, name) },
      { name, idlePollMs: 20, leaderRetryMs: 100, retryInitialMs: 20, retryMaxMs: 500, ...options },
    );
    relays.push(relay);
    return relay;
  }

  async function readStream(): Promise<StreamReader> {
    const streamReader = await new StreamReader(reader, stream).start();
    streamReaders.push(streamReader);
    return streamReader;
  }

  async function streamMessageCount(): Promise<number> {
    return (await (await jetstreamManager(reader)).streams.info(stream)).state.messages;
  }

  const append = (streamId: string, type: string, version: number, events: JobEvent[] | { type: string; schemaVersion: number; data: unknown }[]) =>
    database.db.transaction((tx) => store.append(tx, { id: streamId, type }, version, events, meta)).then((r) => r.envelopes);

  /** A job submitted and (by `steps`) claimed, started and completed, one transaction each. */
  async function job(owner: { orgId: string; projectId: string }, steps = 4): Promise<EventEnvelope[]> {
    const jobId = randomUUID();
    const runnerId = randomUUID();
    const at = clock.now().toISOString();
    const submitted: JobSubmittedData = {
      jobId,
      orgId: owner.orgId,
      projectId: owner.projectId,
      spec: 'x86-8c',
      specId: randomUUID(),
      plan: 'team',
      priority: 200,
      image: `registry.example.com/bench@sha256:${'ab'.repeat(32)}`,
      cmd: ['cargo', 'bench', '--', '--save-baseline', 'main'],
      entrypoint: null,
      env: { RUSTFLAGS: '-C target-cpu=native' },
      timeout: 3600,
      filePaths: ['target/criterion/report/index.html'],
      maxAttempts: 2,
      sourceIp: '203.0.113.7',
      idempotency: { key: `build-${jobId.slice(0, 8)}`, requestHash: 'cd'.repeat(32) },
      submittedAt: at,
    };
    const lifecycle: JobEvent[] = [
      { type: 'JobSubmitted', schemaVersion: 2, data: submitted },
      { type: 'JobClaimed', schemaVersion: 1, data: { runnerId, attempt: 1, claimedAt: at } },
      { type: 'JobStarted', schemaVersion: 1, data: { runnerId, attempt: 1, startedAt: at, fingerprint: { cpuModel: 'AMD EPYC', cores: 8 } } },
      { type: 'JobCompleted', schemaVersion: 1, data: { runnerId, attempt: 1, exitCode: 0, finishedAt: at, output: null } },
    ];
    const envelopes: EventEnvelope[] = [];
    for (const [version, event] of lifecycle.slice(0, steps).entries()) envelopes.push(...(await append(jobId, 'job', version, [event])));
    return envelopes;
  }

  /** Several jobs of several orgs and projects, their events interleaved in the log, and events of other streams. */
  async function workload(jobs: number): Promise<EventEnvelope[]> {
    const owners = [
      { orgId: randomUUID(), projectId: randomUUID() },
      { orgId: randomUUID(), projectId: randomUUID() },
    ];
    const results = await Promise.all([
      ...Array.from({ length: jobs }, (_, i) => job(owners[i % owners.length], 1 + (i % 4))),
      append(randomUUID(), 'org', 0, [{ type: 'OrgCreated', schemaVersion: 1, data: { slug: 'acme' } }]),
    ]);
    return results.flat().filter((e) => e.streamType === 'job');
  }

  function expectExactlyOnceInOrder(received: readonly Received[], events: readonly EventEnvelope[]): void {
    const ids = received.map((r) => r.msgId);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(events.map((e) => e.id).sort());
    const byJob = new Map<string, number[]>();
    for (const r of received) byJob.set(r.envelope.streamId, [...(byJob.get(r.envelope.streamId) ?? []), r.envelope.position]);
    for (const positions of byJob.values()) expect(positions).toEqual(positions.map((_, i) => i + 1));
  }

  it('publishes every committed job event once, in order per job, under its subject, with the event id as message id', async () => {
    const events = await workload(12);
    const relay = newRelay();
    relay.start();
    // The stream exists once the relay has resumed from its checkpoint.
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    await consumer.until(events.map((e) => e.id));

    expectExactlyOnceInOrder(consumer.received, events);
    const stored = new Map(events.map((e) => [e.id, e]));
    for (const r of consumer.received) {
      const event = stored.get(r.envelope.id) as EventEnvelope;
      const { orgId, projectId } = (events.find((e) => e.streamId === event.streamId && e.position === 1) as EventEnvelope<JobEvent>)
        .data as JobSubmittedData;
      expect(r.msgId).toBe(event.id);
      expect(r.subject).toBe(`${subjects.prefix}.jobs.${orgId}.${projectId}.${event.streamId}.${event.type}`);
      // The payload is the envelope as the store returns it (docs/protocol.md, "The event envelope").
      expect(r.envelope).toEqual((await store.readStream(event.streamId))[event.position - 1]);
    }
    expect(await streamMessageCount()).toBe(events.length);

    const info = await (await jetstreamManager(reader)).streams.info(stream);
    expect(info.config).toMatchObject({ subjects: [`${subjects.prefix}.jobs.>`], storage: StorageType.File });
    expect(info.config.duplicate_window).toBeGreaterThanOrEqual(nanos(10 * 60 * 1000));
    const last = events.reduce((a, b) => (a.globalPosition > b.globalPosition ? a : b));
    // At or past the last job event: the workload's organization event may have committed after it.
    await waitFor(async () => ((await loadCheckpoint(database.db, `jetstream:${stream}`))?.globalPosition ?? 0) >= last.globalPosition);
    expect(relays[0].lag()).toMatchObject({ leader: true, failures: 0, lastPublishedAt: clock.now() });
  });

  it('resumes from its checkpoint after a restart: a new instance publishes only what came after', async () => {
    const first = await workload(6);
    const relay = newRelay();
    relay.start();
    await waitFor(() => relay.lag().checkpoint !== null);
    const consumer = await readStream();
    await consumer.until(first.map((e) => e.id));
    await relay.stop();
    expect(relay.lag().leader).toBe(false);

    const second = await workload(6);
    const restarted = newRelay();
    restarted.start();
    await consumer.until(second.map((e) => e.id));

    expectExactlyOnceInOrder(consumer.received, [...first, ...second]);
    expect(consumer.received.slice(first.length).map((r) => r.msgId).sort()).toEqual(second.map((e) => e.id).sort());
    expect(await streamMessageCount()).toBe(first.length + second.length);
  });

  it('republishes nothing after a crash between publish and checkpoint (rewound checkpoint)', async () => {
    const first = await workload(6);
    const relay = newRelay();
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    await consumer.until(first.map((e) => e.id));
    await relay.stop();
    // As if the relay had died after publishing, before saving its checkpoint.
    await database.db.query(`UPDATE checkpoints SET transaction_id = '0', global_position = 0 WHERE name = $1`, [relay.name]);

    const second = await workload(4);
    const published: string[] = [];
    class Counting extends JetStreamPublisher {
      override async publish(subject: string, envelope: EventEnvelope): Promise<PubAck> {
        published.push(envelope.id);
        return super.publish(subject, envelope);
      }
    }
    const restarted = newRelay({}, new Counting(bus.connection, streamOptions()));
    restarted.start();
    await consumer.until(second.map((e) => e.id));

    expectExactlyOnceInOrder(consumer.received, [...first, ...second]);
    expect(await streamMessageCount()).toBe(first.length + second.length);
    // It resumed after the event the stream held last, not from the rewound checkpoint: it did
    // not even offer the first events again (the duplicate window would have dropped them).
    expect(published.sort()).toEqual(second.map((e) => e.id).sort());
  });

  it('retries a failed publish from the checkpoint; JetStream drops the events it already had (message ids)', async () => {
    const events = await workload(6);
    const acks: PubAck[] = [];
    let failuresLeft = 2;
    // Each failure comes after JetStream stored the message: the ack was lost on the way back.
    // And the relay cannot tell which event the stream holds last (as if that message had been
    // deleted), so its retry republishes from the checkpoint: only the message ids keep the
    // stream free of duplicates.
    class LosesAcks extends JetStreamPublisher {
      override async publish(subject: string, envelope: EventEnvelope): Promise<PubAck> {
        const ack = await super.publish(subject, envelope);
        acks.push(ack);
        if (acks.length % 5 === 0 && failuresLeft-- > 0) throw new Error('ack lost');
        return ack;
      }

      override async lastMessageId(): Promise<string | null> {
        return null;
      }
    }
    const relay = newRelay({}, new LosesAcks(bus.connection, streamOptions()));
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    await consumer.until(events.map((e) => e.id));
    await waitFor(() => relay.lag().lastPublished?.eventId === consumer.received[consumer.received.length - 1].msgId);

    expectExactlyOnceInOrder(consumer.received, events);
    expect(await streamMessageCount()).toBe(events.length);
    expect(acks.filter((ack) => ack.duplicate).length).toBeGreaterThanOrEqual(2);
    expect(relay.lag()).toMatchObject({ failures: 0, lastError: 'ack lost' });
  });

  it('publishes from one instance at a time, and another takes over when the leader goes', async () => {
    const [one, two] = [newRelay(), newRelay()];
    one.start();
    two.start();
    // A leader that has resumed: its stream exists and it is reading the log.
    const resumed = (relay: Relay) => relay.lag().leader && relay.lag().checkpoint !== null;
    await waitFor(() => resumed(one) || resumed(two));
    const leader = resumed(one) ? one : two;
    const follower = leader === one ? two : one;

    const consumer = await readStream();
    const first = await workload(6);
    await consumer.until(first.map((e) => e.id));
    expect(follower.lag()).toMatchObject({ leader: false, lastPublished: null });

    // The leader's lock connection is cut: it stops, and leadership moves (or comes back) within a retry.
    const terms = one.lag().terms + two.lag().terms;
    await database.db.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND classid = $1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [LEADERSHIP_LOCK_CLASS],
    );
    await waitFor(() => one.lag().terms + two.lag().terms > terms);
    const second = await workload(4);
    await consumer.until(second.map((e) => e.id));

    // A clean stop hands over too.
    const current = one.lag().leader ? one : two;
    const other = current === one ? two : one;
    await current.stop();
    await waitFor(() => other.lag().leader);
    const third = await workload(4);
    await consumer.until(third.map((e) => e.id));

    expect(one.lag().leader && two.lag().leader).toBe(false);
    expectExactlyOnceInOrder(consumer.received, [...first, ...second, ...third]);
    expect(await streamMessageCount()).toBe(first.length + second.length + third.length);
  });

  it('wakes up on notify() instead of waiting for its next poll', async () => {
    const relay = newRelay({ idlePollMs: 60_000 });
    const [before] = await workload(1);
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    await consumer.until([before.id]);
    await waitFor(() => relay.lag().lastPublished?.eventId === before.id);

    const after = await workload(3);
    relay.notify();
    await consumer.until(after.map((e) => e.id), 5_000);
    expectExactlyOnceInOrder(consumer.received, [before, ...after]);
  });

  it('reads again soon, with no notify, once a transaction that held committed events back ends', async () => {
    const relay = newRelay({ idlePollMs: 60_000 });
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    // A transaction with an id, open on a connection of its own: the events committed after it
    // began are behind the gate until it ends.
    const blocker = await database.db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT pg_current_xact_id()');
      const held = await workload(2);
      relay.notify();
      await waitFor(() => relay.lag().heldBack, 5_000, () => 'the relay never read past the open transaction');
      expect(consumer.received.map((r) => r.msgId)).not.toContain(held[0].id);
      await blocker.query('COMMIT');
      // No notify and an idle poll of a minute: only the held-back retry can bring them now.
      await consumer.until(held.map((e) => e.id), 5_000);
      expectExactlyOnceInOrder(consumer.received, held);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
  });

  it('is not held back by a write transaction open in another database of the server', async () => {
    const relay = newRelay({ idlePollMs: 60_000 });
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    // Older than the events below, and open all along: the server-wide horizon would hold them.
    const elsewhere = await transactionElsewhere();
    try {
      const events = await workload(3);
      relay.notify();
      await consumer.until(events.map((e) => e.id), 5_000);
      expectExactlyOnceInOrder(consumer.received, events);
    } finally {
      await elsewhere.end();
    }
  });

  it('widens the duplicate window of a stream that exists with a shorter one, keeping its messages', async () => {
    const jsm = await jetstreamManager(reader);
    await jsm.streams.add({ name: stream, subjects: [subjects.allJobEvents()], storage: StorageType.File });
    await jetstream(reader).publish(`${subjects.prefix}.jobs.o.p.j.JobSubmitted`, '{}', { msgID: 'earlier' });
    expect((await jsm.streams.info(stream)).config.duplicate_window).toBe(nanos(2 * 60 * 1000));
    await new JetStreamPublisher(bus.connection, streamOptions()).ensureStream();
    const info = await jsm.streams.info(stream);
    expect(info.config.duplicate_window).toBe(nanos(10 * 60 * 1000));
    expect(info.config.subjects).toEqual([subjects.allJobEvents()]);
    expect(info.state.messages).toBe(1);
    expect(await new JetStreamPublisher(bus.connection, streamOptions()).lastMessageId()).toBe('earlier');
  });

  it('relays through the pool without a lock when it is the only instance (embedded database)', async () => {
    const publisher = new JetStreamPublisher(bus.connection, streamOptions());
    const relay = new Relay({ store, publisher, subjects, clock, leadership: new SoleLeadership(database.db) }, { idlePollMs: 20 });
    relays.push(relay);
    const events = await workload(4);
    relay.start();
    const consumer = await waitFor(() => relay.lag().checkpoint !== null).then(readStream);
    await consumer.until(events.map((e) => e.id));
    expectExactlyOnceInOrder(consumer.received, events);
    expect(relay.name).toBe(`jetstream:${stream}`);
    // The checkpoint is saved after the batch is published: the consumer may see the events
    // first. The relay says when it has saved the last one; the database must hold that.
    // The workload's appends run concurrently: the log's order is not the order of `events`, and
    // its organization event may come last, so the checkpoint ends at or past the last job event.
    const lastJobEvent = Math.max(...events.map((e) => e.globalPosition));
    await waitFor(
      () => (relay.lag().checkpoint?.globalPosition ?? 0) >= lastJobEvent,
      15_000,
      () => `the checkpoint to reach ${lastJobEvent}: ${JSON.stringify(relay.lag())}`,
    );
    const reported = relay.lag().checkpoint?.globalPosition;
    expect((await loadCheckpoint(database.db, relay.name))?.globalPosition).toBe(reported);
  });

  describe('when NATS goes away', () => {
    let server: NatsServerProcess;
    let ownBus: NatsBus;
    let ownReader: NatsConnection;

    beforeEach(async () => {
      server = await NatsServerProcess.start();
      ownBus = await NatsBus.connect([server.url], 'runway-relay-outage-test', { reconnectTimeWaitMs: 50 });
    });
    afterEach(async () => {
      await Promise.all(relays.splice(0).map((relay) => relay.stop()));
      await ownReader?.close();
      await ownBus.close();
      await server.stop();
    });

    it('retries until NATS is back and then publishes everything, once, in order', async () => {
      const relay = newRelay({}, new JetStreamPublisher(ownBus.connection, { ...streamOptions(), publishTimeoutMs: 500 }));
      relay.start();
      const first = await workload(4);
      await waitFor(() => allPublished(relay, first));

      await server.kill();
      const second = await workload(4);
      await waitFor(() => relay.lag().failures > 0, 15_000, () => 'the relay to notice NATS is gone');
      await server.restart();
      await waitFor(() => allPublished(relay, second), 20_000, () => `the relay to catch up (${JSON.stringify(relay.lag())})`);

      ownReader = await connect({ servers: server.url, name: 'runway-relay-outage-reader' });
      const consumer = await new StreamReader(ownReader, stream).start();
      await consumer.until([...first, ...second].map((e) => e.id));
      await consumer.stop();
      expectExactlyOnceInOrder(consumer.received, [...first, ...second]);
      expect((await (await jetstreamManager(ownReader)).streams.info(stream)).state.messages).toBe(first.length + second.length);
    });

    /** Whether the relay has published past every one of `events` (it goes in log order). */
    function allPublished(relay: Relay, events: readonly EventEnvelope[]): boolean {
      const last = relay.lag().checkpoint;
      return last !== null && events.every((e) => e.globalPosition <= last.globalPosition);
    }
  });
});

/** A NATS server of a test's own (JetStream, file storage in a temporary directory), to stop and start. */
class NatsServerProcess {
  private process: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    private readonly storeDir: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<NatsServerProcess> {
    const server = new NatsServerProcess(await freePort(), await mkdtemp(join(tmpdir(), 'runway-nats-')));
    await server.restart();
    return server;
  }

  async restart(): Promise<void> {
    this.process = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: 'ignore' });
    await waitFor(() => answers(this.port), 10_000, () => `nats-server on port ${this.port}`);
  }

  /** Ends the server as a crash would. */
  async kill(): Promise<void> {
    const child = this.process;
    this.process = null;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    await rm(this.storeDir, { recursive: true, force: true });
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => (socket.destroy(), resolve(false)));
    socket.connect(port, '127.0.0.1');
  });
}
