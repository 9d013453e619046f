/**
 * Memory per runner connection: the resident memory (VmRSS) of one Runway server with every role
 * (PostgreSQL and NATS) with 0, 1,000 and 5,000 idle runners connected (hello, then `ready`, no
 * jobs), each level measured after a settle and a forced full garbage collection; the runners in
 * a process of their own. Also the V8 heap after that collection. See bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/memory/memory.bench.js [--smoke] [--runs N] [--levels LIST]
 *     [--settle S] [--hello-only] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { COMMON_FLAGS, counts, parseFlags } from '../support/args';
import { BenchChild } from '../support/child';
import { ProcessCpu } from '../support/cpu';
import { HttpClient } from '../support/http';
import { type InspectedMemory, InspectorSession } from '../support/inspector';
import { mebibytes, processRssBytes } from '../support/memory';
import { collectProvenance, provenanceLine } from '../support/provenance';
import { BenchDeployment, NATS_URL, UNTHROTTLED_ENV } from '../support/runway-deployment';
import { type RunwayServer, freePort } from '../support/runway-server';
import { createTenant } from '../support/runway-tenant';
import { epochMs, median, printTable, sleep, thousands } from '../support/stats';
import { withBenchmarkServer } from '../support/postgres';

const DB_NAME = 'runway_bench_memory';

interface Options {
  smoke: boolean;
  runs: number;
  /** Connected runners at each measured level, ascending (0 is always measured first). */
  levels: number[];
  /** Wait after the last runner of a level is connected, before collecting and sampling, s. */
  settleSeconds: number;
  /** RSS samples per level, one every `sampleEveryMs`: over a gateway sweep period (5 s). */
  samples: number;
  sampleEveryMs: number;
  /** The runners say hello only (no `ready`): they hold a socket but do not wait for work. */
  helloOnly: boolean;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  const flags = parseFlags(argv, { ...COMMON_FLAGS, '--levels': 'list', '--settle': 'number', '--hello-only': 'switch' });
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    runs: flags['--runs'] ?? 3,
    levels: [...new Set(counts('--levels', flags['--levels'] ?? ['1000', '5000']))].sort((a, b) => a - b),
    settleSeconds: flags['--settle'] ?? 10,
    samples: 6,
    sampleEveryMs: 1_000,
    helloOnly: flags['--hello-only'] ?? false,
    json: flags['--json'] ?? null,
  };
  // --seconds (bench/run.ts passes it to every benchmark) is accepted and ignored: a level's
  // length is its settle and its samples. --smoke wins over everything else: CI stays small.
  if (options.smoke) Object.assign(options, { runs: 1, levels: [25, 50], settleSeconds: 0.5, samples: 3, sampleEveryMs: 100 });
  return options;
}

/** One level of one run. */
interface LevelRecord {
  run: number;
  /** Runners connected (the server's own gauge, `runway_connected_runners`, agrees). */
  connections: number;
  /** After all were closed again (the last row of a run). */
  closed: boolean;
  rssMedian: number;
  rssMin: number;
  rssMax: number;
  /** `process.memoryUsage()` in the server right after the collection. */
  heap: InspectedMemory;
  /** The server's CPU over the sampling, as a share of one core. */
  cpuPercent: number;
  /** Time to connect this level's new runners (each welcomed), s. */
  connectSeconds: number;
}

interface LevelSummary {
  connections: number;
  closed: boolean;
  rss: number;
  heapUsed: number;
  external: number;
  cpuPercent: number;
  /** Medians over the runs of each run's (level - level 0) / connections, bytes; null for level 0. */
  rssPerConnection: number | null;
  heapPerConnection: number | null;
}

/**
 * Waits `settleSeconds`, collects garbage (twice: what the first frees can make more garbage
 * unreachable), reads the heap, then samples VmRSS `samples` times and the CPU meanwhile.
 */
async function measure(server: RunwayServer, inspector: InspectorSession, options: Options): Promise<Omit<LevelRecord, 'run' | 'connections' | 'closed' | 'connectSeconds'>> {
  await sleep(options.settleSeconds * 1000);
  await inspector.collectGarbage();
  await inspector.collectGarbage();
  const heap = await inspector.memoryUsage();
  const cpu = new ProcessCpu([server.pid]).start();
  const t0 = epochMs();
  const rss: number[] = [];
  for (let i = 0; i < options.samples; i++) {
    await sleep(options.sampleEveryMs);
    const bytes = processRssBytes(server.pid);
    if (bytes === null) throw new Error('the server is gone (no /proc entry)');
    rss.push(bytes);
  }
  const cpuPercent = (cpu.stop() / (epochMs() - t0)) * 100;
  return { rssMedian: median(rss), rssMin: Math.min(...rss), rssMax: Math.max(...rss), heap, cpuPercent };
}

/** `runway_connected_runners` from the server's /metrics. */
async function connectedGauge(api: HttpClient): Promise<number> {
  const text = (await api.call<string>('GET', '/metrics', { expect: 200 })).body;
  const match = /^runway_connected_runners (\d+)/m.exec(String(text));
  if (match === null) throw new Error('no runway_connected_runners in /metrics');
  return Number(match[1]);
}

async function run(deployment: BenchDeployment, tokens: string[], index: number, options: Options): Promise<LevelRecord[]> {
  // The inspector forces the collections and reads the heap; nothing in the server does it.
  const inspectPort = await freePort();
  const server = await deployment.start(`runway-${index + 1}`, { nodeArgs: [`--inspect=127.0.0.1:${inspectPort}`] });
  const api = new HttpClient(server.url, 2);
  const inspector = await InspectorSession.connect(inspectPort);
  const swarm = BenchChild.start(join(__dirname, 'idle-swarm.js'), { url: server.url, ready: !options.helloOnly }, `idle runners (run ${index + 1})`);
  const records: LevelRecord[] = [];
  const level = async (connections: number, closed: boolean, connectSeconds: number) => {
    const gauge = await connectedGauge(api);
    if (gauge !== connections) throw new Error(`expected ${connections} runners connected, the server counts ${gauge}`);
    const record: LevelRecord = { run: index, connections, closed, connectSeconds, ...(await measure(server, inspector, options)) };
    records.push(record);
    const label = closed ? 'all closed again' : `${thousands(connections)} runners`;
    console.log(`  run ${index + 1}, ${label}: RSS ${mebibytes(record.rssMedian)}, heap used ${mebibytes(record.heap.heapUsed)}, cpu ${record.cpuPercent.toFixed(1)}%`);
  };
  try {
    await swarm.waitFor('started', 30_000);
    await level(0, false, 0);
    let connected = 0;
    for (const connections of options.levels) {
      const t0 = epochMs();
      swarm.send({ type: 'connect', tokens: tokens.slice(connected, connections) });
      connected = Number((await swarm.waitFor('connected', 600_000)).runners);
      // Every hello is answered, but the `ready`s that follow may still be on their way.
      await sleep(200);
      await level(connections, false, (epochMs() - t0) / 1000);
    }
    const t0 = epochMs();
    await swarm.stop();
    // The server records each disconnect: wait until it has seen them all.
    while ((await connectedGauge(api)) > 0) {
      if (epochMs() - t0 > 120_000) throw new Error('runners still counted as connected 2 minutes after closing');
      await sleep(200);
    }
    await level(0, true, 0);
    if (/error/i.test(server.log)) console.log(`${server.label} logged:\n${server.log.slice(-3_000)}`);
  } finally {
    await swarm.stop();
    inspector.close();
    api.close();
    await server.stop();
  }
  return records;
}

function summarize(records: readonly LevelRecord[], options: Options): LevelSummary[] {
  const runs = Array.from({ length: options.runs }, (_, i) => i);
  const baseline = (run: number) => records.find((r) => r.run === run && r.connections === 0 && !r.closed) as LevelRecord;
  const levels = [
    { connections: 0, closed: false },
    ...options.levels.map((connections) => ({ connections, closed: false })),
    { connections: 0, closed: true },
  ];
  return levels.map(({ connections, closed }) => {
    const of = records.filter((r) => r.connections === connections && r.closed === closed);
    const perConnection = (pick: (r: LevelRecord) => number) =>
      connections === 0
        ? null
        : median(
            runs.map((run) => {
              const at = of.find((r) => r.run === run) as LevelRecord;
              return (pick(at) - pick(baseline(run))) / connections;
            }),
          );
    return {
      connections,
      closed,
      rss: median(of.map((r) => r.rssMedian)),
      heapUsed: median(of.map((r) => r.heap.heapUsed)),
      external: median(of.map((r) => r.heap.external)),
      cpuPercent: median(of.map((r) => r.cpuPercent)),
      rssPerConnection: perConnection((r) => r.rssMedian),
      heapPerConnection: perConnection((r) => r.heap.heapUsed),
    };
  });
}

function main(): Promise<void> {
  return (async () => {
    const options = parseArgs(process.argv.slice(2));
    const most = options.levels[options.levels.length - 1];
    const provenance = await collectProvenance({ runwayEnv: UNTHROTTLED_ENV, natsUrl: NATS_URL });
    const where = provenanceLine(provenance);
    console.log(
      `memory benchmark: one server (every role), 0 then ${options.levels.map((n) => thousands(n)).join(', ')} idle runners ` +
        `(${options.helloOnly ? 'hello only' : 'hello, then ready'}), ${options.runs} run(s), each level after a settle of ` +
        `${options.settleSeconds} s and a full GC, ${options.samples} RSS samples ${options.sampleEveryMs} ms apart\n${where}\n`,
    );
    const started = epochMs();
    const deployment = await BenchDeployment.create(DB_NAME, UNTHROTTLED_ENV);
    try {
      // The runners are registered by a server of their own, so every measured server starts
      // alike: the same database, nothing done before its level 0 but starting.
      const registrar = await deployment.start('runway-setup');
      const api = new HttpClient(registrar.url, 10);
      const t0 = epochMs();
      const tenant = await createTenant(api, most, 'enterprise', 8).finally(async () => {
        api.close();
        await registrar.stop();
      });
      console.log(`${thousands(most)} runners registered in ${((epochMs() - t0) / 1000).toFixed(1)} s`);
      const tokens = tenant.runners.map((r) => r.token);
      const records: LevelRecord[] = [];
      for (let i = 0; i < options.runs; i++) records.push(...(await run(deployment, tokens, i, options)));
      const wallSeconds = (epochMs() - started) / 1000;
      const results = summarize(records, options);

      console.log(`\nresident memory of the server (median of ${options.runs} run(s); per connection: (level - 0) / connections, median of the runs):\n`);
      const kib = (bytes: number | null) => (bytes === null ? '-' : `${(bytes / 1024).toFixed(1)} KiB`);
      printTable(
        where,
        ['runners', 'RSS', 'RSS / connection', 'heap used', 'heap / connection', 'external', 'server cpu'],
        results.map((r) => [
          r.closed ? '0 (all closed)' : thousands(r.connections),
          mebibytes(r.rss),
          kib(r.rssPerConnection),
          mebibytes(r.heapUsed),
          kib(r.heapPerConnection),
          mebibytes(r.external),
          `${r.cpuPercent.toFixed(1)}%`,
        ]),
      );
      const load = loadavg();
      console.log(`\nwall time ${wallSeconds.toFixed(0)} s; load average now ${load.map((l) => l.toFixed(1)).join(' / ')} (1 / 5 / 15 min)`);
      if (options.json !== null) {
        writeFileSync(options.json, `${JSON.stringify({ provenance, options, env: UNTHROTTLED_ENV, loadavgAfter: load, wallSeconds, results, records }, null, 2)}\n`);
        console.log(`results written to ${options.json}`);
      }
    } finally {
      await deployment.dispose();
    }
  })();
}

withBenchmarkServer(main).then(
  // Whatever is still open (a keep-alive connection) must not keep it running.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
