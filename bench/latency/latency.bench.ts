/**
 * Dispatch latency: with runners idle and waiting (`ready` sent), jobs are submitted one at a
 * time, and each is timed from the submission's HTTP response to its `job` frame arriving at a
 * runner. Runners live in this process, so both ends read one clock. Beside it, graphile-worker's
 * time from `addJob` resolving to the task function starting, measured the same way, at its
 * defaults and with its local queue. See bench/README.md.
 *
 *   npm run build && node dist/bench/latency/latency.bench.js [--smoke] [--jobs N] [--runners 1,8]
 *     [--systems LIST] [--json FILE]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkerEvents } from 'graphile-worker';
import { HttpClient } from '../support/http';
import { DEFAULT_PEER_SETTINGS, type PeerProducer, type PeerVariant, newEvents, startPeerProducer, startPeerWorker } from '../support/peers';
import { dropDatabase, freshDatabase, serverSettings } from '../support/postgres';
import { type Frame, type PushedJob, RunnerSocket } from '../support/runner-socket';
import { COMMON_FLAGS, counts, parseFlags, pick } from '../support/args';
import { NATS_URL, deleteJetStream } from '../support/runway-deployment';
import { BENCH_ADMIN_TOKEN, RunwayServer } from '../support/runway-server';
import { createTenant, jobBody } from '../support/runway-tenant';
import { percentile, printTable, sleep } from '../support/stats';

const SYSTEMS = ['runway-single', 'runway-split', 'graphile-default', 'graphile-local-queue'] as const;
type SystemName = (typeof SYSTEMS)[number];

interface Options {
  smoke: boolean;
  jobs: number;
  warmup: number;
  /** Pause after each job once the runners (workers) are idle, so stray claims (fetches) settle. */
  settleMs: number;
  runners: number[];
  systems: SystemName[];
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  // --seconds and --runs: bench/run.ts passes them to every benchmark; a run here is a number of jobs.
  const flags = parseFlags(argv, { ...COMMON_FLAGS, '--jobs': 'count', '--warmup': 'count', '--settle': 'whole', '--runners': 'list', '--systems': 'list' });
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    jobs: flags['--jobs'] ?? 2_000,
    warmup: flags['--warmup'] ?? 50,
    settleMs: flags['--settle'] ?? 5,
    runners: flags['--runners'] ? counts('--runners', flags['--runners']) : [1, 8],
    systems: flags['--systems'] ? pick('--systems', flags['--systems'], SYSTEMS) : [...SYSTEMS],
    json: flags['--json'] ?? null,
  };
  if (options.smoke) Object.assign(options, { jobs: 30, warmup: 5, runners: [2] });
  return options;
}

/** One job's timings, ms. */
interface Sample {
  /** From the submission returning (HTTP response read; addJob resolved) to the job reaching a runner (task started). */
  fromResponse: number;
  /** From the submission starting (request sent; addJob called) to the same. */
  fromRequest: number;
}

interface Distribution {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

interface VariantResult {
  system: SystemName;
  runners: number;
  jobs: number;
  description: string;
  fromResponse: Distribution;
  fromRequest: Distribution;
  /** Jobs whose `job` frame arrived before the HTTP response did (fromResponse <= 0). */
  beforeResponse: number;
  seconds: number;
}

function distribution(values: readonly number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1],
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

function result(system: SystemName, runners: number, description: string, samples: Sample[], seconds: number): VariantResult {
  return {
    system,
    runners,
    jobs: samples.length,
    description,
    fromResponse: distribution(samples.map((s) => s.fromResponse)),
    fromRequest: distribution(samples.map((s) => s.fromRequest)),
    beforeResponse: samples.filter((s) => s.fromResponse <= 0).length,
    seconds,
  };
}

// --- Runway ----------------------------------------------------------------------------------------

const RUNWAY_ENV = {
  RUNWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '1000000000',
  RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '1000000000',
  RUNWAY_API_REQUESTS_PER_MINUTE: '1000000000',
  RUNWAY_SOCKET_MESSAGES_PER_SECOND: '1000000000',
};

/** A waiting runner that records when its `job` frame arrives. */
class IdleRunner {
  private arrival: { resolve: (job: { job: PushedJob; at: number; runner: IdleRunner }) => void } | null = null;
  private replies: ((frame: Frame) => void)[] = [];

  constructor(readonly socket: RunnerSocket) {
    socket.onFrame = (frame) => {
      const at = performance.now();
      if (frame.type === 'job') {
        const waiter = this.arrival;
        this.arrival = null;
        if (waiter === null) throw new Error(`a job nobody waited for: ${JSON.stringify(frame)}`);
        waiter.resolve({ job: frame.job as PushedJob, at, runner: this });
      } else {
        const reply = this.replies.shift();
        if (reply === undefined) throw new Error(`unexpected frame ${JSON.stringify(frame)}`);
        reply(frame);
      }
    };
  }

  expectJob(): Promise<{ job: PushedJob; at: number; runner: IdleRunner }> {
    return new Promise((resolve) => (this.arrival = { resolve }));
  }

  cancelExpect(): void {
    this.arrival = null;
  }

  private request(frame: Record<string, unknown>): Promise<Frame> {
    return new Promise((resolve) => {
      this.replies.push(resolve);
      this.socket.send(frame);
    });
  }

  /**
   * Runs the job (a no-op) to completion and waits again: `running` and `completed` (each
   * acknowledged), then `ready`, then a `heartbeat` for the finished job, which the gateway
   * handles after the `ready` (a socket's frames are handled in order) and refuses with an error:
   * once that error is back, the runner surely waits idle again.
   */
  async finish(job: PushedJob): Promise<void> {
    const running = await this.request({ type: 'running', job: job.id, attempt: job.attempt });
    if (running.type !== 'ack') throw new Error(`running: ${JSON.stringify(running)}`);
    const completed = await this.request({ type: 'completed', job: job.id, attempt: job.attempt, exitCode: 0 });
    if (completed.type !== 'ack') throw new Error(`completed: ${JSON.stringify(completed)}`);
    this.socket.send({ type: 'ready' });
    const fence = await this.request({ type: 'heartbeat', job: job.id, attempt: job.attempt });
    if (fence.type !== 'error') throw new Error(`fence: ${JSON.stringify(fence)}`);
  }
}

async function runwayVariants(system: 'runway-single' | 'runway-split', options: Options): Promise<VariantResult[]> {
  const split = system === 'runway-split';
  const dbName = `runway_bench_latency_${split ? 'split' : 'single'}`;
  const url = await freshDatabase(dbName);
  const prefix = `rwbench${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'runway-bench-'));
  const env: Record<string, string> = { ...RUNWAY_ENV, DATABASE_URL: url, RUNWAY_DATA_DIR: dataDir };
  if (split) Object.assign(env, { NATS_URL, RUNWAY_NATS_PREFIX: prefix });
  const servers = split
    ? [await RunwayServer.start(`${system}-api`, { roles: 'api,relay,projector', env }), await RunwayServer.start(`${system}-gateway`, { roles: 'gateway', env })]
    : [await RunwayServer.start(system, { env })];
  const api = new HttpClient(servers[0].url, 4);
  const results: VariantResult[] = [];
  try {
    await Promise.all(servers.map((s) => s.waitReady()));
    const gateway = servers[servers.length - 1].url;
    const tenant = await createTenant(api, Math.max(...options.runners));
    const body = jobBody(tenant.spec);
    for (const count of options.runners) {
      const runners = await Promise.all(tenant.runners.slice(0, count).map(async (r, i) => new IdleRunner(await RunnerSocket.hello(gateway, r.token, `latency-${i}`))));
      for (const runner of runners) runner.socket.send({ type: 'ready' });
      await sleep(300);
      const one = async (): Promise<Sample> => {
        const arrivals = runners.map((r) => r.expectJob());
        const t0 = performance.now();
        await api.call('POST', `/v1/projects/${tenant.project}/jobs`, { token: tenant.key, body, expect: 201 });
        const t1 = performance.now();
        const got = await Promise.race(arrivals);
        for (const runner of runners) if (runner !== got.runner) runner.cancelExpect();
        await got.runner.finish(got.job);
        await sleep(options.settleMs);
        return { fromResponse: got.at - t1, fromRequest: got.at - t0 };
      };
      for (let i = 0; i < options.warmup; i++) await one();
      const samples: Sample[] = [];
      const started = performance.now();
      for (let i = 0; i < options.jobs; i++) samples.push(await one());
      const description = split ? 'Runway, api,relay,projector + gateway over NATS' : 'Runway, every role in one process';
      results.push(result(system, count, description, samples, (performance.now() - started) / 1000));
      progress(results[results.length - 1]);
      await Promise.all(runners.map((r) => r.socket.close()));
    }
  } finally {
    api.close();
    await Promise.all(servers.map((s) => s.stop()));
    await dropDatabase(dbName);
    if (split) await deleteJetStream(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}

// --- graphile-worker ---------------------------------------------------------------------------------

/**
 * graphile-worker in this process: `addJob` from a producer, the task function marks when it
 * starts. After each job it waits until the workers are idle again (they asked for the next job
 * and found none), so every job finds them waiting, as Runway's runners are.
 */
async function graphileVariants(system: 'graphile-default' | 'graphile-local-queue', options: Options): Promise<VariantResult[]> {
  const variant: PeerVariant = system === 'graphile-default' ? 'default' : 'tuned';
  const dbName = `runway_bench_latency_graphile_${variant}`;
  const url = await freshDatabase(dbName);
  const results: VariantResult[] = [];
  let producer: PeerProducer | null = null;
  try {
    for (const count of options.runners) {
      const events: WorkerEvents = newEvents();
      let started: ((at: number) => void) | null = null;
      const worker = await startPeerWorker(
        'graphile',
        variant,
        url,
        count,
        DEFAULT_PEER_SETTINGS,
        () => {
          const at = performance.now();
          started?.(at);
          started = null;
        },
        events,
      );
      try {
        producer ??= await startPeerProducer('graphile', url, 1);
        const add = producer;
        // Idle again. Default: the worker asked for its next job and found none. Local queue: the
        // queue holds no more jobs and fetches again only when nudged (a new job) or at its poll,
        // so the worker is idle once the job is complete.
        const idleEvent = variant === 'default' ? 'worker:getJob:empty' : 'job:complete';
        const idle = () =>
          new Promise<void>((resolve) => {
            const done = () => {
              clearTimeout(timer);
              events.off(idleEvent, done);
              setImmediate(resolve);
            };
            const timer = setTimeout(done, 1_000);
            events.on(idleEvent, done);
          });
        await sleep(300);
        const one = async (): Promise<Sample> => {
          const start = new Promise<number>((resolve) => (started = resolve));
          const settled = start.then(() => idle());
          const t0 = performance.now();
          await add.add();
          const t1 = performance.now();
          const at = await start;
          await settled;
          await sleep(options.settleMs);
          return { fromResponse: at - t1, fromRequest: at - t0 };
        };
        for (let i = 0; i < options.warmup; i++) await one();
        const samples: Sample[] = [];
        const begun = performance.now();
        for (let i = 0; i < options.jobs; i++) samples.push(await one());
        const description =
          variant === 'default'
            ? 'graphile-worker 0.18 defaults (LISTEN/NOTIFY wakes an idle worker)'
            : `graphile-worker 0.18, localQueue.size ${DEFAULT_PEER_SETTINGS.graphileLocalQueue}, completeJobBatchDelay 0`;
        results.push(result(system, count, description, samples, (performance.now() - begun) / 1000));
        progress(results[results.length - 1]);
      } finally {
        await worker.stop();
      }
    }
  } finally {
    await producer?.close();
    await dropDatabase(dbName);
  }
  return results;
}

// --- output ----------------------------------------------------------------------------------------

function progress(r: VariantResult): void {
  const d = r.fromResponse;
  console.log(
    `  ${r.system.padEnd(20)} ${String(r.runners).padStart(2)} runners: p50 ${d.p50.toFixed(2)} ms, p90 ${d.p90.toFixed(2)} ms, p99 ${d.p99.toFixed(2)} ms (${r.jobs} jobs, ${r.seconds.toFixed(0)} s)`,
  );
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const settings = await serverSettings();
  console.log(
    `latency benchmark: ${options.jobs} jobs one at a time after ${options.warmup} warm-up jobs, ${options.settleMs} ms apart once idle, runners ${options.runners.join(', ')}; ` +
      `PostgreSQL ${settings.version}, synchronous_commit=${settings.synchronousCommit}; ${cpus().length} cores, load average ${loadavg()[0].toFixed(1)}\n`,
  );
  const started = performance.now();
  const results: VariantResult[] = [];
  for (const system of options.systems) {
    console.log(`${system}:`);
    if (system === 'runway-single' || system === 'runway-split') results.push(...(await runwayVariants(system, options)));
    else results.push(...(await graphileVariants(system, options)));
  }
  const wallSeconds = (performance.now() - started) / 1000;
  const ms = (v: number) => v.toFixed(2);
  console.log('\nfrom the submission returning to the job reaching a runner (Runway: HTTP 201 read -> `job` frame; graphile-worker: addJob resolved -> task started), ms:\n');
  printTable(
    ['system', 'runners', 'p50', 'p90', 'p99', 'max', 'mean', 'from request p50', 'from request p99', 'before response'],
    results.map((r) => [
      r.system,
      String(r.runners),
      ms(r.fromResponse.p50),
      ms(r.fromResponse.p90),
      ms(r.fromResponse.p99),
      ms(r.fromResponse.max),
      ms(r.fromResponse.mean),
      ms(r.fromRequest.p50),
      ms(r.fromRequest.p99),
      String(r.beforeResponse),
    ]),
  );
  console.log("\n'from request': from sending the submission instead; 'before response': jobs that reached the runner before the submitter read its answer.");
  const byRunners = (system: SystemName) => results.filter((r) => r.system === system);
  const graphile = byRunners('graphile-default');
  for (const runway of ['runway-single', 'runway-split'] as const) {
    for (const r of byRunners(runway)) {
      const peer = graphile.find((g) => g.runners === r.runners);
      if (peer !== undefined) console.log(`${runway} with ${r.runners} runner(s): p50 ${(r.fromResponse.p50 / peer.fromResponse.p50).toFixed(1)}x graphile-worker's, p99 ${(r.fromResponse.p99 / peer.fromResponse.p99).toFixed(1)}x`);
    }
  }
  console.log(`\nwall time ${wallSeconds.toFixed(0)} s`);
  if (options.json !== null) {
    writeFileSync(options.json, `${JSON.stringify({ options, postgres: settings, cores: cpus().length, loadavg: loadavg(), wallSeconds, results }, null, 2)}\n`);
    console.log(`results written to ${options.json}`);
  }
}

main().then(
  // Whatever is still open (a helper's socket, a keep-alive connection) must not keep it running.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
