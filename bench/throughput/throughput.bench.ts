/**
 * End-to-end throughput: jobs per second through Runway's public interfaces (REST submission,
 * runners on the WebSocket), each job four durable events (JobSubmitted, JobClaimed, JobStarted,
 * JobCompleted), with 1, 8 and 64 runners in a process of their own; Runway with every role in
 * one process, and split over NATS (api,relay,projector | gateway). Beside it, on the same
 * PostgreSQL, graphile-worker 0.18 and pg-boss 12 completing no-op jobs, each at its defaults and
 * tuned for throughput, with as many workers as there are runners. Runway is driven through REST +
 * WebSocket, the peers through their library API. A peer whose runs hit the cap (pg-boss at its
 * defaults: 2 s polling) has no throughput to compare with: its ratio is shown as "capped". See
 * bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/throughput/throughput.bench.js [--smoke] [--runs N] [--jobs N]
 *     [--runners 1,8,64] [--systems LIST] [--concurrency N] [--cap S] [--cpu-prof DIR] [--json FILE]
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { BenchChild } from '../support/child';
import { HttpClient } from '../support/http';
import { DEFAULT_PEER_SETTINGS, type PeerKind, type PeerProducer, type PeerSettings, type PeerVariant, describePeer, startPeerProducer } from '../support/peers';
import { ProcessCpu, ownCpuSince } from '../support/cpu';
import { type DatabaseUsage, benchPool, databaseSampler, dropDatabase, freshDatabase, withBenchmarkServer } from '../support/postgres';
import { INTERFACES_NOTE, collectProvenance, provenanceLine } from '../support/provenance';
import { COMMON_FLAGS, counts, parseFlags, pick } from '../support/args';
import { NATS_URL, UNTHROTTLED_ENV, deleteJetStream } from '../support/runway-deployment';
import { BENCH_ADMIN_TOKEN, RunwayServer } from '../support/runway-server';
import { type Tenant, createTenant, jobBody } from '../support/runway-tenant';
import { epochMs, median, percentile, printTable, sleep, thousands } from '../support/stats';

const SYSTEMS = ['runway-single', 'runway-split', 'graphile-default', 'graphile-tuned', 'pgboss-default', 'pgboss-tuned'] as const;
type SystemName = (typeof SYSTEMS)[number];
const PEERS: readonly SystemName[] = ['graphile-default', 'graphile-tuned', 'pgboss-default', 'pgboss-tuned'];

interface Options {
  smoke: boolean;
  runs: number;
  jobs: number;
  runners: number[];
  systems: SystemName[];
  /** Concurrent submissions. */
  concurrency: number;
  /** Longest a peer's run may take (seconds); past it the run counts what completed. */
  capSeconds: number;
  cpuProfDir: string | null;
  json: string | null;
  peer: PeerSettings;
}

function parseArgs(argv: readonly string[]): Options {
  // --seconds: bench/run.ts passes it to every benchmark; a run here is a number of jobs.
  const flags = parseFlags(argv, {
    ...COMMON_FLAGS,
    '--jobs': 'count',
    '--runners': 'list',
    '--systems': 'list',
    '--concurrency': 'count',
    '--cap': 'number',
    '--cpu-prof': 'text',
    '--graphile-local-queue': 'count',
    '--boss-batch': 'count',
  });
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    runs: flags['--runs'] ?? 3,
    jobs: flags['--jobs'] ?? 1_000,
    runners: flags['--runners'] ? counts('--runners', flags['--runners']) : [1, 8, 64],
    systems: flags['--systems'] ? pick('--systems', flags['--systems'], SYSTEMS) : [...SYSTEMS],
    concurrency: flags['--concurrency'] ?? 16,
    capSeconds: flags['--cap'] ?? 20,
    cpuProfDir: flags['--cpu-prof'] ?? null,
    json: flags['--json'] ?? null,
    peer: {
      graphileLocalQueue: flags['--graphile-local-queue'] ?? DEFAULT_PEER_SETTINGS.graphileLocalQueue,
      bossBatchSize: flags['--boss-batch'] ?? DEFAULT_PEER_SETTINGS.bossBatchSize,
    },
  };
  // --smoke wins: CI must stay small whatever else is passed (but --systems still narrows it).
  if (options.smoke) Object.assign(options, { runs: 1, jobs: 40, runners: [2], capSeconds: 3, cpuProfDir: null });
  return options;
}

/** One timed run of one system. */
interface RunResult {
  /** Jobs the run asked for. */
  jobs: number;
  /** Jobs confirmed completed in the database by the end of the run. */
  completed: number;
  seconds: number;
  jobsPerSec: number;
  /** The run hit --cap before every job completed: jobsPerSec is completed / cap. */
  capped: boolean;
  /** Submission round trip (HTTP request to 201, or addJob/send to resolved). */
  submitP50Ms: number;
  submitP99Ms: number;
  /** Most connections open to the system's database at once during the run. */
  peakConnections: number;
  /**
   * CPU time per job (ms) of: the PostgreSQL backends of the system's database; the system's own
   * processes (Runway's servers; the peer's worker process, which is also where its jobs run);
   * the clients (the submitting benchmark process, and Runway's runner process).
   */
  cpuMsPerJob: { postgres: number; system: number; clients: number; total: number };
  /** Of `cpuMsPerJob.system`, the part in the kernel (system calls), ms per job. */
  systemKernelMsPerJob: number;
  /** Runway only: events in the job streams of this run by type, and every event the run appended. */
  jobEvents?: Record<string, number>;
  allEvents?: Record<string, number>;
}

interface SystemResult {
  system: SystemName;
  runners: number;
  description: string;
  jobsPerSec: number;
  submitP50Ms: number;
  peakConnections: number;
  cpuMsPerJob: RunResult['cpuMsPerJob'];
  cappedRuns: number;
  warmup: RunResult;
  runs: RunResult[];
}

/** Submits `n` jobs through `submit` from `concurrency` loops; stops early when `stop()` says so. */
async function submitAll<T>(n: number, concurrency: number, submit: () => Promise<T>, stop: () => boolean = () => false): Promise<{ results: T[]; latencies: number[] }> {
  const results: T[] = [];
  const latencies: number[] = [];
  let next = 0;
  let failed = false;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n && !stop() && !failed) {
        next += 1;
        const t0 = performance.now();
        try {
          results.push(await submit());
        } catch (error) {
          failed = true; // the other loops stop too
          throw error;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { results, latencies };
}

// --- Runway ------------------------------------------------------------------------------------

/** Limits that protect a real deployment from one runner would throttle the benchmark's: lifted (UNTHROTTLED_ENV). */
const RUNWAY_ENV = { RUNWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN, ...UNTHROTTLED_ENV };

/**
 * Why a ratio against a capped peer is no ratio: its run stopped at the cap with jobs left, so its
 * jobs/s is completed / cap, a figure set by how often it polls, not by how fast it can go.
 */
function cappedReason(system: SystemName, capSeconds: number): string {
  const why = system === 'pgboss-default' ? "pg-boss at its defaults polls every 2 s (pollingIntervalSeconds) and fetches one job per worker a poll, so its rate is set by its polling" : 'its runs hit the cap';
  return `${system}: runs capped at ${capSeconds} s with jobs left; ${why}. Its jobs/s is completed / cap, not a throughput, so no ratio is given`;
}

async function runwaySystem(system: 'runway-single' | 'runway-split', options: Options): Promise<SystemResult[]> {
  const split = system === 'runway-split';
  const dbName = `runway_bench_throughput_${split ? 'split' : 'single'}`;
  const url = await freshDatabase(dbName);
  const prefix = `rwbench${randomBytes(4).toString('hex')}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'runway-bench-'));
  const env: Record<string, string> = { ...RUNWAY_ENV, DATABASE_URL: url, RUNWAY_DATA_DIR: dataDir };
  if (split) Object.assign(env, { NATS_URL, RUNWAY_NATS_PREFIX: prefix });
  if (options.cpuProfDir !== null) mkdirSync(options.cpuProfDir, { recursive: true });
  const profile = options.cpuProfDir ?? undefined;
  const servers = split
    ? [
        await RunwayServer.start(`${system}-api`, { roles: 'api,relay,projector', env, cpuProfDir: profile }),
        await RunwayServer.start(`${system}-gateway`, { roles: 'gateway', env, cpuProfDir: profile }),
      ]
    : [await RunwayServer.start(system, { env, cpuProfDir: profile })];
  const api = new HttpClient(servers[0].url, options.concurrency + 4);
  const pool = benchPool({ connectionString: url, max: 2, application_name: 'runway-bench-verify' });
  const results: SystemResult[] = [];
  try {
    await Promise.all(servers.map((s) => s.waitReady()));
    const gatewayUrl = servers[servers.length - 1].url;
    const tenant = await createTenant(api, Math.max(...options.runners));
    for (const runners of options.runners) {
      const swarm = BenchChild.start(join(__dirname, 'runner-swarm.js'), { url: gatewayUrl, tokens: tenant.runners.slice(0, runners).map((r) => r.token) }, `runner swarm (${runners})`);
      try {
        await swarm.waitFor('connected', 60_000);
        // Let every runner's first `ready` reach the gateway and find nothing, so all wait idle.
        await sleep(300);
        const once = (jobs: number) => runwayRun({ swarm, api, pool, tenant, dbName, servers }, jobs, options);
        const warmup = await once(warmupJobs(options));
        const runs: RunResult[] = [];
        for (let i = 0; i < options.runs; i++) runs.push(await once(options.jobs));
        results.push(summarize(system, runners, split ? 'Runway, api,relay,projector + gateway over NATS' : 'Runway, every role in one process', warmup, runs));
        progress(results[results.length - 1]);
      } finally {
        await swarm.stop();
      }
    }
    for (const server of servers) if (/error/i.test(server.log)) console.log(`${server.label} logged:\n${server.log.slice(-3_000)}`);
  } finally {
    api.close();
    await pool.end();
    await Promise.all(servers.map((s) => s.stop()));
    await dropDatabase(dbName);
    if (split) await deleteJetStream(prefix);
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}

interface RunwayContext {
  swarm: BenchChild;
  api: HttpClient;
  pool: Pool;
  tenant: Tenant;
  dbName: string;
  servers: RunwayServer[];
}

async function runwayRun(ctx: RunwayContext, jobs: number, options: Options): Promise<RunResult> {
  const { swarm, api, pool, tenant } = ctx;
  const before = Number((await pool.query<{ p: string }>(`SELECT COALESCE(max(global_position), 0) AS p FROM events`)).rows[0].p);
  swarm.discard('done');
  swarm.send({ type: 'run', target: jobs });
  const sampler = await databaseSampler(ctx.dbName);
  const serverCpu = new ProcessCpu(ctx.servers.map((s) => s.child.pid as number)).start();
  const swarmCpu = new ProcessCpu([swarm.child.pid as number]).start();
  const ownCpu = process.cpuUsage();
  const body = jobBody(tenant.spec);
  const t0 = epochMs();
  // Runway must take and finish every job: a refusal or a stall is a failure, not a slow figure.
  const timeoutMs = Math.max(600_000, jobs * 500);
  const { submitted, done } = await withServerLogs(ctx.servers, async () => {
    const submitted = await submitAll(jobs, options.concurrency, async () => {
      const answer = await api.call<{ id: string }>('POST', `/v1/projects/${tenant.project}/jobs`, { token: tenant.key, body, expect: 201 });
      return answer.body.id;
    });
    return { submitted, done: (await swarm.waitFor('done', timeoutMs)) as unknown as { at: number } };
  }).catch(async (error: unknown) => {
    await sampler.stop().catch(() => undefined);
    throw error;
  });
  const seconds = (done.at - t0) / 1000;
  const processesMs = [serverCpu.stop(), swarmCpu.stop() + ownCpuSince(ownCpu)];
  const cpu = cpuPerJob(jobs, await sampler.stop(), processesMs[0], processesMs[1], serverCpu.kernelMs);
  // Confirm from the server's log: every job of this run has its JobCompleted.
  const byType = async (sql: string, params: unknown[]) =>
    Object.fromEntries((await pool.query<{ type: string; n: string }>(sql, params)).rows.map((r) => [r.type, Number(r.n)]));
  const jobEvents = await byType(`SELECT type, count(*) AS n FROM events WHERE stream_id = ANY($1::uuid[]) GROUP BY type ORDER BY type`, [submitted.results]);
  const allEvents = await byType(`SELECT type, count(*) AS n FROM events WHERE global_position > $1 GROUP BY type ORDER BY type`, [before]);
  if (jobEvents.JobCompleted !== jobs) throw new Error(`expected ${jobs} JobCompleted events, the log has ${JSON.stringify(jobEvents)}`);
  return {
    jobs,
    completed: jobs,
    seconds,
    jobsPerSec: jobs / seconds,
    capped: false,
    submitP50Ms: percentile(submitted.latencies, 0.5),
    submitP99Ms: percentile(submitted.latencies, 0.99),
    ...cpu,
    jobEvents,
    allEvents,
  };
}

/** Runs `work`; if it fails, prints what the servers logged last before passing the error on. */
async function withServerLogs<T>(servers: readonly RunwayServer[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    for (const server of servers) console.error(`--- ${server.label} logged ---\n${server.log.slice(-5_000)}`);
    throw error;
  }
}

// --- graphile-worker and pg-boss -----------------------------------------------------------------

async function peerSystem(system: SystemName, options: Options): Promise<SystemResult[]> {
  const [kindName, variantName] = system.split('-');
  const kind: PeerKind = kindName === 'graphile' ? 'graphile' : 'pgboss';
  const variant = variantName as PeerVariant;
  const dbName = `runway_bench_throughput_${kind}_${variant}`;
  const url = await freshDatabase(dbName);
  const results: SystemResult[] = [];
  let producer: PeerProducer | null = null;
  try {
    for (const runners of options.runners) {
      const worker = BenchChild.start(join(__dirname, 'peer-worker.js'), { kind, variant, url, concurrency: runners, settings: options.peer }, `${system} workers (${runners})`);
      try {
        await worker.waitFor('started', 60_000);
        // The workers' process created the schema; the producer only adds jobs and counts.
        producer ??= await startPeerProducer(kind, url, options.concurrency);
        const ctx = { worker, producer, dbName };
        const warmup = await peerRun(ctx, warmupJobs(options), warmupCap(options), options);
        const runs: RunResult[] = [];
        for (let i = 0; i < options.runs; i++) runs.push(await peerRun(ctx, options.jobs, options.capSeconds, options));
        results.push(summarize(system, runners, describePeer(kind, variant, options.peer), warmup, runs));
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

async function peerRun(ctx: { worker: BenchChild; producer: PeerProducer; dbName: string }, jobs: number, capSeconds: number, options: Options): Promise<RunResult> {
  const { worker, producer } = ctx;
  const before = await producer.counts();
  if (before.open !== 0) throw new Error(`${before.open} jobs left over from the last run`);
  worker.discard('handled');
  worker.send({ type: 'run', target: jobs });
  const sampler = await databaseSampler(ctx.dbName);
  const workerCpu = new ProcessCpu([worker.child.pid as number]).start();
  const ownCpu = process.cpuUsage();
  const t0 = epochMs();
  const deadline = t0 + capSeconds * 1000;
  const submitting = submitAll(jobs, options.concurrency, () => producer.add(), () => epochMs() > deadline);
  submitting.catch(() => undefined); // awaited below; a failure meanwhile is not unhandled
  // The tasks ran (the workers' word), then the database shows them completed (the queue's word).
  const handled = worker.waitFor('handled', capSeconds * 1000 + 1_000).catch((error: Error) => {
    // Not having run them all by the cap is an outcome; the workers failing is not.
    if (!error.message.includes('no handled within')) throw error;
  });
  const confirmed = async (): Promise<{ completed: number; end: number }> => {
    for (;;) {
      const completed = (await producer.counts()).completed - before.completed;
      const end = epochMs();
      if (completed >= jobs || end > deadline) return { completed, end };
      await sleep(2);
    }
  };
  const { completed, end, submitted } = await (async () => {
    await Promise.race([handled, sleep(Math.max(0, deadline - epochMs()))]);
    return { ...(await confirmed()), submitted: await submitting };
  })().catch(async (error: unknown) => {
    await sampler.stop().catch(() => undefined);
    throw error;
  });
  const capped = completed < jobs;
  const processesMs = [workerCpu.stop(), ownCpuSince(ownCpu)];
  const cpu = cpuPerJob(Math.max(1, completed), await sampler.stop(), processesMs[0], processesMs[1], workerCpu.kernelMs);
  const seconds = capped ? capSeconds : (end - t0) / 1000;
  if (capped) {
    // Leave nothing behind for the next run: drop what nobody took, let the rest finish.
    await producer.dropQueued();
    const settle = epochMs() + 60_000;
    while ((await producer.counts()).open > 0) {
      if (epochMs() > settle) throw new Error('jobs still open a minute after a capped run');
      await sleep(50);
    }
  }
  return {
    jobs,
    completed,
    seconds,
    jobsPerSec: completed / seconds,
    capped,
    submitP50Ms: percentile(submitted.latencies, 0.5),
    submitP99Ms: percentile(submitted.latencies, 0.99),
    ...cpu,
  };
}

function cpuPerJob(
  jobs: number,
  usage: DatabaseUsage,
  systemMs: number,
  clientsMs: number,
  systemKernelMs: number,
): Pick<RunResult, 'peakConnections' | 'cpuMsPerJob' | 'systemKernelMsPerJob'> {
  const postgres = usage.backendCpuMs / jobs;
  const system = systemMs / jobs;
  const clients = clientsMs / jobs;
  return {
    peakConnections: usage.peakConnections,
    cpuMsPerJob: { postgres, system, clients, total: postgres + system + clients },
    systemKernelMsPerJob: systemKernelMs / jobs,
  };
}

// --- results -------------------------------------------------------------------------------------

/** The discarded run before the measured ones: a fifth of a run (10 jobs for --smoke). */
function warmupJobs(options: Options): number {
  return options.smoke ? 10 : Math.max(20, Math.round(options.jobs / 5));
}

/** The warm-up's cap: a poll-bound peer needs no long warm-up. */
function warmupCap(options: Options): number {
  return options.smoke ? 1 : Math.min(options.capSeconds, 5);
}

function summarize(system: SystemName, runners: number, description: string, warmup: RunResult, runs: RunResult[]): SystemResult {
  return {
    system,
    runners,
    description,
    jobsPerSec: median(runs.map((r) => r.jobsPerSec)),
    submitP50Ms: median(runs.map((r) => r.submitP50Ms)),
    peakConnections: Math.max(...runs.map((r) => r.peakConnections)),
    cpuMsPerJob: {
      postgres: median(runs.map((r) => r.cpuMsPerJob.postgres)),
      system: median(runs.map((r) => r.cpuMsPerJob.system)),
      clients: median(runs.map((r) => r.cpuMsPerJob.clients)),
      total: median(runs.map((r) => r.cpuMsPerJob.total)),
    },
    cappedRuns: runs.filter((r) => r.capped).length,
    warmup,
    runs,
  };
}

function progress(result: SystemResult): void {
  const runs = result.runs.map((r) => `${r.jobsPerSec.toFixed(0)}${r.capped ? '*' : ''}`).join(' ');
  console.log(`  ${result.system.padEnd(16)} ${String(result.runners).padStart(2)} runners: ${result.jobsPerSec.toFixed(0).padStart(6)} jobs/s  (runs: ${runs})`);
}

function main(): Promise<void> {
  return (async () => {
    const options = parseArgs(process.argv.slice(2));
    const provenance = await collectProvenance({
      runwayEnv: RUNWAY_ENV,
      natsUrl: options.systems.includes('runway-split') ? NATS_URL : undefined,
      notes: [INTERFACES_NOTE, `peer runs capped at ${options.capSeconds} s`],
    });
    const where = provenanceLine(provenance);
    console.log(
      `throughput benchmark: ${options.jobs} jobs a run, ${options.runs} run(s) after a warm-up of ${warmupJobs(options)}, ` +
        `runners ${options.runners.join(', ')}, ${options.concurrency} concurrent submissions, peer runs capped at ${options.capSeconds}s\n${where}\n`,
    );
    const started = epochMs();
    const results: SystemResult[] = [];
    for (const system of options.systems) {
      console.log(`${system}:`);
      if (system === 'runway-single' || system === 'runway-split') results.push(...(await runwaySystem(system, options)));
      else results.push(...(await peerSystem(system, options)));
    }
    const wallSeconds = (epochMs() - started) / 1000;

    console.log(
      '\njobs per second (median of the runs; * = some runs hit the cap, see below). Runway through REST + WebSocket (runners in a\n' +
        'process of their own), the peers through their library API:\n',
    );
    const find = (system: SystemName, runners: number) => results.find((r) => r.system === system && r.runners === runners);
    const present = SYSTEMS.filter((s) => options.systems.includes(s));
    printTable(
      where,
      ['runners', ...present],
      options.runners.map((runners) => [
        String(runners),
        ...present.map((s) => {
          const r = find(s, runners);
          return r === undefined ? '-' : `${thousands(r.jobsPerSec)}${r.cappedRuns > 0 ? '*' : ''}`;
        }),
      ]),
    );

    // A number, or 'capped' where the peer's runs hit the cap (its jobs/s is no throughput).
    const ratios: Record<string, Record<string, number | 'capped'>> = {};
    const cappedPeers = new Set<SystemName>();
    const runways = present.filter((s) => s.startsWith('runway'));
    const peers = present.filter((s) => PEERS.includes(s));
    if (runways.length > 0 && peers.length > 0) {
      console.log(
        "\nRunway jobs/s as a ratio to each peer (ratio of the medians; 'capped': the peer's runs hit the cap, no ratio). Runway\n" +
          'through REST + WebSocket, the peers through their library API:\n',
      );
      const rows: string[][] = [];
      for (const runners of options.runners) {
        for (const runway of runways) {
          const own = find(runway, runners);
          if (own === undefined) continue;
          const key = `${runway}@${runners}`;
          ratios[key] = {};
          rows.push([
            String(runners),
            runway,
            ...peers.map((peer) => {
              const other = find(peer, runners);
              if (other === undefined) return '-';
              if (other.cappedRuns > 0 || other.jobsPerSec === 0) {
                cappedPeers.add(peer);
                ratios[key][peer] = 'capped';
                return 'capped';
              }
              const ratio = own.jobsPerSec / other.jobsPerSec;
              ratios[key][peer] = ratio;
              return ratio.toFixed(2);
            }),
          ]);
        }
      }
      printTable(where, ['runners', 'runway', ...peers.map((p) => `/ ${p}`)], rows);
      for (const peer of cappedPeers) console.log(`  capped: ${cappedReason(peer, options.capSeconds)}.`);
    }

    const runwayRuns = results.filter((r) => r.system.startsWith('runway')).flatMap((r) => r.runs);
    if (runwayRuns.length > 0) {
      const jobs = runwayRuns.reduce((a, r) => a + r.jobs, 0);
      const sum = (pick: (r: RunResult) => Record<string, number> | undefined) => {
        const total: Record<string, number> = {};
        for (const r of runwayRuns) for (const [type, n] of Object.entries(pick(r) ?? {})) total[type] = (total[type] ?? 0) + n;
        return total;
      };
      const jobEvents = sum((r) => r.jobEvents);
      const allEvents = sum((r) => r.allEvents);
      const perJob = (events: Record<string, number>) => Object.values(events).reduce((a, b) => a + b, 0) / jobs;
      const list = (events: Record<string, number>) => Object.entries(events).map(([t, n]) => `${t} ${(n / jobs).toFixed(2)}`).join(', ');
      console.log(`\nRunway events per job, from the log (${thousands(jobs)} measured jobs):`);
      console.log(`  in the jobs' own streams: ${perJob(jobEvents).toFixed(2)} (${list(jobEvents)})`);
      console.log(`  everything the runs appended: ${perJob(allEvents).toFixed(2)} (${list(allEvents)})`);
    }

    console.log(
      '\nper system (medians of the runs): submission round trip, most connections to its database at once, and CPU time per job\n' +
        '(ms) of its PostgreSQL backends, of its own processes (Runway servers; the peer\'s worker process) and of the clients\n' +
        '(submitter; Runway\'s runner process):\n',
    );
    printTable(
      where,
      ['system', 'runners', 'jobs/s', 'submit p50', 'conns', 'cpu pg', 'cpu system', 'cpu clients', 'cpu total', 'capped runs (done/asked)'],
      results.map((r) => [
        r.system,
        String(r.runners),
        thousands(r.jobsPerSec),
        `${r.submitP50Ms.toFixed(1)} ms`,
        String(r.peakConnections),
        r.cpuMsPerJob.postgres.toFixed(2),
        r.cpuMsPerJob.system.toFixed(2),
        r.cpuMsPerJob.clients.toFixed(2),
        r.cpuMsPerJob.total.toFixed(2),
        r.cappedRuns > 0 ? `${r.cappedRuns}/${r.runs.length} (${r.runs.map((x) => `${x.completed}/${x.jobs}`).join(', ')})` : '',
      ]),
    );
    console.log('\nconfigurations:');
    for (const system of present) {
      const one = results.find((r) => r.system === system);
      if (one !== undefined) console.log(`  ${system}: ${one.description}`);
    }
    const loadAfter = loadavg();
    console.log(`\nwall time ${wallSeconds.toFixed(0)} s; load average now ${loadAfter.map((l) => l.toFixed(1)).join(' / ')} (1 / 5 / 15 min)`);
    if (options.cpuProfDir !== null) console.log(`CPU profiles of the Runway servers in ${options.cpuProfDir}`);
    if (options.json !== null) {
      const capped = Object.fromEntries([...cappedPeers].map((peer) => [peer, cappedReason(peer, options.capSeconds)]));
      const json = { provenance, options, env: UNTHROTTLED_ENV, loadavgAfter: loadAfter, wallSeconds, results, ratios, capped };
      writeFileSync(options.json, `${JSON.stringify(json, null, 2)}\n`);
      console.log(`results written to ${options.json}`);
    }
  })();
}

withBenchmarkServer(main).then(
  // Whatever is still open (a helper's socket, a keep-alive connection) must not keep it running.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
