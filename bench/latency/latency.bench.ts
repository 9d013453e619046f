/**
 * Dispatch latency: with runners idle and waiting (`ready` sent), jobs are submitted one at a
 * time, and each is timed from the moment the client sends the submission (performance.now()
 * right before the HTTP request is written to the socket) to its `job` frame arriving at a
 * runner. Runners live in this process, so both ends read one clock. Beside it, graphile-worker's
 * time from calling `addJob` to the task function starting (as graphile-worker measures its own
 * add-to-start), at its defaults and with its local queue. The time from the submission's answer
 * (HTTP 201 read; addJob resolved) is kept as a secondary figure: it is negative when the job
 * reaches the runner before the submitter reads its answer. The target (p50 < 5 ms, p99 < 20 ms,
 * from the send) is checked against the figures. See bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/latency/latency.bench.js [--smoke] [--jobs N] [--runners 1,8]
 *     [--systems LIST] [--json FILE]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkerEvents } from 'graphile-worker';
import { HttpClient } from '../support/http';
import { DEFAULT_PEER_SETTINGS, type PeerProducer, type PeerVariant, newEvents, startPeerProducer, startPeerWorker } from '../support/peers';
import { dropDatabase, freshDatabase, withBenchmarkServer } from '../support/postgres';
import { INTERFACES_NOTE, type Provenance, collectProvenance, provenanceLine } from '../support/provenance';
import { type Frame, type PushedJob, RunnerSocket } from '../support/runner-socket';
import { COMMON_FLAGS, counts, parseFlags, pick } from '../support/args';
import { NATS_URL, UNTHROTTLED_ENV, deleteJetStream } from '../support/runway-deployment';
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
  /**
   * The dispatch latency: from the client sending the submission (Runway: right before the HTTP
   * request is written; graphile-worker: addJob called) to the job reaching a runner (`job`
   * frame read; task function started).
   */
  fromSend: number;
  /** Secondary: from the submission's answer (HTTP 201 read; addJob resolved) to the same; negative when the job came first. */
  fromResponse: number;
}

/** The target for Runway's dispatch latency, from the send. */
export const TARGET = { p50Ms: 5, p99Ms: 20 } as const;

interface Distribution {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

interface TargetStatus {
  p50Met: boolean;
  p99Met: boolean;
  met: boolean;
}

interface VariantResult {
  system: SystemName;
  runners: number;
  jobs: number;
  description: string;
  /** The dispatch latency (see Sample.fromSend). */
  fromSend: Distribution;
  /** Secondary (see Sample.fromResponse). */
  fromResponse: Distribution;
  /** Jobs whose `job` frame arrived before the HTTP response did (fromResponse <= 0). */
  beforeResponse: number;
  /** Runway only: TARGET against fromSend. */
  target: TargetStatus | null;
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

function targetStatus(d: Distribution): TargetStatus {
  const p50Met = d.p50 < TARGET.p50Ms;
  const p99Met = d.p99 < TARGET.p99Ms;
  return { p50Met, p99Met, met: p50Met && p99Met };
}

function result(system: SystemName, runners: number, description: string, samples: Sample[], seconds: number): VariantResult {
  const fromSend = distribution(samples.map((s) => s.fromSend));
  return {
    system,
    runners,
    jobs: samples.length,
    description,
    fromSend,
    fromResponse: distribution(samples.map((s) => s.fromResponse)),
    beforeResponse: samples.filter((s) => s.fromResponse <= 0).length,
    target: system.startsWith('runway') ? targetStatus(fromSend) : null,
    seconds,
  };
}

// --- Runway ----------------------------------------------------------------------------------------

/** The per-runner and per-key limits lifted (UNTHROTTLED_ENV): the benchmark submits and claims faster than they allow. */
const RUNWAY_ENV = { RUNWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN, ...UNTHROTTLED_ENV };

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
        let sentAt = Number.NaN;
        await api.call('POST', `/v1/projects/${tenant.project}/jobs`, { token: tenant.key, body, expect: 201, onSend: (at) => (sentAt = at) });
        const answeredAt = performance.now();
        const got = await Promise.race(arrivals);
        for (const runner of runners) if (runner !== got.runner) runner.cancelExpect();
        await got.runner.finish(got.job);
        await sleep(options.settleMs);
        return { fromSend: got.at - sentAt, fromResponse: got.at - answeredAt };
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
          const calledAt = performance.now();
          await add.add();
          const resolvedAt = performance.now();
          const at = await start;
          await settled;
          await sleep(options.settleMs);
          return { fromSend: at - calledAt, fromResponse: at - resolvedAt };
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
  const d = r.fromSend;
  console.log(
    `  ${r.system.padEnd(20)} ${String(r.runners).padStart(2)} runners: p50 ${d.p50.toFixed(2)} ms, p90 ${d.p90.toFixed(2)} ms, p99 ${d.p99.toFixed(2)} ms, max ${d.max.toFixed(2)} ms from the send (${r.jobs} jobs, ${r.seconds.toFixed(0)} s)`,
  );
}

const targetText = `p50 < ${TARGET.p50Ms} ms and p99 < ${TARGET.p99Ms} ms, from the send`;

function statusText(t: TargetStatus, d: Distribution): string {
  const part = (met: boolean, name: string, value: number, limit: number) => `${name} ${value.toFixed(2)} ms ${met ? '<' : '>='} ${limit} ms`;
  return `${t.met ? 'met' : 'NOT met'} (${part(t.p50Met, 'p50', d.p50, TARGET.p50Ms)}, ${part(t.p99Met, 'p99', d.p99, TARGET.p99Ms)})`;
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const provenance: Provenance = await collectProvenance({
    runwayEnv: RUNWAY_ENV,
    natsUrl: options.systems.includes('runway-split') ? NATS_URL : undefined,
    notes: [INTERFACES_NOTE, 'the runners (WebSocket clients) and graphile-worker run in the benchmark process, so both ends of each time read one clock'],
  });
  const where = provenanceLine(provenance);
  console.log(
    `latency benchmark: ${options.jobs} jobs one at a time after ${options.warmup} warm-up jobs, ${options.settleMs} ms apart once idle, runners ${options.runners.join(', ')}\n${where}\n`,
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
  console.log(
    '\ndispatch latency, from the client sending the submission to the job reaching a runner, ms (Runway: HTTP request written ->\n' +
      '`job` frame read at the runner; graphile-worker: addJob called -> task function started). Runway goes through REST +\n' +
      'WebSocket, graphile-worker through its library API in this process.\n',
  );
  printTable(
    where,
    ['system', 'runners', 'p50', 'p90', 'p99', 'max', 'mean', 'from answer p50', 'from answer p99', 'job before answer', `target (${TARGET.p50Ms} / ${TARGET.p99Ms} ms)`],
    results.map((r) => [
      r.system,
      String(r.runners),
      ms(r.fromSend.p50),
      ms(r.fromSend.p90),
      ms(r.fromSend.p99),
      ms(r.fromSend.max),
      ms(r.fromSend.mean),
      ms(r.fromResponse.p50),
      ms(r.fromResponse.p99),
      `${r.beforeResponse}/${r.jobs}`,
      r.target === null ? '-' : r.target.met ? 'met' : 'NOT met',
    ]),
  );
  console.log(
    "\n'from answer' (secondary): from the submitter reading its answer (HTTP 201; addJob resolved) to the same arrival; 'job before answer':\n" +
      'jobs that reached the runner before the submitter read its answer (their from-answer time is negative).',
  );
  const runwayResults = results.filter((r) => r.target !== null);
  const allMet = runwayResults.length > 0 && runwayResults.every((r) => r.target?.met === true);
  console.log(`\ntarget (${targetText}):`);
  for (const r of runwayResults) console.log(`  ${r.system} with ${r.runners} runner(s): ${statusText(r.target as TargetStatus, r.fromSend)}`);
  if (runwayResults.length > 0) console.log(`  overall: ${allMet ? 'met (by every Runway configuration measured)' : 'NOT met (not by every Runway configuration measured)'}`);
  const byRunners = (system: SystemName) => results.filter((r) => r.system === system);
  const graphile = byRunners('graphile-default');
  for (const runway of ['runway-single', 'runway-split'] as const) {
    for (const r of byRunners(runway)) {
      const peer = graphile.find((g) => g.runners === r.runners);
      if (peer !== undefined) console.log(`${runway} with ${r.runners} runner(s): p50 ${(r.fromSend.p50 / peer.fromSend.p50).toFixed(1)}x graphile-worker's, p99 ${(r.fromSend.p99 / peer.fromSend.p99).toFixed(1)}x (from the send)`);
    }
  }
  console.log(`\nwall time ${wallSeconds.toFixed(0)} s`);
  if (options.json !== null) {
    const target = { ...TARGET, measuredFrom: 'send', met: runwayResults.length > 0 ? allMet : null };
    writeFileSync(options.json, `${JSON.stringify({ provenance, options, env: UNTHROTTLED_ENV, target, wallSeconds, results }, null, 2)}\n`);
    console.log(`results written to ${options.json}`);
  }
}

withBenchmarkServer(main).then(
  // Whatever is still open (a helper's socket, a keep-alive connection) must not keep it running.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
