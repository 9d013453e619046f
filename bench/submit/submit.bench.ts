/**
 * Submission: how many jobs a second are accepted, durable, when submitted one by one and in
 * batches: Runway through REST (`POST /v1/projects/{p}/jobs`, and `POST .../job-batches` of 100
 * and of 1,000 jobs), graphile-worker 0.18 through its library (`addJob`, and `addJobs` of 100),
 * on the same PostgreSQL, in one run. Nothing runs the jobs: this is the write path of submission
 * alone (one JobSubmitted event, hash-chained, and the jobs view row per job, for Runway). See
 * bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/submit/submit.bench.js [--smoke] [--runs N] [--jobs N] [--json FILE]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type WorkerUtils, makeWorkerUtils } from 'graphile-worker';
import { COMMON_FLAGS, parseFlags } from '../support/args';
import { ProcessCpu, ownCpuSince } from '../support/cpu';
import { HttpClient } from '../support/http';
import { QUEUE, silentLogger } from '../support/peers';
import { benchPool, databaseSampler, dropDatabase, freshDatabase, withBenchmarkServer } from '../support/postgres';
import { INTERFACES_NOTE, collectProvenance, provenanceLine } from '../support/provenance';
import { UNTHROTTLED_ENV } from '../support/runway-deployment';
import { BENCH_ADMIN_TOKEN, RunwayServer } from '../support/runway-server';
import { createTenant, jobBody } from '../support/runway-tenant';
import { epochMs, median, printTable, thousands } from '../support/stats';

/** Each way of submitting: who, how many jobs a request (or call) carries, how many at once. */
const WAYS = [
  { name: 'runway-post', system: 'runway', batch: 1, concurrency: 16, description: 'Runway, POST /v1/projects/{p}/jobs, 16 at once' },
  { name: 'runway-batch-100', system: 'runway', batch: 100, concurrency: 4, description: 'Runway, POST .../job-batches of 100 jobs, 4 at once' },
  { name: 'runway-batch-1000', system: 'runway', batch: 1000, concurrency: 2, description: 'Runway, POST .../job-batches of 1,000 jobs, 2 at once' },
  { name: 'graphile-addJob', system: 'graphile', batch: 1, concurrency: 16, description: 'graphile-worker 0.18, addJob, 16 at once' },
  { name: 'graphile-addJobs-100', system: 'graphile', batch: 100, concurrency: 4, description: 'graphile-worker 0.18, addJobs of 100 jobs, 4 at once' },
] as const;
type Way = (typeof WAYS)[number];

interface Options {
  smoke: boolean;
  runs: number;
  /** Jobs a run (the warm-up does a fifth). */
  jobs: number;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  // --seconds: bench/run.ts passes it to every benchmark; a run here is a number of jobs.
  const flags = parseFlags(argv, { ...COMMON_FLAGS, '--jobs': 'count' });
  const options: Options = { smoke: flags['--smoke'] ?? false, runs: flags['--runs'] ?? 3, jobs: flags['--jobs'] ?? 10_000, json: flags['--json'] ?? null };
  if (options.smoke) Object.assign(options, { runs: 1, jobs: 2_000 });
  return options;
}

interface RunResult {
  jobs: number;
  seconds: number;
  jobsPerSec: number;
  /** CPU per job (ms): the database's backends, the system's own process (Runway's server), the submitting process. */
  cpuMsPerJob: { postgres: number; system: number; clients: number; total: number };
}

/** Submits `jobs` jobs in calls of `batch`, `concurrency` calls at a time, and measures it. */
async function measure(
  jobs: number,
  way: Way,
  dbName: string,
  serverPid: number | null,
  submit: (count: number) => Promise<void>,
): Promise<RunResult> {
  const sampler = await databaseSampler(dbName);
  const serverCpu = serverPid === null ? null : new ProcessCpu([serverPid]).start();
  const ownCpu = process.cpuUsage();
  const calls = Math.ceil(jobs / way.batch);
  let next = 0;
  const t0 = epochMs();
  await Promise.all(
    Array.from({ length: Math.min(way.concurrency, calls) }, async () => {
      while (next < calls) {
        const call = next++;
        await submit(Math.min(way.batch, jobs - call * way.batch));
      }
    }),
  );
  const seconds = (epochMs() - t0) / 1000;
  const db = await sampler.stop();
  const system = serverCpu === null ? 0 : serverCpu.stop();
  const clients = ownCpuSince(ownCpu);
  const per = (ms: number) => Math.round((ms / jobs) * 1000) / 1000;
  return {
    jobs,
    seconds,
    jobsPerSec: jobs / seconds,
    cpuMsPerJob: { postgres: per(db.backendCpuMs), system: per(system), clients: per(clients), total: per(db.backendCpuMs + system + clients) },
  };
}

interface WayResult {
  way: Way['name'];
  description: string;
  jobsPerSec: number;
  cpuMsPerJob: RunResult['cpuMsPerJob'];
  warmup: RunResult;
  runs: RunResult[];
}

function summarize(way: Way, warmup: RunResult, runs: RunResult[]): WayResult {
  const mid = (pick: (r: RunResult) => number) => median(runs.map(pick));
  return {
    way: way.name,
    description: way.description,
    jobsPerSec: mid((r) => r.jobsPerSec),
    cpuMsPerJob: { postgres: mid((r) => r.cpuMsPerJob.postgres), system: mid((r) => r.cpuMsPerJob.system), clients: mid((r) => r.cpuMsPerJob.clients), total: mid((r) => r.cpuMsPerJob.total) },
    warmup,
    runs,
  };
}

/**
 * A way's warm-up (a fifth of the jobs) and measured runs, each checked: `stored()` (jobs stored
 * so far) must grow by exactly the jobs submitted.
 */
async function runWay(way: Way, options: Options, run: (jobs: number) => Promise<RunResult>, stored: () => Promise<number>): Promise<WayResult> {
  const once = async (jobs: number) => {
    const before = await stored();
    const result = await run(jobs);
    const added = (await stored()) - before;
    if (added !== jobs) throw new Error(`${way.name}: expected ${jobs} more jobs stored, found ${added}`);
    return result;
  };
  const warmup = await once(Math.max(way.batch, Math.round(options.jobs / 5)));
  const runs: RunResult[] = [];
  for (let i = 0; i < options.runs; i++) runs.push(await once(options.jobs));
  const result = summarize(way, warmup, runs);
  progress(result);
  return result;
}

async function runwayWays(options: Options): Promise<WayResult[]> {
  const dbName = 'runway_bench_submit_runway';
  const url = await freshDatabase(dbName);
  const dataDir = mkdtempSync(join(tmpdir(), 'runway-bench-'));
  const server = await RunwayServer.start('runway-submit', { env: { RUNWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN, ...UNTHROTTLED_ENV, DATABASE_URL: url, RUNWAY_DATA_DIR: dataDir } });
  const api = new HttpClient(server.url, 20);
  const verify = benchPool({ connectionString: url, max: 1, application_name: 'runway-bench-verify' });
  const results: WayResult[] = [];
  try {
    await server.waitReady();
    const tenant = await createTenant(api, 0);
    const body = jobBody(tenant.spec);
    for (const way of WAYS.filter((w) => w.system === 'runway')) {
      const submit = async (count: number) => {
        if (way.batch === 1) {
          await api.call('POST', `/v1/projects/${tenant.project}/jobs`, { token: tenant.key, body, expect: 201 });
          return;
        }
        const answer = await api.call<{ items: unknown[] }>('POST', `/v1/projects/${tenant.project}/job-batches`, {
          token: tenant.key,
          body: { jobs: Array.from({ length: count }, () => body) },
          expect: 201,
        });
        if (answer.body.items.length !== count) throw new Error(`a batch of ${count} answered ${answer.body.items.length} jobs`);
      };
      // Every job is in the log: one JobSubmitted each.
      results.push(await runWay(way, options, (jobs) => measure(jobs, way, dbName, server.child.pid as number, submit), () => countEvents(verify)));
    }
  } finally {
    api.close();
    await verify.end();
    await server.stop();
    await dropDatabase(dbName);
    rmSync(dataDir, { recursive: true, force: true });
  }
  return results;
}

async function countEvents(pool: ReturnType<typeof benchPool>): Promise<number> {
  return Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM events WHERE type = 'JobSubmitted'`)).rows[0].n);
}

async function graphileWays(options: Options): Promise<WayResult[]> {
  const dbName = 'runway_bench_submit_graphile';
  const url = await freshDatabase(dbName);
  const pool = benchPool({ connectionString: url, max: 17 });
  const results: WayResult[] = [];
  let utils: WorkerUtils | null = null;
  try {
    utils = await makeWorkerUtils({ pgPool: pool, logger: silentLogger });
    await utils.migrate();
    const u = utils;
    const count = async () => Number((await u.withPgClient((c) => c.query<{ n: string }>(`SELECT count(*) AS n FROM graphile_worker._private_jobs`))).rows[0].n);
    for (const way of WAYS.filter((w) => w.system === 'graphile')) {
      const submit = async (n: number) => {
        if (way.batch === 1) await u.addJob(QUEUE, {});
        else await u.addJobs(Array.from({ length: n }, () => ({ identifier: QUEUE, payload: {} })));
      };
      results.push(await runWay(way, options, (jobs) => measure(jobs, way, dbName, null, submit), count));
    }
  } finally {
    await utils?.release();
    await pool.end();
    await dropDatabase(dbName);
  }
  return results;
}

function progress(result: WayResult): void {
  console.log(`  ${result.way.padEnd(22)} ${thousands(result.jobsPerSec).padStart(7)} jobs/s  (runs: ${result.runs.map((r) => thousands(r.jobsPerSec)).join(', ')})`);
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const provenance = await collectProvenance({
    runwayEnv: UNTHROTTLED_ENV,
    notes: [
      INTERFACES_NOTE,
      'Submission only: no runner or worker takes the jobs. Runway answers each request after its jobs (events and views) committed; graphile-worker each call after its insert committed.',
    ],
  });
  console.log(provenanceLine(provenance));
  const results = await withBenchmarkServer(async () => [...(await runwayWays(options)), ...(await graphileWays(options))]);
  const by = (name: string) => results.find((r) => r.way === name);
  const ratio = (a?: WayResult, b?: WayResult) => (a === undefined || b === undefined ? '-' : (a.jobsPerSec / b.jobsPerSec).toFixed(2));
  console.log('');
  printTable(
    `${provenanceLine(provenance)}\njobs accepted per second (median of ${options.runs} runs of ${thousands(options.jobs)} jobs) and CPU per job (ms):`,
    ['way', 'jobs/s', 'cpu pg', 'cpu system', 'cpu client', 'cpu total'],
    results.map((r) => [
      r.way,
      thousands(r.jobsPerSec),
      r.cpuMsPerJob.postgres.toFixed(3),
      r.cpuMsPerJob.system.toFixed(3),
      r.cpuMsPerJob.clients.toFixed(3),
      r.cpuMsPerJob.total.toFixed(3),
    ]),
  );
  console.log('\nways:');
  for (const r of results) console.log(`  ${r.way}: ${r.description}`);
  const ratios = {
    'runway-post / graphile-addJob': ratio(by('runway-post'), by('graphile-addJob')),
    'runway-batch-100 / graphile-addJobs-100': ratio(by('runway-batch-100'), by('graphile-addJobs-100')),
    'runway-batch-1000 / runway-post': ratio(by('runway-batch-1000'), by('runway-post')),
  };
  console.log('');
  for (const [name, value] of Object.entries(ratios)) console.log(`  ${name}: ${value}`);
  if (options.json !== null) writeFileSync(options.json, JSON.stringify({ provenance, options, results, ratios }, null, 2) + '\n');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
