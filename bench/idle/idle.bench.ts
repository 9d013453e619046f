/**
 * Idle: what a Runway server costs with nothing to do (no runners, no jobs): its own CPU and its
 * PostgreSQL backends' over a window, and the transactions it commits meanwhile (its readers of
 * the log, the liveness sweep, the gateway's sweep). Every role in one process, on NATS, with
 * Runway's defaults but for its log level (warn, as in every benchmark). With `--baseline DIR`
 * (another checkout, built, e.g. a `git worktree` of an earlier commit) its server runs too, run
 * for run in turn with this one's, so before and after come from one run. See bench/README.md.
 *
 *   npm run build && npm run build:bench && node dist-bench/idle/idle.bench.js [--smoke] [--runs N] [--seconds S] [--settle S]
 *     [--baseline DIR] [--cpu-prof DIR] [--json FILE]
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { COMMON_FLAGS, parseFlags } from '../support/args';
import { ProcessCpu } from '../support/cpu';
import { DatabaseCounterProbe, databaseSampler, withBenchmarkServer } from '../support/postgres';
import { collectProvenance, provenanceLine } from '../support/provenance';
import { BenchDeployment, NATS_URL } from '../support/runway-deployment';
import { median, printTable, sleep } from '../support/stats';

const DB_NAME = 'runway_bench_idle';

interface Options {
  smoke: boolean;
  runs: number;
  /** The measured window, s. */
  seconds: number;
  /** The wait after the server is ready, before the window, s. */
  settleSeconds: number;
  /** Write each server's CPU profile here (the whole life of the server, settle included). */
  cpuProfDir: string | null;
  /** Another checkout whose server is measured too, in turn with this one's. */
  baseline: string | null;
  json: string | null;
}

function parseArgs(argv: readonly string[]): Options {
  const flags = parseFlags(argv, { ...COMMON_FLAGS, '--settle': 'number', '--cpu-prof': 'text', '--baseline': 'text' });
  const options: Options = {
    smoke: flags['--smoke'] ?? false,
    runs: flags['--runs'] ?? 3,
    seconds: flags['--seconds'] ?? 30,
    settleSeconds: flags['--settle'] ?? 10,
    cpuProfDir: flags['--cpu-prof'] ?? null,
    baseline: flags['--baseline'] ?? null,
    json: flags['--json'] ?? null,
  };
  // --smoke wins: CI stays small.
  if (options.smoke) Object.assign(options, { runs: 1, seconds: 2, settleSeconds: 1, cpuProfDir: null, baseline: null });
  return options;
}

interface RunRecord {
  run: number;
  /** `runway`, or `baseline` (the server of --baseline). */
  system: string;
  seconds: number;
  /** CPU of the server process, ms per second of the window (10 = 1% of a core). */
  serverCpuMsPerS: number;
  /** CPU of its PostgreSQL backends, ms per second. */
  postgresCpuMsPerS: number;
  /** Transactions the server committed in its database, per second (read-only ones count). */
  commitsPerS: number;
  /** Rows it wrote meanwhile. */
  rowsWritten: number;
}

async function oneRun(run: number, system: string, root: string | null, options: Options): Promise<RunRecord> {
  // No setting raised: an idle server as it ships.
  const deployment = await BenchDeployment.create(DB_NAME);
  try {
    const server = await deployment.start(`${system}-idle-${run}`, {
      ...(options.cpuProfDir === null ? {} : { cpuProfDir: options.cpuProfDir }),
      ...(root === null ? {} : { root }),
    });
    try {
      await sleep(options.settleSeconds * 1000);
      // The counters lag up to 10 s (PostgreSQL 15 publishes them when a backend goes idle): the
      // second read is taken 11 s after the window, the server idling on meanwhile, and the
      // commits are counted over that whole stretch of idling.
      const probe = await DatabaseCounterProbe.open(DB_NAME);
      const before = await probe.read();
      const postgres = await databaseSampler(DB_NAME, 1_000);
      const cpu = new ProcessCpu([server.pid]).start();
      const started = performance.now();
      await sleep(options.seconds * 1000);
      const serverMs = cpu.stop();
      const elapsedS = (performance.now() - started) / 1000;
      const usage = await postgres.stop();
      const lagS = options.smoke ? 0 : 11;
      await sleep(lagS * 1000);
      const after = await probe.read();
      await probe.close();
      const delta = DatabaseCounterProbe.since(before, after);
      return {
        run,
        system,
        seconds: elapsedS,
        serverCpuMsPerS: serverMs / elapsedS,
        postgresCpuMsPerS: usage.backendCpuMs / elapsedS,
        commitsPerS: delta.xactCommit / (elapsedS + lagS),
        rowsWritten: delta.tablesInserted + delta.tablesUpdated + delta.tablesDeleted,
      };
    } finally {
      await server.stop();
    }
  } finally {
    await deployment.dispose();
  }
}

/** The commit a checkout is at, and whether it has changes. */
function describeCheckout(root: string): string {
  try {
    return execFileSync('git', ['-C', root, 'describe', '--always', '--dirty'], { encoding: 'utf8' }).trim();
  } catch {
    return 'not a git checkout';
  }
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  // RunwayServer starts every server with RUNWAY_LOG_LEVEL=warn; nothing else differs from the defaults.
  const provenance = await collectProvenance({ runwayEnv: { RUNWAY_LOG_LEVEL: 'warn' }, natsUrl: NATS_URL });
  console.log(provenanceLine(provenance));
  console.log(
    `idle benchmark: a server with every role, no runners and no jobs, Runway's defaults; ${options.runs} run(s) of ${options.seconds} s after ${options.settleSeconds} s settle\n`,
  );
  const systems: { name: string; root: string | null }[] = [
    ...(options.baseline === null ? [] : [{ name: 'baseline', root: resolve(options.baseline) }]),
    { name: 'runway', root: null },
  ];
  if (options.baseline !== null) console.log(`baseline: the server of ${resolve(options.baseline)} (${describeCheckout(resolve(options.baseline))})\n`);
  const runs: RunRecord[] = [];
  await withBenchmarkServer(async () => {
    for (let run = 1; run <= options.runs; run++) {
      for (const system of systems) {
        const record = await oneRun(run, system.name, system.root, options);
        runs.push(record);
        console.log(
          `  run ${run}, ${system.name}: server ${(record.serverCpuMsPerS / 10).toFixed(2)}% of a core, PostgreSQL ${(record.postgresCpuMsPerS / 10).toFixed(2)}%, ${record.commitsPerS.toFixed(1)} commits/s, ${record.rowsWritten} rows written`,
        );
      }
    }
  });
  const summaries = systems.map(({ name }) => {
    const of = runs.filter((r) => r.system === name);
    return {
      system: name,
      serverCorePercent: median(of.map((r) => r.serverCpuMsPerS)) / 10,
      postgresCorePercent: median(of.map((r) => r.postgresCpuMsPerS)) / 10,
      commitsPerS: median(of.map((r) => r.commitsPerS)),
      rowsWritten: median(of.map((r) => r.rowsWritten)),
    };
  });
  console.log('');
  console.log(provenanceLine(provenance));
  printTable(
    `an idle server (median of ${options.runs} run(s) of ${options.seconds} s): CPU as a share of one core, and the transactions it commits`,
    ['system', 'server cpu', 'postgres cpu', 'server + postgres', 'commits/s', 'rows written', 'target'],
    summaries.map((summary) => [
      summary.system,
      `${summary.serverCorePercent.toFixed(2)}%`,
      `${summary.postgresCorePercent.toFixed(2)}%`,
      `${(summary.serverCorePercent + summary.postgresCorePercent).toFixed(2)}%`,
      summary.commitsPerS.toFixed(1),
      String(summary.rowsWritten),
      summary.system !== 'runway' ? '-' : summary.serverCorePercent < 1 ? 'server < 1%: met' : 'server < 1%: NOT met',
    ]),
  );
  if (summaries.length === 2) {
    const [before, after] = summaries;
    console.log(
      `\nrunway / baseline: server cpu ${(after.serverCorePercent / before.serverCorePercent).toFixed(2)}, postgres cpu ${(after.postgresCorePercent / before.postgresCorePercent).toFixed(2)}, commits ${(after.commitsPerS / before.commitsPerS).toFixed(2)}`,
    );
  }
  console.log(`\nload average now ${loadavg().map((l) => l.toFixed(1)).join(' / ')} (1 / 5 / 15 min)`);
  if (options.json !== null) writeFileSync(options.json, `${JSON.stringify({ options, provenance, runs, summaries }, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
