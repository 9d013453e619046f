import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { type RestFixtures as Rest, RestFixtures, call, clusterEnv, eventTypes, metricSum, randomPrefix, scrape, waitFor } from '../support/cluster';
import { createTestDatabase, type TestDatabase } from '../support/postgres';
import { type RunwayProcess, assertBuilt, freePort, runRunway, startRunway, stopAll } from '../support/process';
import { type Frame, TestRunner } from '../support/runner-client';

/**
 * Roles run apart (`api,relay,projector` and `gateway`) on a NATS server of this file's own,
 * which is killed for longer than the heartbeat timeout and started again. Heartbeats, dispatch
 * and cancels between the roles go over NATS, so while it is down: a healthy running job must
 * not time out (the api hears no heartbeat, and that silence says nothing about the runner), a
 * job submitted must still reach a waiting runner (the gateway's sweep), and a cancel must still
 * reach the runner (the gateway reads a held job again before long). The shared NATS on 4222 is
 * never touched.
 */

jest.setTimeout(180_000);

const NATS_SERVER = process.env.RUNWAY_TEST_NATS_SERVER ?? '/usr/sbin/nats-server';
const HEARTBEAT_INTERVAL_MS = 200;
const HEARTBEAT_TIMEOUT_MS = 3_000;

class PrivateNats {
  private child: ChildProcess | null = null;
  output = '';
  constructor(
    readonly port: number,
    private readonly storeDir: string,
  ) {}

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(NATS_SERVER, ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    await waitFor(() => `nats-server on ${this.port}:\n${this.output}`, async () => (/Server is ready/.test(this.output) ? true : undefined), 15_000);
  }

  /** Like a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.child = null;
    this.output = '';
  }
}

let database: TestDatabase;
let nats: PrivateNats;
let natsDir: string;
let api: RunwayProcess;
let gateway: RunwayProcess;
let rest: Rest;
let log: Pool;
const sockets: TestRunner[] = [];

beforeAll(async () => {
  assertBuilt();
  database = await createTestDatabase();
  natsDir = await mkdtemp(join(os.tmpdir(), 'runway-nats-outage-'));
  nats = new PrivateNats(await freePort(), natsDir);
  await nats.start();
  const env = clusterEnv(database.url, randomPrefix(), {
    NATS_URL: nats.url,
    RUNWAY_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS),
    RUNWAY_HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
    RUNWAY_CLAIM_TIMEOUT_MS: '120000',
    RUNWAY_LOG_LEVEL: 'log',
  });
  const migrated = await runRunway(['migrate'], env, 60_000);
  expect({ code: migrated.code, output: migrated.code === 0 ? '' : migrated.output }).toEqual({ code: 0, output: '' });
  api = await startRunway(['serve', '--roles', 'api,relay,projector'], env);
  gateway = await startRunway(['serve', '--roles', 'gateway'], env);
  await Promise.all([api.waitReady(), gateway.waitReady()]);
  rest = new RestFixtures(api.url);
  log = new Pool({ connectionString: database.url, max: 2 });
});

afterAll(async () => {
  for (const socket of sockets) await socket.close().catch(() => undefined);
  await log?.end().catch(() => undefined);
  await stopAll();
  await nats?.kill();
  await database?.drop().catch(() => undefined);
  if (natsDir) await rm(natsDir, { recursive: true, force: true });
});

/** A runner's socket on the gateway that heartbeats every job it says `running` for, as an agent does. */
async function runnerOnGateway(token: string): Promise<{ socket: TestRunner; stop(): void }> {
  const socket = await TestRunner.hello(gateway.url, token);
  sockets.push(socket);
  const beating = new Map<string, number>();
  const timer = setInterval(() => {
    for (const [job, attempt] of beating) socket.send({ type: 'heartbeat', job, attempt });
  }, HEARTBEAT_INTERVAL_MS);
  socket.socket.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as Frame;
    if (frame.type === 'ack' && frame.of === 'running') beating.set(frame.job as string, frame.attempt as number);
    if (frame.type === 'cancel') beating.delete(frame.job as string);
  });
  socket.socket.on('close', () => clearInterval(timer));
  return { socket, stop: () => clearInterval(timer) };
}

/** The next frame of `type` (an `ack` of `of`), skipping the acks of heartbeats. */
async function nextOf(socket: TestRunner, type: string, timeoutMs: number, of?: string): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const frame = await socket.next(undefined, Math.max(1, deadline - Date.now()));
    if (frame.type === type && (of === undefined || frame.of === of)) return frame;
    if (!(frame.type === 'ack' && frame.of === 'heartbeat')) throw new Error(`expected ${type}, got ${JSON.stringify(frame)}`);
  }
}

async function run(socket: TestRunner, job: { id: string; attempt: number }): Promise<void> {
  socket.send({ type: 'running', job: job.id, attempt: job.attempt });
  await nextOf(socket, 'ack', 5_000, 'running');
}

it('while NATS is down: healthy jobs do not time out, a submitted job reaches a waiting runner, a cancel reaches its runner', async () => {
  const spec = (await rest.spec()).slug;
  const tenant = await rest.tenant('enterprise');
  const [r1, r2, r3] = [await rest.runner([spec]), await rest.runner([spec]), await rest.runner([spec])];

  // Two jobs running and heartbeating, pushed over NATS as usual.
  const healthy = await runnerOnGateway(r1.token);
  const toCancel = await runnerOnGateway(r2.token);
  const jobs: { id: string; attempt: number }[] = [];
  for (const runner of [healthy, toCancel]) {
    runner.socket.send({ type: 'ready' });
    const submitted = await rest.submit(tenant, spec);
    const pushed = (await nextOf(runner.socket, 'job', 10_000)).job as { id: string; attempt: number };
    expect(pushed.id).toBe(submitted.id);
    await run(runner.socket, pushed);
    jobs.push(pushed);
  }
  const [kept, canceled] = jobs;
  // A third runner waits for work.
  const waiting = await runnerOnGateway(r3.token);
  waiting.socket.send({ type: 'ready' });
  // The api hears the heartbeats (the runner view's lastSeenAt comes from them).
  const seen = async () => (await call<{ lastSeenAt: string | null }>(api.url, 'GET', `/v1/runners/${r1.id}`, { expect: 200 })).body.lastSeenAt;
  const before = Date.now();
  await waitFor('a heartbeat heard by the api', async () => ((await seen()) !== null && Date.parse((await seen())!) >= before ? true : undefined), 10_000);

  // NATS goes away; both processes notice.
  await nats.kill();
  const downAt = Date.now();
  await waitFor(() => `both roles to notice:\n${api.output()}\n${gateway.output()}`, async () =>
    /disconnected from NATS/.test(api.stderr + api.stdout) && /disconnected from NATS/.test(gateway.stderr + gateway.stdout) ? true : undefined, 15_000);

  // A job submitted now: its dispatch message is lost, the gateway's sweep hands it out.
  const third = await rest.submit(tenant, spec);
  const pushed = (await nextOf(waiting.socket, 'job', 15_000)).job as { id: string; attempt: number };
  expect(pushed.id).toBe(third.id);
  await run(waiting.socket, pushed);

  // A cancel now: its message is lost; the gateway reads the held job again and tells the runner.
  await rest.cancel(canceled.id);
  const cancel = await nextOf(toCancel.socket, 'cancel', 30_000);
  expect(cancel).toMatchObject({ job: canceled.id, attempt: canceled.attempt });
  toCancel.socket.send({ type: 'canceled', job: canceled.id, attempt: canceled.attempt });
  await waitFor('the cancel acknowledged', async () => ((await eventTypes(log, canceled.id)).includes('JobCancelAcknowledged') ? true : undefined), 10_000);

  // Down for well past the heartbeat timeout (the cancel alone takes longer).
  expect(Date.now() - downAt).toBeGreaterThan(2 * HEARTBEAT_TIMEOUT_MS);
  await nats.start();
  const upAt = Date.now();
  await waitFor(() => `both roles to reconnect:\n${api.output()}\n${gateway.output()}`, async () =>
    /reconnected to NATS/.test(api.stderr + api.stdout) && /reconnected to NATS/.test(gateway.stderr + gateway.stdout) ? true : undefined, 20_000);
  // Heartbeats reach the api again.
  await waitFor('a heartbeat heard after the reconnection', async () => (Date.parse((await seen()) ?? '0') > upAt ? true : undefined), 15_000);

  // The healthy jobs were never given up: their runners report, and the reports are taken.
  for (const [runner, job] of [
    [healthy, kept],
    [waiting, pushed],
  ] as const) {
    runner.stop();
    runner.socket.send({ type: 'completed', job: job.id, attempt: job.attempt, exitCode: 0, stdout: 'ok\n' });
    expect(await nextOf(runner.socket, 'ack', 10_000, 'completed')).toMatchObject({ job: job.id });
    expect(await eventTypes(log, job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
  }
  expect(await eventTypes(log, canceled.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCanceled', 'JobCancelAcknowledged']);
  // The api's own count: nothing lost to silence, and no runner closed as lost (4001).
  expect(metricSum(await scrape(api.url), 'runner_heartbeat_timeout_total')).toBe(0);
  for (const runner of [healthy, toCancel, waiting]) expect(runner.socket.closed).toBeNull();
  const { rows } = await log.query<{ n: string }>(`SELECT count(*) AS n FROM events WHERE type = 'RunnerDisconnected'`);
  expect(Number(rows[0].n)).toBe(0);
});
