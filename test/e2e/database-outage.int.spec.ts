import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import { Client, Pool } from 'pg';
import { ADMIN_TOKEN, type Tenant, RestFixtures, call, jobEvents, sleep, waitFor } from '../support/cluster';
import { PrivatePostgres } from '../support/private-postgres';
import { type ChildEnv, type RunwayProcess, assertBuilt, runRunway, startRunway, stopAll } from '../support/process';

/**
 * Runway while its database goes away: a PostgreSQL server of this file's own is stopped like a
 * crash (`pg_ctl stop -m immediate`) under load and started again, and its backends are killed
 * inside transactions. The server process must outlive both, answer 503 problem+json while the
 * database is down, and afterwards finish every job it acknowledged, once, with no restart. The
 * shared PostgreSQL on 5432 is never touched.
 */

jest.setTimeout(180_000);

let pg: PrivatePostgres;
let databaseUrl: string;
let server: RunwayProcess;
let api: RestFixtures;
let tenant: Tenant;
let spec: string;
let scratch: string;
let log: Pool;
const agents: RunwayProcess[] = [];

const HEARTBEAT_TIMEOUT_MS = 8_000;

beforeAll(async () => {
  assertBuilt();
  pg = await PrivatePostgres.create();
  const admin = new Client({ connectionString: pg.url() });
  await admin.connect();
  await admin.query('CREATE DATABASE runway');
  await admin.end();
  databaseUrl = pg.url('runway');
  const env: ChildEnv = { DATABASE_URL: databaseUrl, RUNWAY_ADMIN_TOKEN: ADMIN_TOKEN };
  const migrated = await runRunway(['migrate'], env, 60_000);
  expect({ code: migrated.code, output: migrated.code === 0 ? '' : migrated.output }).toEqual({ code: 0, output: '' });
  server = await startRunway(['serve'], {
    ...env,
    RUNWAY_HEARTBEAT_INTERVAL_MS: '200',
    RUNWAY_HEARTBEAT_TIMEOUT_MS: String(HEARTBEAT_TIMEOUT_MS),
    RUNWAY_LOG_LEVEL: 'warn',
    // Three submitters 20 ms apart send up to 150 requests a second with one key when the 503s
    // come fast, past the default 6,000 a minute: the limit's 429 is right then, but this test is
    // about the outage, not the limit (on a faster machine it failed on the 429s, every time).
    RUNWAY_API_REQUESTS_PER_MINUTE: '100000000',
  });
  await server.waitReady();
  api = new RestFixtures(server.url);
  spec = (await api.spec()).slug;
  tenant = await api.tenant('team');
  scratch = await mkdtemp(join(os.tmpdir(), 'runway-outage-'));
  for (let i = 0; i < 3; i++) {
    const runner = await api.runner([spec]);
    const agent = await startRunway(
      ['runner', '--url', server.url, '--token', runner.token, '--work-dir', join(scratch, `work-${i}`), '--reconnect-max-ms', '1000'],
      { RUNWAY_LOG_LEVEL: 'debug' },
    );
    agents.push(agent);
    await waitFor(() => `agent ${i} to connect:\n${agent.output()}`, async () => (/ connected /.test(agent.stderr) ? true : undefined), 15_000);
  }
  log = new Pool({ connectionString: databaseUrl, max: 2 });
  log.on('error', () => undefined);
});

afterAll(async () => {
  await log?.end().catch(() => undefined);
  await stopAll();
  await pg?.destroy();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** Submissions as a careful client makes them: each with its own Idempotency-Key, sent again until answered 201. */
class Submitter {
  /** Idempotency-Key -> job id, for every submission answered 201. */
  readonly acknowledged = new Map<string, string>();
  readonly unanswered = new Set<string>();
  readonly statuses = new Map<number, number>();
  /** The last answer that was not an acknowledgement, by key. */
  readonly lastFailure = new Map<string, string>();
  private stopped = false;
  private loops: Promise<void>[] = [];

  start(concurrency: number): void {
    this.loops = Array.from({ length: concurrency }, () => this.loop());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const key = randomUUID();
      this.unanswered.add(key);
      await this.send(key);
      await sleep(20);
    }
  }

  /** One attempt; true once the job is acknowledged. */
  async send(key: string): Promise<boolean> {
    const response = await fetch(`${server.url}/v1/projects/${tenant.project.id}/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ spec, cmd: ['true'], timeout: 60 }),
      signal: AbortSignal.timeout(15_000),
    }).catch((error: Error) => {
      this.lastFailure.set(key, `no answer: ${error.message} ${String((error as { cause?: unknown }).cause ?? '')}`);
      return null;
    });
    if (response === null) return false;
    this.statuses.set(response.status, (this.statuses.get(response.status) ?? 0) + 1);
    const body = (await response.json()) as { id?: string; code?: string };
    if (response.status === 201 || response.status === 200) {
      this.acknowledged.set(key, body.id as string);
      this.unanswered.delete(key);
      return true;
    }
    this.lastFailure.set(key, `${response.status} ${JSON.stringify(body)}`);
    // Anything but a 503 while the database is down is a defect.
    expect({ status: response.status, code: body.code }).toEqual({ status: 503, code: 'unavailable' });
    return false;
  }

  /** Sends every unanswered submission again (same key) until each is acknowledged. */
  async settle(): Promise<void> {
    for (const key of [...this.unanswered]) {
      await waitFor(() => `submission ${key} to be acknowledged (last: ${this.lastFailure.get(key)})\n${server.output().slice(-3_000)}`, async () => ((await this.send(key)) ? true : undefined), 30_000, 200);
    }
  }
}

async function expectProcessesAlive(): Promise<void> {
  expect(server.exit).toBeNull();
  for (const agent of agents) expect(agent.exit).toBeNull();
}

/** Every acknowledged job completes, each with exactly one of each lifecycle event. */
async function expectAllCompletedOnce(ids: readonly string[]): Promise<void> {
  let statuses: Record<string, number> = {};
  await waitFor(
    () => `every acknowledged job to complete (${ids.length} jobs: ${JSON.stringify(statuses)})\n${server.output().slice(-4_000)}\n${agents.map((a) => a.stderr.slice(-1_500)).join('\n')}`,
    async () => {
      const { rows } = await log.query<{ status: string; n: string }>(
        `SELECT status, count(*) AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status`,
        [ids],
      );
      statuses = Object.fromEntries(rows.map((row) => [row.status, Number(row.n)]));
      if (statuses.completed === ids.length) return true;
      if (statuses.failed !== undefined) {
        // A job failed: nothing will make it complete; show its history.
        const failed = await log.query<{ id: string }>(`SELECT id FROM jobs WHERE id = ANY($1::uuid[]) AND status = 'failed'`, [ids]);
        const history = await jobEvents(log, failed.rows.map((row) => row.id));
        const lost = new Set(failed.rows.map((row) => row.id));
        const about = (text: string) => text.split('\n').filter((line) => [...lost].some((id) => line.includes(id)) || /error|warn/i.test(line));
        throw new Error(
          `a job failed: ${JSON.stringify(history.map((e) => [e.streamId, e.type, e.data.claimedAt ?? e.data.finishedAt ?? '', e.data.failure ?? '']))}\n` +
            `server:\n${about(server.stdout + server.stderr).slice(-40).join('\n')}\nagents:\n${agents.map((a) => about(a.stderr).slice(-30).join('\n')).join('\n--\n')}`,
        );
      }
      return undefined;
    },
    60_000,
    200,
  );
  const events = await jobEvents(log, ids);
  const counts = new Map<string, number>();
  for (const event of events) counts.set(`${event.streamId} ${event.type}`, (counts.get(`${event.streamId} ${event.type}`) ?? 0) + 1);
  for (const id of ids) {
    expect({ id, submitted: counts.get(`${id} JobSubmitted`), completed: counts.get(`${id} JobCompleted`), failed: counts.get(`${id} JobFailed`) }).toEqual({
      id,
      submitted: 1,
      completed: 1,
      failed: undefined,
    });
  }
}

test('a crash of PostgreSQL under load: 503s while it is down, every acknowledged job completes once it is back, no process exits', async () => {
  // A job that runs across the whole outage, longer than the heartbeat timeout: its runner's
  // heartbeats must keep it alive although the database cannot be asked about it.
  const long = (await call<{ id: string }>(server.url, 'POST', `/v1/projects/${tenant.project.id}/jobs`, {
    token: tenant.key,
    body: { spec, cmd: ['sleep', '12'], timeout: 60 },
    expect: 201,
  })).body.id;
  await waitFor('the long job to run', async () => ((await api.job(long)).status === 'running' ? true : undefined), 15_000);

  const submitter = new Submitter();
  submitter.start(3);
  await waitFor('some jobs under load', async () => (submitter.acknowledged.size >= 10 ? true : undefined), 20_000);

  await pg.stop('immediate');
  const downAt = Date.now();
  try {
    // While it is down: 503 problem+json with Retry-After, from the API and from /readyz.
    const submit = await fetch(`${server.url}/v1/projects/${tenant.project.id}/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenant.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ spec, cmd: ['true'] }),
    });
    expect(submit.status).toBe(503);
    expect(submit.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(Number(submit.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await submit.json()).toMatchObject({ status: 503, code: 'unavailable' });
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ code: 'unavailable' });
    const read = await fetch(`${server.url}/v1/jobs/${long}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(read.status).toBe(503);
    // Down for longer than the heartbeat timeout, with the timers, sweeps and followers all failing.
    await sleep(Math.max(0, HEARTBEAT_TIMEOUT_MS + 1_500 - (Date.now() - downAt)));
    await expectProcessesAlive();
  } finally {
    await pg.start();
  }

  await waitFor('/readyz to answer 200 again', async () => ((await fetch(`${server.url}/readyz`)).status === 200 ? true : undefined), 30_000, 100);
  await sleep(1_000);
  await submitter.stop();
  await submitter.settle();
  expect(submitter.statuses.get(503) ?? 0).toBeGreaterThan(0);

  const ids = [...submitter.acknowledged.values()];
  expect(new Set(ids).size).toBe(submitter.acknowledged.size);
  await expectAllCompletedOnce([long, ...ids]);
  await expectProcessesAlive();
  // The runners stayed connected or came back, and take new work at once.
  const after = await api.submit(tenant, spec, { cmd: ['true'] });
  await waitFor('a job submitted after the outage to complete', async () => ((await api.job(after.id)).status === 'completed' ? true : undefined), 20_000);
});

test('backends killed inside transactions under load do not end the process', async () => {
  const submitter = new Submitter();
  submitter.start(3);
  const killer = new Client({ connectionString: pg.url() });
  killer.on('error', () => undefined);
  await killer.connect();
  let killed = 0;
  try {
    for (let round = 0; round < 25; round++) {
      const { rows } = await killer.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
          WHERE datname = 'runway' AND pid <> pg_backend_pid() AND application_name NOT LIKE 'pg_%'`,
      );
      killed += rows.filter((row) => row.killed).length;
      await sleep(80);
    }
  } finally {
    await killer.end();
  }
  expect(killed).toBeGreaterThan(25);
  await sleep(500);
  await submitter.stop();
  await submitter.settle();
  await expectProcessesAlive();
  await expectAllCompletedOnce([...submitter.acknowledged.values()]);
  expect(server.stderr).not.toMatch(/Unhandled|uncaught/i);
});
