/**
 * `npm run bench`: every benchmark under bench/, one after another, each in its own process so
 * one's heap and connections do not weigh on the next. Flags (--smoke, --runs, --seconds) pass
 * through to each (rebuild takes --seconds and ignores it: its runs are whole passes over the
 * log; throughput and latency ignore --seconds too, and latency --runs: their runs are numbers of
 * jobs; heartbeat and idle take --seconds as the length of a window, memory ignores it); results are
 * written to bench/results.json, keyed by benchmark, with where, when and at which commit they were
 * taken (`provenance`, bench/support/provenance.ts; each benchmark's own is in its result too).
 * That one file also keeps, under `earlier`, the records of other runs that the READMEs quote,
 * each with a note saying what it is; a new run replaces the results and leaves those.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NATS_URL, UNTHROTTLED_ENV } from './support/runway-deployment';
import { collectProvenance, provenanceLine } from './support/provenance';

const BENCHMARKS = [
  { name: 'append', entry: join(__dirname, 'append', 'append.bench.js') },
  { name: 'rebuild', entry: join(__dirname, 'rebuild', 'rebuild.bench.js') },
  { name: 'throughput', entry: join(__dirname, 'throughput', 'throughput.bench.js') },
  { name: 'submit', entry: join(__dirname, 'submit', 'submit.bench.js') },
  { name: 'latency', entry: join(__dirname, 'latency', 'latency.bench.js') },
  { name: 'heartbeat', entry: join(__dirname, 'heartbeat', 'heartbeat.bench.js') },
  { name: 'memory', entry: join(__dirname, 'memory', 'memory.bench.js') },
  { name: 'idle', entry: join(__dirname, 'idle', 'idle.bench.js') },
];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const smoke = args.includes('--smoke');
  // The servers of throughput, latency, heartbeat and memory run with the rate limits lifted (and
  // heartbeat with longer timeouts: its own provenance says so); append and rebuild start none.
  const provenance = await collectProvenance({ runwayEnv: UNTHROTTLED_ENV, natsUrl: NATS_URL });
  console.log(provenanceLine(provenance));
  const scratch = mkdtempSync(join(tmpdir(), 'runway-bench-'));
  const results: Record<string, unknown> = {};
  for (const bench of BENCHMARKS) {
    const out = join(scratch, `${bench.name}.json`);
    console.log(`\n== ${bench.name} ==`);
    const run = spawnSync(process.execPath, [bench.entry, ...args, '--json', out], { stdio: 'inherit' });
    if (run.status !== 0) {
      console.error(`bench ${bench.name} failed (exit ${run.status ?? run.signal})`);
      process.exit(1);
    }
    results[bench.name] = JSON.parse(readFileSync(out, 'utf8'));
  }
  // Smoke runs only prove the benchmarks still work; they never replace the recorded results.
  const target = join(__dirname, '..', 'bench', smoke ? 'results.smoke.json' : 'results.json');
  const earlier = !smoke && existsSync(target) ? (JSON.parse(readFileSync(target, 'utf8')) as { earlier?: unknown }).earlier : undefined;
  writeFileSync(target, JSON.stringify({ recordedAt: new Date().toISOString(), args, provenance, results, earlier }, null, 2) + '\n');
  console.log(`\nwrote ${target}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
