/**
 * A realistic history for the rebuild benchmark, written FAST through the real write path:
 * `EventStore.append` in transactions of its own (the append first, then the inline views the
 * services write in the same transaction), organizations, specs and runners as their services
 * shape them, and job lifecycles decided command by command by the job machine (`decide`), so
 * every stream is one the services could have written.
 *
 * Speed comes from appending a job's whole lifecycle in one append (one transaction per job, the
 * store allows nothing else), several writer connections in parallel, and
 * `synchronous_commit = off` on those connections (setup, not what is measured).
 */
import { createHash, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { ManualClock } from '#src/common/clock';
import { UuidV7Generator } from '#src/common/ids';
import type { DomainEvent, EventEnvelope, EventMetadata } from '#src/events/envelope';
import { PLAN_PRIORITY, type JobEvent, type JobOutputSummary, type Plan } from '#src/events/job-events';
import { PLANS as PLAN_RULES } from '#src/events/plans';
import type { OrgEvent } from '#src/events/org-events';
import type { RunnerEvent } from '#src/events/runner-events';
import type { Architecture, SpecEvent } from '#src/events/spec-events';
import { type JobCommand, type JobState, decide, evolve } from '#src/machines/job.machine';
import type { Db, QueryResultRows, Sql } from '#src/modules/database/db';
import { EventStore } from '#src/modules/event-store/event-store';
import { JOB_STREAM, saveJobStates } from '#src/modules/jobs/job.views';
import { JobsRepository } from '#src/modules/jobs/jobs.repository';
import { ORG_STREAM } from '#src/modules/orgs/org';
import { orgViews } from '#src/modules/orgs/org.views';
import { RUNNER_STREAM } from '#src/modules/runners/runner';
import { runnerViews } from '#src/modules/runners/runner.views';
import { SPEC_STREAM, specViews } from '#src/modules/specs/specs';

/** Bump when the history's shape changes: a cached database of another version is regenerated. */
export const HISTORY_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (the ids are random UUIDv7s; everything else follows the seed)

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Random {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  float(): number {
    return this.next();
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  /** Exponentially distributed with the given mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
  /** Log-normal around `median` (sigma in natural-log units). */
  logNormal(median: number, sigma: number): number {
    const u = 1 - this.next();
    const v = this.next();
    return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
  }
  /** An index in [0, n) weighted towards the front (a few big customers, many small ones). */
  skewed(n: number): number {
    return Math.min(n - 1, Math.floor(n * Math.pow(this.next(), 2.2)));
  }
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    let x = this.next();
    const entries = Object.entries(weights) as [K, number][];
    for (const [key, weight] of entries) {
      if ((x -= weight) < 0) return key;
    }
    return entries[entries.length - 1][0];
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// ---------------------------------------------------------------------------------------------
// Writing: one pg connection per writer, the event store on it, one append per transaction

/** `Sql` over one node-postgres connection (the store and the views take any `Sql`). */
class ClientSql implements Sql {
  constructor(private readonly client: Client) {}

  async query<T = Record<string, unknown>>(text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    const result = await this.client.query(text, params as unknown[]);
    return { rows: result.rows as T[], rowCount: result.rowCount ?? 0 };
  }
}

type Project<E extends DomainEvent> = (tx: Sql, envelopes: readonly EventEnvelope<E>[]) => Promise<void>;

/** A writer connection: appends as CommandHandler does (append first, then the inline views, one transaction). */
class Writer {
  readonly clock = new ManualClock();
  private committing: Promise<unknown> = Promise.resolve();
  private readonly store: EventStore;
  private readonly sql: ClientSql;

  private constructor(
    private readonly client: Client,
    db: Db,
  ) {
    this.sql = new ClientSql(client);
    this.store = new EventStore(db, this.clock, new UuidV7Generator(this.clock));
  }

  static async open(url: string, db: Db): Promise<Writer> {
    const client = new Client({ connectionString: url, application_name: 'runway-bench-history' });
    await client.connect();
    // Setup, not the measurement: no WAL flush wait per commit (a crash could only lose the history).
    await client.query('SET synchronous_commit = off');
    return new Writer(client, db);
  }

  /**
   * Appends `events` to the stream at `expectedVersion`, at time `at`, and writes the inline views.
   * BEGIN and COMMIT are pipelined: node-postgres sends queries in order on its connection, so
   * BEGIN goes out with the append, and the COMMIT is only awaited by the next append (or `flush`).
   */
  async append<E extends DomainEvent>(
    stream: { id: string; type: string },
    expectedVersion: number,
    events: readonly E[],
    metadata: EventMetadata,
    at: Date,
    project: Project<E>,
  ): Promise<void> {
    const previous = this.committing;
    const begin = this.client.query('BEGIN');
    await previous;
    await begin;
    this.clock.set(at);
    try {
      const { envelopes } = await this.store.append(this.sql, stream, expectedVersion, events, metadata);
      await project(this.sql, envelopes);
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
    this.committing = this.client.query('COMMIT');
    // Awaited by the next append or flush(); never left unhandled meanwhile.
    this.committing.catch(() => undefined);
  }

  /** Waits for the last COMMIT. */
  async flush(): Promise<void> {
    await this.committing;
  }

  async close(): Promise<void> {
    await this.committing.catch(() => undefined);
    await this.client.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The catalog: specs, organizations (keys, projects), runners

interface SpecInfo {
  id: string;
  slug: string;
  architecture: Architecture;
}
interface OrgInfo {
  id: string;
  slug: string;
  plan: Plan;
  keyIds: string[];
  projectIds: string[];
}
interface RunnerInfo {
  id: string;
  specIds: string[];
  fingerprint: Record<string, unknown>;
  version: number;
  connectionId: string;
}

export interface HistoryOptions {
  url: string;
  db: Db;
  /** Events to write, at least. */
  targetEvents: number;
  writers: number;
  seed?: number;
  /** Called now and then with the events written so far. */
  progress?: (events: number) => void;
}

export interface HistoryReport {
  events: number;
  jobs: number;
  orgs: number;
  projects: number;
  specs: number;
  runners: number;
  eventsByType: Record<string, number>;
  jobsByOutcome: Record<string, number>;
  seconds: { catalog: number; jobs: number; total: number };
}

const HISTORY_START = Date.parse('2026-01-05T00:00:00.000Z');
const SECOND = 1000;
const ARCHES: readonly Architecture[] = ['x86_64', 'x86_64', 'x86_64', 'aarch64', 'riscv64'];
const PLANS: Readonly<Record<Plan, number>> = { enterprise: 0.1, team: 0.4, free: 0.4, unclaimed: 0.1 };
const BENCHES = ['parse', 'codegen', 'link', 'alloc', 'hash', 'sort', 'regex', 'json', 'http', 'sqlite', 'zstd', 'render'];

/**
 * How jobs end, as a share of all jobs. The lifecycles are decided by the job machine, so each
 * is one the service would record (requeues before running, cancels from pending, claimed and
 * running, timeouts, lost runners, and a few still in flight at the end).
 */
const OUTCOMES = {
  completed: 0.7,
  failed: 0.09,
  requeuedThenCompleted: 0.07,
  canceledRunning: 0.04,
  timedOut: 0.02,
  canceledPending: 0.03,
  canceledClaimed: 0.01,
  claimTimeout: 0.015,
  heartbeatTimeout: 0.015,
  stillPending: 0.005,
  stillRunning: 0.005,
} as const;

const iso = (ms: number) => new Date(ms).toISOString();

/** Writes the history; returns what it wrote. */
export async function writeHistory(options: HistoryOptions): Promise<HistoryReport> {
  const started = performance.now();
  const random = new Random(options.seed ?? 20260105);
  const idClock = new ManualClock(iso(HISTORY_START));
  const ids = new UuidV7Generator(idClock);
  const writers = await Promise.all(Array.from({ length: options.writers }, () => Writer.open(options.url, options.db)));
  const jobsRepository = new JobsRepository(options.db);
  const eventsByType: Record<string, number> = {};
  const jobsByOutcome: Record<string, number> = {};
  let events = 0;
  const count = (list: readonly DomainEvent[]) => {
    for (const e of list) eventsByType[e.type] = (eventsByType[e.type] ?? 0) + 1;
    events += list.length;
  };
  const admin: EventMetadata = { correlationId: '', causationId: null, actor: 'admin' };
  const adminMetadata = (): EventMetadata => ({ ...admin, correlationId: randomUUID() });

  // The catalog scales with the log: ~1 org per 3,500 events, ~1 runner per 4,000.
  const orgCount = Math.max(8, Math.min(300, Math.round(options.targetEvents / 3_500)));
  const runnerCount = Math.max(8, Math.min(250, Math.round(options.targetEvents / 4_000)));
  const specCount = Math.max(3, Math.min(12, Math.round(runnerCount / 20)));

  try {
    // Specs, organizations and runners: a few thousand events, in parallel like the rest.
    const specs: SpecInfo[] = Array.from({ length: specCount }, (_, i) => ({
      id: ids.next(),
      slug: `bench-${i}-${['4c', '8c', '16c', '32c', '64c'][i % 5]}`,
      architecture: ARCHES[i % ARCHES.length],
    }));
    const orgs: OrgInfo[] = [];
    const runners: RunnerInfo[] = [];
    const catalog: ((w: Writer) => Promise<void>)[] = [];
    for (const spec of specs) {
      const cpu = 2 ** random.int(2, 7);
      const created: SpecEvent = {
        type: 'SpecCreated',
        schemaVersion: 1,
        data: { specId: spec.id, slug: spec.slug, name: `${spec.architecture} ${cpu} cores`, architecture: spec.architecture, cpu, memory: cpu * 4 * 2 ** 30, disk: 2 ** 39, network: random.chance(0.2) },
      };
      count([created]);
      catalog.push((w) => w.append({ id: spec.id, type: SPEC_STREAM }, 0, [created], adminMetadata(), new Date(HISTORY_START), (tx, e) => specViews.apply(tx, e)));
    }
    for (let i = 0; i < orgCount; i++) {
      const org: OrgInfo = { id: ids.next(), slug: `org-${i}`, plan: random.weighted(PLANS), keyIds: [], projectIds: [] };
      const history: OrgEvent[] = [
        { type: 'OrgCreated', schemaVersion: 1, data: { orgId: org.id, slug: org.slug, name: `Organization ${i}`, plan: org.plan, maxConcurrency: null } },
      ];
      for (let k = random.int(1, 3); k > 0; k--) {
        const keyId = ids.next();
        org.keyIds.push(keyId);
        history.push({ type: 'OrgKeyCreated', schemaVersion: 1, data: { keyId, name: `ci-${k}`, keyHash: sha256(`key-${keyId}`) } });
      }
      if (org.keyIds.length > 1 && random.chance(0.3)) {
        history.push({ type: 'OrgKeyRevoked', schemaVersion: 1, data: { keyId: org.keyIds.pop() as string } });
      }
      for (let p = random.int(1, 10); p > 0; p--) {
        const projectId = ids.next();
        org.projectIds.push(projectId);
        history.push({ type: 'ProjectCreated', schemaVersion: 1, data: { projectId, slug: `project-${p}`, name: `Project ${p}` } });
      }
      if ((org.plan === 'team' || org.plan === 'enterprise') && random.chance(0.25)) {
        history.push({ type: 'OrgUpdated', schemaVersion: 1, data: { maxConcurrency: random.int(2, 50) } });
      }
      orgs.push(org);
      count(history);
      catalog.push((w) => w.append({ id: org.id, type: ORG_STREAM }, 0, history, adminMetadata(), new Date(HISTORY_START), (tx, e) => orgViews.apply(tx, e)));
    }
    for (let i = 0; i < runnerCount; i++) {
      // Every spec has runners; some runners serve two specs.
      const own = specs[i % specs.length];
      const specIds = random.chance(0.25) ? [...new Set([own.id, random.pick(specs).id])] : [own.id];
      const runner: RunnerInfo = {
        id: ids.next(),
        specIds,
        fingerprint: { cpuModel: own.architecture === 'x86_64' ? 'AMD EPYC 9454P' : 'Ampere Altra Q80-30', cores: 2 ** random.int(2, 7), memory: 2 ** random.int(34, 39), kernel: '6.8.0-45-generic', arch: own.architecture },
        version: 0,
        connectionId: randomUUID(),
      };
      const history: RunnerEvent[] = [
        { type: 'RunnerRegistered', schemaVersion: 1, data: { runnerId: runner.id, slug: `runner-${i}`, name: `Runner ${i}`, specIds, tokenHash: sha256(`runner-${runner.id}`) } },
      ];
      if (random.chance(0.2)) history.push({ type: 'RunnerTokenRotated', schemaVersion: 1, data: { tokenHash: sha256(`runner-${runner.id}-2`) } });
      history.push({ type: 'RunnerConnected', schemaVersion: 1, data: { connectionId: runner.connectionId, gateway: `gateway-${i % 3}`, agentVersion: '1.4.2', capacity: 1, fingerprint: runner.fingerprint } });
      runner.version = history.length;
      runners.push(runner);
      catalog.push((w) => w.append({ id: runner.id, type: RUNNER_STREAM }, 0, history, adminMetadata(), new Date(HISTORY_START), (tx, e) => runnerViews.apply(tx, e)));
      count(history);
    }
    // Specs first (runners and jobs point at them), then organizations and runners.
    await runParallel(writers, catalog.slice(0, specs.length));
    await runParallel(writers, catalog.slice(specs.length));
    const catalogSeconds = (performance.now() - started) / 1000;
    options.progress?.(events);

    // Jobs, until the log holds the target (less the runners' last reconnections).
    const runnersBySpec = new Map(specs.map((s) => [s.id, runners.filter((r) => r.specIds.includes(s.id))]));
    const jobTarget = options.targetEvents - Math.ceil(runnerCount / 3) * 2;
    let jobs = 0;
    let lastReport = events;
    const nextJob = (): { stream: string; events: JobEvent[]; state: JobState; metadata: EventMetadata; at: Date; idempotency: { orgId: string; key: string; requestHash: string; jobIds: string[]; at: string } | null } | null => {
      if (events >= jobTarget) return null;
      const index = jobs++;
      const org = orgs[random.skewed(orgs.length)];
      const spec = random.pick(specs);
      const candidates = runnersBySpec.get(spec.id) as RunnerInfo[];
      const outcome = random.weighted(OUTCOMES);
      jobsByOutcome[outcome] = (jobsByOutcome[outcome] ?? 0) + 1;
      const submittedAt = HISTORY_START + index * 30 * SECOND + random.int(0, 29_999);
      idClock.set(iso(submittedAt));
      const jobId = ids.next();
      const { maxTimeout, defaultTimeout } = PLAN_RULES[org.plan];
      const timeout = outcome === 'timedOut' ? Math.min(maxTimeout ?? 900, random.pick([300, 600, 900])) : defaultTimeout;
      const idempotency = random.chance(0.25) ? { key: `build-${index}`, requestHash: sha256(`request-${index}`) } : null;
      const bench = random.pick(BENCHES);
      const job: Extract<JobCommand, { type: 'submit' }>['job'] = {
        jobId,
        orgId: org.id,
        projectId: random.pick(org.projectIds),
        spec: spec.slug,
        specId: spec.id,
        plan: org.plan,
        priority: PLAN_PRIORITY[org.plan],
        image: random.chance(0.6) ? `ghcr.io/org-${org.slug}/bench@sha256:${sha256(bench + spec.slug)}` : null,
        cmd: ['cargo', 'bench', '--bench', bench, '--', '--save-baseline', `run-${index}`],
        entrypoint: null,
        env: { RUSTFLAGS: '-C target-cpu=native', BENCH_ITERATIONS: String(random.int(10, 1000)), GIT_SHA: sha256(String(index)).slice(0, 40) },
        timeout,
        filePaths: random.chance(0.5) ? ['target/criterion/report.json'] : [],
        maxAttempts: outcome === 'requeuedThenCompleted' ? random.int(2, 3) : outcome === 'claimTimeout' ? 1 : random.int(1, 3),
        sourceIp: `10.${random.int(0, 255)}.${random.int(0, 255)}.${random.int(1, 254)}`,
        idempotency,
      };

      let state: JobState | null = null;
      const lifecycle: JobEvent[] = [];
      let at = submittedAt;
      const step = (command: JobCommand) => {
        for (const event of decide(state, command)) {
          state = evolve(state, event);
          lifecycle.push(event);
        }
      };
      const runner = random.pick(candidates);
      const output = (exitCode: number): JobOutputSummary => ({
        stdout: { bytes: random.int(100, 200_000), sha256: sha256(`out-${jobId}`) },
        stderr: { bytes: exitCode === 0 ? 0 : random.int(10, 5_000), sha256: sha256(`err-${jobId}`) },
        files: job.filePaths.map((path) => ({ path, bytes: random.int(1_000, 90_000), sha256: sha256(`${path}-${jobId}`) })),
        truncated: false,
      });
      const claim = (r: RunnerInfo) => {
        at += Math.round(random.exp(45 * SECOND)) + 10;
        step({ type: 'claim', at: iso(at), runnerId: r.id });
      };
      const start = (r: RunnerInfo, attempt: number) => {
        at += random.int(200, 5_000);
        step({ type: 'start', at: iso(at), runnerId: r.id, attempt, fingerprint: r.fingerprint });
      };
      // Most runs take minutes; some finish within the second (0 billed minutes).
      const run = () => (at += random.chance(0.02) ? random.int(0, 999) : Math.min(timeout * SECOND, Math.round(random.logNormal(240, 1.1) * SECOND)));

      step({ type: 'submit', at: iso(at), job });
      switch (outcome) {
        case 'completed':
        case 'failed': {
          claim(runner);
          start(runner, 1);
          run();
          if (outcome === 'completed') step({ type: 'complete', at: iso(at), runnerId: runner.id, attempt: 1, exitCode: 0, output: output(0) });
          else {
            const exitCode = random.int(1, 255);
            step({ type: 'fail', at: iso(at), runnerId: runner.id, attempt: 1, error: `exit status ${exitCode}`, exitCode, output: output(exitCode) });
          }
          break;
        }
        case 'requeuedThenCompleted': {
          claim(runner);
          at += 60 * SECOND + random.int(1, 999);
          step({ type: random.chance(0.5) ? 'claimTimeout' : 'heartbeatTimeout', at: iso(at), attempt: 1 });
          const second = random.pick(candidates);
          claim(second);
          start(second, 2);
          run();
          step({ type: 'complete', at: iso(at), runnerId: second.id, attempt: 2, exitCode: 0, output: output(0) });
          break;
        }
        case 'canceledRunning':
        case 'timedOut': {
          claim(runner);
          start(runner, 1);
          if (outcome === 'canceledRunning') {
            run();
            step({ type: 'cancel', at: iso(at), reason: `canceled by key:${org.keyIds[0]}` });
          } else {
            at += timeout * SECOND + 60 * SECOND + random.int(1, 999);
            step({ type: 'jobTimeout', at: iso(at), attempt: 1 });
          }
          at += random.int(100, 3_000);
          step({ type: 'acknowledgeCancel', at: iso(at), runnerId: runner.id, attempt: 1 });
          break;
        }
        case 'canceledPending':
          at += random.int(1, 600) * SECOND;
          step({ type: 'cancel', at: iso(at), reason: `canceled by key:${org.keyIds[0]}` });
          break;
        case 'canceledClaimed':
          claim(runner);
          at += random.int(100, 3_000);
          step({ type: 'cancel', at: iso(at), reason: 'canceled by admin' });
          at += random.int(100, 3_000);
          step({ type: 'acknowledgeCancel', at: iso(at), runnerId: runner.id, attempt: 1 });
          break;
        case 'claimTimeout':
          claim(runner);
          at += 60 * SECOND + random.int(1, 999);
          step({ type: 'claimTimeout', at: iso(at), attempt: 1 });
          break;
        case 'heartbeatTimeout':
          claim(runner);
          start(runner, 1);
          run();
          at += 30 * SECOND;
          step({ type: 'heartbeatTimeout', at: iso(at), attempt: 1 });
          break;
        case 'stillPending':
          break;
        case 'stillRunning':
          claim(runner);
          start(runner, 1);
          break;
        default: {
          const _exhaustive: never = outcome;
          throw new Error(`unknown outcome ${String(_exhaustive)}`);
        }
      }
      count(lifecycle);
      if (events - lastReport >= 100_000) {
        lastReport = events;
        options.progress?.(events);
      }
      return {
        stream: jobId,
        events: lifecycle,
        state: state as unknown as JobState,
        // One append, one metadata: the submitting key's (no view reads the actor).
        metadata: { correlationId: randomUUID(), causationId: null, actor: `key:${org.keyIds[0]}` },
        at: new Date(at),
        idempotency: idempotency === null ? null : { orgId: org.id, ...idempotency, jobIds: [jobId], at: iso(submittedAt) },
      };
    };
    const jobsStarted = performance.now();
    await Promise.all(
      writers.map(async (w) => {
        for (let job = nextJob(); job !== null; job = nextJob()) {
          const { state, idempotency } = job;
          await w.append({ id: job.stream, type: JOB_STREAM }, 0, job.events, job.metadata, job.at, async (tx) => {
            // What JobCommands and JobsService.submit write with the events.
            await saveJobStates(tx, [state]);
            if (idempotency !== null) {
              const claimed = await jobsRepository.claimIdempotencyKey(tx, { ...idempotency, since: new Date(Date.parse(idempotency.at) - 86_400_000) });
              if (!claimed) throw new Error(`Idempotency-Key ${idempotency.key} was taken`);
            }
          });
        }
        await w.flush();
      }),
    );

    // A third of the runners reconnected at the end of the history.
    const end = HISTORY_START + jobs * 30 * SECOND;
    await runParallel(
      writers,
      runners
        .filter((_, i) => i % 3 === 0)
        .map((runner) => (w: Writer) => {
          const next = randomUUID();
          const history: RunnerEvent[] = [
            { type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId: runner.connectionId, reason: 'closed' } },
            { type: 'RunnerConnected', schemaVersion: 1, data: { connectionId: next, gateway: 'gateway-0', agentVersion: '1.4.3', capacity: 1, fingerprint: runner.fingerprint } },
          ];
          count(history);
          const version = runner.version;
          runner.version += history.length;
          runner.connectionId = next;
          return w.append({ id: runner.id, type: RUNNER_STREAM }, version, history, { correlationId: randomUUID(), causationId: null, actor: `runner:${runner.id}` }, new Date(end), (tx, e) =>
            runnerViews.apply(tx, e),
          );
        }),
    );
    options.progress?.(events);
    const done = performance.now();
    return {
      events,
      jobs,
      orgs: orgs.length,
      projects: orgs.reduce((n, o) => n + o.projectIds.length, 0),
      specs: specs.length,
      runners: runners.length,
      eventsByType,
      jobsByOutcome,
      seconds: { catalog: catalogSeconds, jobs: (done - jobsStarted) / 1000, total: (done - started) / 1000 },
    };
  } finally {
    await Promise.all(writers.map((w) => w.close()));
  }
}

/** Runs every task on the first free writer. */
async function runParallel(writers: readonly Writer[], tasks: readonly ((w: Writer) => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(
    writers.map(async (w) => {
      while (next < tasks.length) await tasks[next++](w);
      await w.flush();
    }),
  );
}
