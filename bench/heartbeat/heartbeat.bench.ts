/**
 * Heartbeat cost: 1,000 runners (in a process of their own), each holding a running job, send
 * `heartbeat {job, attempt}` at a fixed aggregate rate (1,000/s, 5,000/s) and then as fast as
 * they can, to one Runway server with every role (PostgreSQL and NATS). Per window: heartbeats
 * sent, and acknowledged per second of wall time (what the server absorbed), with the CPU the
 * server took for them (CPU seconds per wall second, from /proc/<pid>/stat); from those the CPU
 * per heartbeat, and, labelled as a projection, the heartbeats one fully busy core would absorb
 * at that cost (never measured). The target (10,000/s) is checked against what was absorbed,
 * not against the projection. And the proof that a heartbeat writes nothing:
 * PostgreSQL's row counters of the database, before and after each window. See bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/heartbeat/heartbeat.bench.js [--smoke] [--runs N] [--seconds S]
 *     [--runners N] [--rates LIST] [--cpu-prof DIR] [--json FILE]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { COMMON_FLAGS, counts, parseFlags } from '../support/args';
import { BenchChild } from '../support/child';
import { ProcessCpu } from '../support/cpu';
import { HttpClient } from '../support/http';
import { InspectorSession } from '../support/inspector';
import { type DatabaseCounters, DatabaseCounterProbe, waitForNoWrites, withBenchmarkServer } from '../support/postgres';
import { type Provenance, collectProvenance, provenanceLine } from '../support/provenance';
import { BenchDeployment, NATS_URL, UNTHROTTLED_ENV } from '../support/runway-deployment';
import { BENCH_ADMIN_TOKEN, type RunwayServer, freePort } from '../support/runway-server';
import { type Tenant, createTenant, jobBody, submitJobs } from '../support/runway-tenant';
import { epochMs, median, printTable, sleep, thousands } from '../support/stats';
import type { WindowResult } from './heartbeat-swarm';

const DB_NAME = 'runway_bench_heartbeat';

/**
 * The server's settings besides the deployment's (database, NATS, admin token):
 * - the per-runner limits lifted (UNTHROTTLED_ENV): at full speed a runner may send more than
 *   the 50 frames a second one socket may send by default (with --smoke's 50 runners it does),
 *   and a refused heartbeat (`error rate_limited`) fails the benchmark;
 * - the heartbeat interval at its default (1 s; it also sets the liveness sweep's period, at most
 *   1 s), stated so the figures say what they were taken with;
 * - the heartbeat timeout at an hour: between windows the runners are silent for longer than
 *   the default 30 s (a settle, the idle window, another settle), and a job failed for a missed
 *   heartbeat would end the benchmark. The claim timeout too, which nothing here comes near
 *   (each runner reports its job running as soon as it has it): nothing may time out.
 * The jobs themselves are submitted with a timeout of a day, so no job timeout fires either.
 */
const HEARTBEAT_ENV = {
  ...UNTHROTTLED_ENV,
  RUNWAY_HEARTBEAT_INTERVAL_MS: '1000',
  RUNWAY_HEARTBEAT_TIMEOUT_MS: '3600000',
  RUNWAY_CLAIM_TIMEOUT_MS: '3600000',
};
const JOB_TIMEOUT_SECONDS = 86_400;

/** The issue's target: heartbeats a second one server absorbs (acknowledged, measured; not projected). */
export const TARGET_PER_SEC = 10_000;

/** Concurrent job submissions, and runners asking for work at once, during the set-up. */
const SETUP_CONCURRENCY = 16;

/**
 * After each window, how long to wait before reading the database's counters: longer than the
 * 10 s a PostgreSQL backend may keep what it counted before publishing it (DatabaseCounterProbe).
 */
const SETTLE_MS = 11_000;

/** An offered rate: heartbeats a second over all runners, or null for as fast as they go. */
type Rate = number | null;

interface Options {
  smoke: boolean;
  runs: number;
  /** Length of one window (the heartbeats are sent for this long, then answered). */
  seconds: number;
  runners: number;
  rates: Rate[];
  settleMs: number;
  /** The discarded window before the measured ones, seconds (0: none). */
  warmupSeconds: number;
  /** Profile the server during each measured heartbeat window, into this directory. */
  cpuProfDir: string | null;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  const flags = parseFlags(argv, { ...COMMON_FLAGS, '--runners': 'count', '--rates': 'list', '--cpu-prof': 'text' });
  const rates = flags['--rates']?.map((text): Rate => (text === 'max' ? null : counts('--rates', [text])[0])) ?? [1_000, 5_000, null];
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    runs: flags['--runs'] ?? 3,
    seconds: flags['--seconds'] ?? 10,
    runners: flags['--runners'] ?? 1_000,
    rates,
    settleMs: SETTLE_MS,
    warmupSeconds: 3,
    cpuProfDir: flags['--cpu-prof'] ?? null,
    json: flags['--json'] ?? null,
  };
  // --smoke wins: CI must stay small whatever else is passed. Its settle is too short for the
  // counters to be complete, so it reports them without holding the server to them.
  if (options.smoke) {
    const smokeRates = flags['--rates'] === undefined ? [100, 500, null] : rates;
    Object.assign(options, { runs: 1, seconds: 0.5, runners: 50, rates: smokeRates, settleMs: 300, warmupSeconds: 0 });
  }
  return options;
}

const rateLabel = (rate: Rate | 'idle') => (rate === 'idle' ? 'idle' : rate === null ? 'max' : `${thousands(rate)}/s`);

/** One measured window. */
interface WindowRecord {
  run: number;
  rate: Rate | 'idle';
  /** From the first heartbeat sent to the last one answered (idle: the window's length), s. */
  seconds: number;
  sent: number;
  acked: number;
  refused: number;
  /** Heartbeats acknowledged per second of the window. */
  absorbedPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  serverCpuMs: number;
  serverKernelMs: number;
  /** Server CPU seconds per second of the window (1 = one core busy the whole time): what the absorbed rate took. */
  serverCpuSecondsPerSecond: number;
  /** The same as a share of one core (100 = one core busy the whole time). */
  serverCpuPercent: number;
  /** Server CPU time per heartbeat acknowledged, µs. */
  usPerHeartbeat: number;
  /** The same less what the server burns idle (its run's idle window, per second), µs. */
  netUsPerHeartbeat: number;
  /** A PROJECTION, not a measurement: 1e6 / usPerHeartbeat, heartbeats a second one core would absorb at 100% at this cost. */
  projectedPerCore: number;
  swarmCpuPercent: number;
  /** Runners whose `lastSeenAt` (the liveness authority's in-memory last heartbeat) fell in the window. */
  heard: number;
  /** The database's counters from before the window to after the settle that follows it. */
  database: DatabaseCounters;
  databaseSpanSeconds: number;
}

interface RateSummary {
  rate: Rate | 'idle';
  sent: number;
  acked: number;
  absorbedPerSec: number;
  ackP50Ms: number;
  ackP99Ms: number;
  serverCpuSecondsPerSecond: number;
  serverCpuPercent: number;
  usPerHeartbeat: number;
  netUsPerHeartbeat: number;
  /** A PROJECTION (see WindowRecord.projectedPerCore). */
  projectedPerCore: number;
  swarmCpuPercent: number;
  /** The fewest runners heard in any of the runs. */
  heard: number;
}

interface Setup {
  registerSeconds: number;
  connectSeconds: number;
  submitSeconds: number;
  takeSeconds: number;
  quietSeconds: number;
}

/** What the set-up leaves for the windows. */
interface Bench {
  server: RunwayServer;
  swarm: BenchChild;
  api: HttpClient;
  tenant: Tenant;
  probe: DatabaseCounterProbe;
  /** With --cpu-prof: a DevTools session with the server, to profile the windows. */
  inspector: InspectorSession | null;
}

async function setUp(deployment: BenchDeployment, options: Options): Promise<{ bench: Bench; setup: Setup }> {
  // With --cpu-prof the server listens for the inspector, which profiles only the windows.
  const inspectPort = options.cpuProfDir === null ? null : await freePort();
  const server = await deployment.start('runway', { nodeArgs: inspectPort === null ? [] : [`--inspect=127.0.0.1:${inspectPort}`] });
  const api = new HttpClient(server.url, SETUP_CONCURRENCY + 4);
  let swarm: BenchChild | null = null;
  try {
    let t = epochMs();
    const lap = () => {
      const now = epochMs();
      const seconds = (now - t) / 1000;
      t = now;
      return seconds;
    };
    const tenant = await createTenant(api, options.runners, 'enterprise', 8);
    const registerSeconds = lap();
    log(`  ${options.runners} runners registered in ${registerSeconds.toFixed(1)} s`);
    swarm = BenchChild.start(join(__dirname, 'heartbeat-swarm.js'), { url: server.url, serverPid: server.pid }, `runner swarm (${options.runners})`);
    swarm.send({ type: 'connect', tokens: tenant.runners.map((r) => r.token) });
    await swarm.waitFor('connected', 300_000);
    const connectSeconds = lap();
    log(`  connected and welcomed in ${connectSeconds.toFixed(1)} s`);
    // Nobody is waiting for work yet, so the submissions only queue the jobs; then the runners
    // ask a few at a time, and each claims one with no race for it.
    const body = { ...jobBody(tenant.spec), timeout: JOB_TIMEOUT_SECONDS };
    const submitted = await submitJobs(api, tenant, options.runners, body, SETUP_CONCURRENCY);
    const submitSeconds = lap();
    log(`  ${submitted.length} jobs submitted in ${submitSeconds.toFixed(1)} s`);
    swarm.send({ type: 'take', batch: SETUP_CONCURRENCY });
    const taken = (await swarm.waitFor('taken', 600_000)).jobs as string[];
    const takeSeconds = lap();
    log(`  every runner holds a running job after ${takeSeconds.toFixed(1)} s`);
    // The server's view agrees: every runner busy with the job it reported running, all different.
    const takenSet = new Set(taken);
    const submittedSet = new Set(submitted);
    const busy = (await listRunners(api)).filter((r) => r.state === 'busy' && r.currentJob !== null && takenSet.has(r.currentJob));
    if (busy.length !== options.runners || takenSet.size !== options.runners || !taken.every((id) => submittedSet.has(id))) {
      throw new Error(`expected ${options.runners} runners busy with the submitted jobs; the server lists ${busy.length}`);
    }
    // The set-up's writes (the claims, the starts, the projectors catching up) are over, and every
    // backend has published what it counted: the counters move only for what comes next.
    await waitForNoWrites(deployment.dbName, options.settleMs + 500);
    const quietSeconds = lap();
    const probe = await DatabaseCounterProbe.open(deployment.dbName);
    const inspector = inspectPort === null ? null : await InspectorSession.connect(inspectPort);
    return { bench: { server, swarm, api, tenant, probe, inspector }, setup: { registerSeconds, connectSeconds, submitSeconds, takeSeconds, quietSeconds } };
  } catch (error) {
    console.error(`--- the server logged ---\n${server.log.slice(-5_000)}`);
    await swarm?.stop();
    api.close();
    await server.stop();
    throw error;
  }
}

interface RunnerView {
  id: string;
  state: string;
  currentJob: string | null;
  lastSeenAt: string | null;
}

async function listRunners(api: HttpClient): Promise<RunnerView[]> {
  return (await api.call<{ items: RunnerView[] }>('GET', '/v1/runners', { token: BENCH_ADMIN_TOKEN, expect: 200 })).body.items;
}

/** One heartbeat window in the swarm, then the runners the liveness authority heard during it. */
async function heartbeatWindow(bench: Bench, rate: Rate, seconds: number, profile: string | null = null): Promise<WindowResult & { heard: number }> {
  const profiling = profile !== null && bench.inspector !== null;
  if (profiling) await bench.inspector?.startProfiling();
  bench.swarm.send({ type: 'beat', rate, seconds });
  const result = (await bench.swarm.waitFor('beaten', seconds * 1000 + 120_000)) as unknown as WindowResult;
  if (profiling) writeFileSync(profile, JSON.stringify(await bench.inspector?.stopProfiling()));
  const since = Math.floor(result.startedAt);
  const heard = (await listRunners(bench.api)).filter((r) => r.lastSeenAt !== null && Date.parse(r.lastSeenAt) >= since).length;
  return { ...result, heard };
}

/** One run: an idle window, then a window at each rate; each followed by the settle and a read of the counters. */
async function run(bench: Bench, index: number, options: Options): Promise<WindowRecord[]> {
  const records: WindowRecord[] = [];
  let mark = { counters: await bench.probe.read(), at: epochMs() };
  const counted = async () => {
    await sleep(options.settleMs);
    const next = { counters: await bench.probe.read(), at: epochMs() };
    const delta = { database: DatabaseCounterProbe.since(mark.counters, next.counters), databaseSpanSeconds: (next.at - mark.at) / 1000 };
    mark = next;
    return delta;
  };

  // Idle: what the server burns with every job in flight and nobody saying anything.
  const idleCpu = new ProcessCpu([bench.server.pid]).start();
  await sleep(options.seconds * 1000);
  const idleMs = idleCpu.stop();
  const idleMsPerSec = idleMs / options.seconds;
  records.push({
    run: index,
    rate: 'idle',
    seconds: options.seconds,
    sent: 0,
    acked: 0,
    refused: 0,
    absorbedPerSec: 0,
    ackP50Ms: Number.NaN,
    ackP99Ms: Number.NaN,
    serverCpuMs: idleMs,
    serverKernelMs: idleCpu.kernelMs,
    serverCpuSecondsPerSecond: idleMsPerSec / 1000,
    serverCpuPercent: idleMsPerSec / 10,
    usPerHeartbeat: Number.NaN,
    netUsPerHeartbeat: Number.NaN,
    projectedPerCore: Number.NaN,
    swarmCpuPercent: 0,
    heard: 0,
    ...(await counted()),
  });

  for (const rate of options.rates) {
    const profile = options.cpuProfDir === null ? null : join(options.cpuProfDir, `heartbeat-${rate ?? 'max'}-run${index + 1}.cpuprofile`);
    const w = await heartbeatWindow(bench, rate, options.seconds, profile);
    if (w.refused > 0) throw new Error(`${w.refused} heartbeats refused at ${rateLabel(rate)}; the first: ${w.firstRefusal}`);
    if (w.acked < w.sent) throw new Error(`${w.sent - w.acked} heartbeats unanswered a minute after the window at ${rateLabel(rate)}`);
    const seconds = (w.drainedAt - w.startedAt) / 1000;
    const cpuMs = w.serverUserMs + w.serverSystemMs;
    const usPerHeartbeat = (cpuMs * 1000) / w.acked;
    records.push({
      run: index,
      rate,
      seconds,
      sent: w.sent,
      acked: w.acked,
      refused: w.refused,
      absorbedPerSec: w.acked / seconds,
      ackP50Ms: w.ackP50Ms,
      ackP99Ms: w.ackP99Ms,
      serverCpuMs: cpuMs,
      serverKernelMs: w.serverSystemMs,
      serverCpuSecondsPerSecond: cpuMs / seconds / 1000,
      serverCpuPercent: cpuMs / seconds / 10,
      usPerHeartbeat,
      netUsPerHeartbeat: ((cpuMs - idleMsPerSec * seconds) * 1000) / w.acked,
      projectedPerCore: 1e6 / usPerHeartbeat,
      swarmCpuPercent: w.swarmCpuMs / seconds / 10,
      heard: w.heard,
      ...(await counted()),
    });
  }
  return records;
}

function summarize(rate: Rate | 'idle', records: readonly WindowRecord[]): RateSummary {
  const of = records.filter((r) => r.rate === rate);
  const m = (pick: (r: WindowRecord) => number) => median(of.map(pick));
  return {
    rate,
    sent: m((r) => r.sent),
    acked: m((r) => r.acked),
    absorbedPerSec: m((r) => r.absorbedPerSec),
    ackP50Ms: m((r) => r.ackP50Ms),
    ackP99Ms: m((r) => r.ackP99Ms),
    serverCpuSecondsPerSecond: m((r) => r.serverCpuSecondsPerSecond),
    serverCpuPercent: m((r) => r.serverCpuPercent),
    usPerHeartbeat: m((r) => r.usPerHeartbeat),
    netUsPerHeartbeat: m((r) => r.netUsPerHeartbeat),
    projectedPerCore: m((r) => r.projectedPerCore),
    swarmCpuPercent: m((r) => r.swarmCpuPercent),
    heard: Math.min(...of.map((r) => r.heard)),
  };
}

const rowsOf = (d: DatabaseCounters) => d.tupInserted + d.tupUpdated + d.tupDeleted + d.tablesInserted + d.tablesUpdated + d.tablesDeleted;

function log(line: string): void {
  console.log(line);
}

function main(): Promise<void> {
  return (async () => {
    const options = parseArgs(process.argv.slice(2));
    const provenance = await collectProvenance({
      runwayEnv: HEARTBEAT_ENV,
      natsUrl: NATS_URL,
      notes: [`jobs submitted with a timeout of ${JOB_TIMEOUT_SECONDS} s`, 'the runners in a process of their own (WebSocket clients), the server with every role'],
    });
    log(
      `heartbeat benchmark: ${options.runners} runners each holding a running job, windows of ${options.seconds} s at ` +
        `${options.rates.map(rateLabel).join(', ')} after an idle one, ${options.runs} run(s) after a warm-up of ${options.warmupSeconds} s, ` +
        `${options.settleMs / 1000} s settle before each read of the counters\n${provenanceLine(provenance)}\n`,
    );
    const started = epochMs();
    if (options.cpuProfDir !== null) mkdirSync(options.cpuProfDir, { recursive: true });
    const deployment = await BenchDeployment.create(DB_NAME, HEARTBEAT_ENV);
    let bench: Bench | null = null;
    try {
      log('set-up:');
      const ready = await setUp(deployment, options);
      bench = ready.bench;
      const { setup } = ready;
      // Warm-up (discarded): the server's code paths compiled, each runner's job state cached.
      if (options.warmupSeconds > 0) {
        await heartbeatWindow(bench, options.rates.find((r) => r !== null) ?? 1_000, options.warmupSeconds);
        await sleep(options.settleMs);
      }
      const windows: WindowRecord[] = [];
      for (let i = 0; i < options.runs; i++) {
        const records = await run(bench, i, options);
        windows.push(...records);
        log(
          `  run ${i + 1}: ` +
            records
              .map((r) =>
                r.rate === 'idle'
                  ? `idle ${r.serverCpuSecondsPerSecond.toFixed(2)} cpu-s/s`
                  : `${rateLabel(r.rate)} ${thousands(r.absorbedPerSec)} hb/s absorbed at ${r.serverCpuSecondsPerSecond.toFixed(2)} cpu-s/s`,
              )
              .join('; '),
        );
      }
      const wallSeconds = (epochMs() - started) / 1000;
      const results = (['idle', ...options.rates] as (Rate | 'idle')[]).map((rate) => summarize(rate, windows));
      const absorbed = absorbedSummary(results, windows);
      report(options, provenance, results, windows, absorbed);

      // The proof: no window may have written a row (in --smoke the settle is too short to be sure).
      const written = windows.filter((w) => rowsOf(w.database) > 0);
      const load = loadavg();
      log(`\nwall time ${wallSeconds.toFixed(0)} s; load average now ${load.map((l) => l.toFixed(1)).join(' / ')} (1 / 5 / 15 min)`);
      if (/error/i.test(bench.server.log)) log(`the server logged:\n${bench.server.log.slice(-3_000)}`);
      if (options.cpuProfDir !== null) log(`CPU profiles of the server during each heartbeat window in ${options.cpuProfDir} (their figures are not comparable: the profiler costs CPU)`);
      if (options.json !== null) {
        const json = { provenance, options, env: HEARTBEAT_ENV, jobTimeoutSeconds: JOB_TIMEOUT_SECONDS, loadavgAfter: load, wallSeconds, setup, absorbed, results, windows };
        writeFileSync(options.json, `${JSON.stringify(json, null, 2)}\n`);
        log(`results written to ${options.json}`);
      }
      if (written.length > 0 && !options.smoke) {
        throw new Error(`rows were written during ${written.length} window(s): ${written.map((w) => `run ${w.run + 1} ${rateLabel(w.rate)}`).join(', ')}`);
      }
    } catch (error) {
      if (bench !== null) console.error(`--- the server logged ---\n${bench.server.log.slice(-5_000)}`);
      throw error;
    } finally {
      if (bench !== null) {
        bench.inspector?.close();
        await bench.probe.close();
        await bench.swarm.stop();
        bench.api.close();
        await bench.server.stop();
      }
      await deployment.dispose();
    }
  })();
}

/**
 * What was absorbed at best: the offered rate whose median absorbed rate is highest, with the
 * server CPU it took; the best single window; the target checked against the measured rate; and
 * the per-core projection, kept apart and named as one.
 */
interface AbsorbedSummary {
  /** Median over the runs, at the offered rate where it is highest: heartbeats acknowledged per second of wall time. */
  mostPerSec: number;
  atRate: Rate | null;
  /** Server CPU seconds per wall second in those windows (median). */
  serverCpuSecondsPerSecond: number;
  /** The single window that absorbed the most, and its CPU. */
  bestWindow: { run: number; rate: Rate; perSec: number; serverCpuSecondsPerSecond: number } | null;
  target: { perSec: number; basis: string; met: boolean };
  projection: { perCore: number; label: string };
}

function absorbedSummary(results: readonly RateSummary[], windows: readonly WindowRecord[]): AbsorbedSummary {
  const beating = results.filter((r) => r.rate !== 'idle');
  const best = beating.reduce<RateSummary | null>((a, r) => (a === null || r.absorbedPerSec > a.absorbedPerSec ? r : a), null);
  const window = windows.filter((w) => w.rate !== 'idle').reduce<WindowRecord | null>((a, w) => (a === null || w.absorbedPerSec > a.absorbedPerSec ? w : a), null);
  const mostPerSec = best?.absorbedPerSec ?? 0;
  return {
    mostPerSec,
    atRate: best === null ? null : (best.rate as Rate),
    serverCpuSecondsPerSecond: best?.serverCpuSecondsPerSecond ?? Number.NaN,
    bestWindow: window === null ? null : { run: window.run, rate: window.rate as Rate, perSec: window.absorbedPerSec, serverCpuSecondsPerSecond: window.serverCpuSecondsPerSecond },
    target: { perSec: TARGET_PER_SEC, basis: 'heartbeats acknowledged per second of wall time (median of the runs at the best offered rate), measured', met: mostPerSec >= TARGET_PER_SEC },
    projection: {
      perCore: best?.projectedPerCore ?? Number.NaN,
      label: 'PROJECTION, not measured: 1e6 / (server CPU µs per heartbeat), the rate one core would absorb if it did nothing else at 100%',
    },
  };
}

function report(options: Options, provenance: Provenance, results: readonly RateSummary[], windows: readonly WindowRecord[], absorbed: AbsorbedSummary): void {
  const where = provenanceLine(provenance);
  const idle = results.find((r) => r.rate === 'idle');
  log(
    `\nheartbeats (median of ${options.runs} run(s)). absorbed: acknowledged per second of wall time, measured; server cpu: the\n` +
      "server's CPU seconds per wall second (1.00 = one core busy the whole time); 'projected @ 1 core' is a PROJECTION\n" +
      '(1e6 / µs per heartbeat), not a measured rate:\n',
  );
  const dash = (n: number, text: string) => (Number.isNaN(n) ? '-' : text);
  printTable(
    where,
    ['offered', 'sent', 'acked', 'absorbed hb/s', 'ack p50', 'ack p99', 'server cpu-s/s', 'µs/hb', 'net µs/hb', 'projected @ 1 core', 'swarm cpu-s/s', 'runners heard'],
    results.map((r) => [
      rateLabel(r.rate),
      r.rate === 'idle' ? '-' : thousands(r.sent),
      r.rate === 'idle' ? '-' : thousands(r.acked),
      r.rate === 'idle' ? '-' : thousands(r.absorbedPerSec),
      dash(r.ackP50Ms, `${r.ackP50Ms.toFixed(1)} ms`),
      dash(r.ackP99Ms, `${r.ackP99Ms.toFixed(1)} ms`),
      r.serverCpuSecondsPerSecond.toFixed(2),
      dash(r.usPerHeartbeat, r.usPerHeartbeat.toFixed(0)),
      dash(r.netUsPerHeartbeat, r.netUsPerHeartbeat.toFixed(0)),
      dash(r.projectedPerCore, `(${thousands(r.projectedPerCore)})`),
      r.rate === 'idle' ? '-' : (r.swarmCpuPercent / 100).toFixed(2),
      r.rate === 'idle' ? '-' : `${r.heard}/${options.runners}`,
    ]),
  );
  const bw = absorbed.bestWindow;
  log(
    `\nmost absorbed: ${thousands(absorbed.mostPerSec)} heartbeats/s (median, offered ${rateLabel(absorbed.atRate)}), taking ` +
      `${absorbed.serverCpuSecondsPerSecond.toFixed(2)} server CPU-s per second` +
      (bw === null ? '' : `; best single window ${thousands(bw.perSec)}/s at ${bw.serverCpuSecondsPerSecond.toFixed(2)} CPU-s/s (run ${bw.run + 1}, ${rateLabel(bw.rate)})`) +
      `.\ntarget ${thousands(absorbed.target.perSec)}/s absorbed: ${absorbed.target.met ? 'met' : 'NOT met'} (${(absorbed.mostPerSec / absorbed.target.perSec * 100).toFixed(0)}% of it, measured).` +
      `\nprojection (not measured): ${thousands(absorbed.projection.perCore)}/s at one core, from ${(1e6 / absorbed.projection.perCore).toFixed(0)} µs of server CPU per heartbeat.`,
  );

  log(
    `\nthe database, from before each window to ${options.settleMs / 1000} s after it (pg_stat_database; n_tup_*: summed over ` +
      `pg_stat_user_tables; the benchmark's own reads taken out):\n`,
  );
  printTable(
    where,
    ['run', 'window', 'span', 'xact_commit', 'commits/s', 'rollback', 'tup ins', 'tup upd', 'tup del', 'n_tup_ins', 'n_tup_upd', 'n_tup_del'],
    windows.map((w) => [
      String(w.run + 1),
      rateLabel(w.rate),
      `${w.databaseSpanSeconds.toFixed(1)} s`,
      thousands(w.database.xactCommit),
      (w.database.xactCommit / w.databaseSpanSeconds).toFixed(1),
      String(w.database.xactRollback),
      String(w.database.tupInserted),
      String(w.database.tupUpdated),
      String(w.database.tupDeleted),
      String(w.database.tablesInserted),
      String(w.database.tablesUpdated),
      String(w.database.tablesDeleted),
    ]),
  );
  const written = windows.filter((w) => rowsOf(w.database) > 0);
  if (written.length === 0) log('\nrows inserted, updated or deleted during the windows: none.');
  else if (options.smoke) {
    // PostgreSQL publishes a backend's counts up to 10 s late: with a settle this short, the
    // set-up's last writes land in whichever window comes next.
    log(`\nrows counted during ${written.length} window(s): --smoke does not check them (its settle is too short to tell the set-up's late-published writes from the windows').`);
  } else log(`\nROWS WERE WRITTEN during ${written.length} window(s).`);
  const commitsPerSec = (rate: Rate | 'idle') => median(windows.filter((w) => w.rate === rate).map((w) => w.database.xactCommit / w.databaseSpanSeconds));
  if (idle !== undefined) {
    const extra = options.rates.map((rate) => {
      const perSec = commitsPerSec(rate) - commitsPerSec('idle');
      // The span is the window and its settle; the heartbeats only filled the window.
      const span = median(windows.filter((w) => w.rate === rate).map((w) => w.databaseSpanSeconds));
      const perWindowSec = (perSec * span) / options.seconds;
      const sign = perWindowSec < 0 ? '' : '+';
      return `${rateLabel(rate)} ${sign}${perWindowSec.toFixed(0)}/s (${(perWindowSec / options.runners).toFixed(2)} per runner a second)`;
    });
    log(
      `commits (read-only transactions count too): idle ${commitsPerSec('idle').toFixed(1)}/s; during heartbeat windows, beyond idle: ${extra.join(', ')}.`,
    );
  }
}

withBenchmarkServer(main).then(
  // Whatever is still open (a keep-alive connection) must not keep it running.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
