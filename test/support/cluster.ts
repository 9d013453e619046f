import { randomBytes } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Pool } from 'pg';
import { type ChildEnv, type RunwayProcess, startRunway } from './process';
import type { Frame, TestRunner } from './runner-client';

/**
 * Several `runway serve` processes on one PostgreSQL database and one NATS server, and what tests
 * need to talk to them from outside: REST over fetch, the event log read straight from the
 * database, the JetStream jobs stream, and /metrics.
 */

export const NATS_URL = process.env.RUNWAY_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
/** The operator credential every instance of a cluster is started with. */
export const ADMIN_TOKEN = 'runway-e2e-admin-token-not-a-secret';

/** Writes a line for whoever runs the tests, when RUNWAY_TEST_VERBOSE is set (timings, peaks). */
export function note(line: string): void {
  if (process.env.RUNWAY_TEST_VERBOSE) process.stderr.write(`${line}\n`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A NATS subject prefix of its own (`t<hex>`), so test files never share subjects or streams. */
export function randomPrefix(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** docs/protocol.md, "NATS": the prefix upper-cased, every character but A-Z, 0-9 and _ made _, plus `_JOBS`. */
export function jobsStreamName(prefix: string): string {
  return `${prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_JOBS`;
}

/** The environment every instance of a cluster shares; `extra` adds or overrides. */
export function clusterEnv(databaseUrl: string, prefix: string, extra: ChildEnv = {}): ChildEnv {
  return {
    DATABASE_URL: databaseUrl,
    NATS_URL,
    RUNWAY_NATS_PREFIX: prefix,
    RUNWAY_ADMIN_TOKEN: ADMIN_TOKEN,
    // Load from one key and many runners on one address: no test here is about these limits.
    RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '100000',
    RUNWAY_API_REQUESTS_PER_MINUTE: '100000000',
    RUNWAY_AUTH_FAILURES_PER_MINUTE: '100000',
    ...extra,
  };
}

/** Starts `runway serve --roles <roles>` for each entry at once, and waits until all answer /readyz. */
export async function startInstances(base: ChildEnv, instances: readonly { roles: string; env?: ChildEnv }[]): Promise<RunwayProcess[]> {
  const started = await Promise.all(instances.map(({ roles, env }) => startRunway(['serve', '--roles', roles], { ...base, ...env })));
  await Promise.all(started.map((proc) => proc.waitReady()));
  return started;
}

// --- REST ------------------------------------------------------------------------------------

export interface Answer<T = unknown> {
  status: number;
  body: T;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  /** Fails unless the status is this one. */
  expect?: number;
  timeoutMs?: number;
}

/** One REST call; with `expect`, a different status fails with the answer in the message. */
export async function call<T = unknown>(baseUrl: string, method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? ADMIN_TOKEN}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON: keep the text for the failure message
  }
  if (options.expect !== undefined && response.status !== options.expect) {
    throw new Error(`${method} ${baseUrl}${path}: expected ${options.expect}, got ${response.status}: ${text}`);
  }
  return { status: response.status, body: body as T };
}

export interface Tenant {
  org: { id: string; slug: string; plan: string };
  key: string;
  project: { id: string; slug: string };
}

export interface RegisteredRunner {
  id: string;
  slug: string;
  token: string;
}

export interface JobView {
  id: string;
  org: string;
  project: string;
  spec: string;
  status: string;
  attempt: number;
  maxAttempts: number;
  runner: string | null;
  failure: string | null;
  exitCode: number | null;
  [field: string]: unknown;
}

/** Operator and organization set-up through the public REST API of one instance (`api` role). */
export class RestFixtures {
  constructor(readonly url: string) {}

  unique(prefix: string): string {
    return `${prefix}-${randomBytes(4).toString('hex')}`;
  }

  async spec(): Promise<{ id: string; slug: string }> {
    const slug = this.unique('spec');
    const body = { slug, name: 'x86 8c', architecture: 'x86_64', cpu: 8, memory: 32 * 2 ** 30, disk: 2 ** 39, network: false };
    return (await call<{ id: string; slug: string }>(this.url, 'POST', '/v1/specs', { body, expect: 201 })).body;
  }

  async tenant(plan: string, extra: Record<string, unknown> = {}): Promise<Tenant> {
    const slug = this.unique('org');
    const org = (await call<Tenant['org']>(this.url, 'POST', '/v1/orgs', { body: { slug, name: `Org ${slug}`, plan, ...extra }, expect: 201 })).body;
    const { key } = (await call<{ key: string }>(this.url, 'POST', `/v1/orgs/${slug}/keys`, { body: { name: 'e2e' }, expect: 201 })).body;
    const project = (
      await call<Tenant['project']>(this.url, 'POST', '/v1/projects', { token: key, body: { slug: this.unique('proj'), name: 'Project' }, expect: 201 })
    ).body;
    return { org, key, project };
  }

  async runner(specs: string[]): Promise<RegisteredRunner> {
    const body = (await call<RegisteredRunner>(this.url, 'POST', '/v1/runners', { body: { slug: this.unique('runner'), name: 'Runner', specs }, expect: 201 })).body;
    return { id: body.id, slug: body.slug, token: body.token };
  }

  async submit(tenant: Tenant, spec: string, extra: Record<string, unknown> = {}): Promise<JobView> {
    return (await call<JobView>(this.url, 'POST', `/v1/projects/${tenant.project.id}/jobs`, { token: tenant.key, body: { spec, cmd: ['./bench'], ...extra }, expect: 201 })).body;
  }

  async job(id: string): Promise<JobView> {
    return (await call<JobView>(this.url, 'GET', `/v1/jobs/${id}`, { expect: 200 })).body;
  }

  async cancel(id: string): Promise<JobView> {
    return (await call<JobView>(this.url, 'POST', `/v1/jobs/${id}/cancel`, { expect: 202 })).body;
  }
}

// --- the event log ---------------------------------------------------------------------------

export interface LoggedEvent {
  id: string;
  streamId: string;
  position: number;
  type: string;
  data: Record<string, unknown>;
  metadata: { correlationId: string; causationId: string | null; actor: string };
  transactionId: string;
  globalPosition: number;
}

/** A small pool on a test database, for reading the log and the views. */
export function logReader(databaseUrl: string): Pool {
  return new Pool({ connectionString: databaseUrl, max: 2 });
}

/**
 * Job events in the log's commit-safe order (transaction id, then global position), of the
 * given jobs or of every job.
 */
export async function jobEvents(pool: Pool, jobIds?: readonly string[]): Promise<LoggedEvent[]> {
  const { rows } = await pool.query<{
    id: string;
    stream_id: string;
    stream_position: number;
    type: string;
    data: Record<string, unknown>;
    metadata: LoggedEvent['metadata'];
    transaction_id: string;
    global_position: string;
  }>(
    `SELECT id, stream_id, stream_position, type, data, metadata, transaction_id::text AS transaction_id, global_position
       FROM events
      WHERE stream_type = 'job' AND ($1::uuid[] IS NULL OR stream_id = ANY($1::uuid[]))
      ORDER BY events.transaction_id, events.global_position`,
    [jobIds === undefined ? null : [...jobIds]],
  );
  return rows.map((row) => ({
    id: row.id,
    streamId: row.stream_id,
    position: row.stream_position,
    type: row.type,
    data: row.data,
    metadata: row.metadata,
    transactionId: row.transaction_id,
    globalPosition: Number(row.global_position),
  }));
}

/** A job's event types in stream order. */
export async function eventTypes(pool: Pool, jobId: string): Promise<string[]> {
  const { rows } = await pool.query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_position`, [jobId]);
  return rows.map((row) => row.type);
}

// --- JetStream -------------------------------------------------------------------------------

export interface StreamMessage {
  seq: number;
  subject: string;
  msgId: string | null;
  envelope: { id: string; streamId: string; position: number; type: string; [field: string]: unknown };
}

export async function natsConnect(): Promise<{ nc: NatsConnection; jsm: JetStreamManager }> {
  const nc = await connect({ servers: NATS_URL, name: 'runway-e2e-test' });
  return { nc, jsm: await jetstreamManager(nc) };
}

/** How many messages the stream holds (0 if it does not exist yet). */
export async function streamCount(jsm: JetStreamManager, stream: string): Promise<number> {
  try {
    return (await jsm.streams.info(stream)).state.messages;
  } catch {
    return 0;
  }
}

/** Every message of the stream, in stream order. */
export async function readStream(jsm: JetStreamManager, stream: string): Promise<StreamMessage[]> {
  const { state } = await jsm.streams.info(stream);
  const seqs: number[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) seqs.push(seq);
  const messages: StreamMessage[] = [];
  for (let i = 0; i < seqs.length; i += 64) {
    const chunk = await Promise.all(seqs.slice(i, i + 64).map((seq) => jsm.streams.getMessage(stream, { seq })));
    for (const message of chunk) {
      if (message === null) continue;
      messages.push({
        seq: message.seq,
        subject: message.subject,
        msgId: message.header?.get('Nats-Msg-Id') || null,
        envelope: message.json(),
      });
    }
  }
  return messages;
}

export async function deleteStream(jsm: JetStreamManager, stream: string): Promise<void> {
  try {
    await jsm.streams.delete(stream);
  } catch {
    // never created (a test failed early), or already gone
  }
}

// --- metrics ---------------------------------------------------------------------------------

export async function scrape(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (response.status !== 200) throw new Error(`GET ${baseUrl}/metrics answered ${response.status}`);
  return response.text();
}

/**
 * The sum of a metric's samples in Prometheus text (over every label set, or those that have
 * `labels`); 0 when there is none.
 */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (match[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]] = pair[2];
    if (Object.entries(labels).every(([label, value]) => have[label] === value)) sum += Number(match[4]);
  }
  return sum;
}

// --- waiting ---------------------------------------------------------------------------------

/** Polls `probe` until it returns something other than undefined; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string | (() => string), probe: () => Promise<T | undefined>, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(everyMs);
  }
}

// --- a runner that works jobs in a loop ------------------------------------------------------

/**
 * A simulated runner on its own socket: `ready`, takes the pushed job, `running`, works a few
 * milliseconds (heartbeating at the welcome's interval meanwhile, as a real runner does, so a
 * loaded machine that delays its report does not time the job out), `completed` (exit 0), and
 * `ready` again, until stopped. Everything it was told
 * that was not part of that loop is kept in `unexpected`.
 */
export class LoopingRunner {
  readonly jobs: { id: string; attempt: number }[] = [];
  readonly unexpected: Frame[] = [];
  completed = 0;
  private stopped = false;
  /** Heartbeats of the jobs held, as a real runner sends them, so a busy machine does not time them out. */
  private readonly heartbeats = new Map<string, NodeJS.Timeout>();

  constructor(
    readonly runner: TestRunner,
    readonly id: string,
    /** How long the job `id` "runs" before the runner reports it completed. */
    private readonly workMs: (id: string) => number,
  ) {}

  start(): void {
    this.runner.socket.on('message', (data) => this.onFrame(JSON.parse(data.toString()) as Frame));
    this.runner.socket.on('close', () => {
      for (const timer of this.heartbeats.values()) clearInterval(timer);
      this.heartbeats.clear();
    });
    this.runner.send({ type: 'ready' });
  }

  stop(): void {
    this.stopped = true;
  }

  private onFrame(frame: Frame): void {
    if (frame.type === 'job') {
      const job = frame.job as { id: string; attempt: number };
      this.jobs.push({ id: job.id, attempt: job.attempt });
      this.hold(job.id, job.attempt);
      this.runner.send({ type: 'running', job: job.id, attempt: job.attempt });
    } else if (frame.type === 'ack' && frame.of === 'running') {
      const job = frame.job as string;
      setTimeout(() => {
        // No heartbeat after the report: the job may be completed before its ack comes back.
        this.release(job);
        this.runner.send({ type: 'completed', job, attempt: frame.attempt, exitCode: 0, stdout: 'ok\n' });
      }, this.workMs(job));
    } else if (frame.type === 'ack' && frame.of === 'completed') {
      this.completed++;
      if (!this.stopped) this.runner.send({ type: 'ready' });
    } else if (!(frame.type === 'welcome' || (frame.type === 'ack' && frame.of === 'heartbeat'))) {
      this.unexpected.push(frame);
    }
  }

  private hold(job: string, attempt: number): void {
    const welcome = this.runner.received.find((frame) => frame.type === 'welcome');
    const intervalMs = typeof welcome?.heartbeatIntervalMs === 'number' ? welcome.heartbeatIntervalMs : 1_000;
    this.release(job);
    this.heartbeats.set(
      job,
      setInterval(() => this.runner.send({ type: 'heartbeat', job, attempt }), intervalMs),
    );
  }

  private release(job: string): void {
    clearInterval(this.heartbeats.get(job));
    this.heartbeats.delete(job);
  }
}
