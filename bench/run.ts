/**
 * `npm run bench`: every benchmark under bench/, one after another, each in its own process so
 * one's heap and connections do not weigh on the next. Flags (--smoke, --runs, --seconds) pass
 * through to each (rebuild takes --seconds and ignores it: its runs are whole passes over the
 * log; throughput and latency ignore --seconds too, and latency --runs: their runs are numbers of
 * jobs; heartbeat takes --seconds as the length of a window, memory ignores it); results are
 * written to bench/results.json, keyed by benchmark.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BENCHMARKS = [
  { name: 'append', entry: join(__dirname, 'append', 'append.bench.js') },
  { name: 'rebuild', entry: join(__dirname, 'rebuild', 'rebuild.bench.js') },
  { name: 'throughput', entry: join(__dirname, 'throughput', 'throughput.bench.js') },
  { name: 'latency', entry: join(__dirname, 'latency', 'latency.bench.js') },
  { name: 'heartbeat', entry: join(__dirname, 'heartbeat', 'heartbeat.bench.js') },
  { name: 'memory', entry: join(__dirname, 'memory', 'memory.bench.js') },
];

function main(): void {
  const args = process.argv.slice(2);
  const smoke = args.includes('--smoke');
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
  const target = join(__dirname, '..', '..', 'bench', smoke ? 'results.smoke.json' : 'results.json');
  writeFileSync(target, JSON.stringify({ recordedAt: new Date().toISOString(), args, results }, null, 2) + '\n');
  console.log(`\nwrote ${target}`);
}

main();
