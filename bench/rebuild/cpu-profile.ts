/**
 * Where a `node --cpu-prof` profile spent its samples: self time by function and by area
 * (node-postgres, TypeORM, Runway's own code, Node internals, garbage collection, idle).
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof dist/bench/rebuild/rebuild.bench.js --profile
 *   node dist/bench/rebuild/cpu-profile.js /tmp/prof/CPU.*.cpuprofile [--top N]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The part of the process a frame belongs to. */
function areaOf(url: string, name: string): string {
  if (name === '(idle)') return 'idle (waiting for PostgreSQL)';
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)' || name === '(root)') return 'V8 (program)';
  if (url.includes('node_modules/pg-protocol') || url.includes('node_modules/pg/') || url.includes('node_modules/pg-types')) return 'node-postgres';
  if (url.includes('node_modules/typeorm')) return 'TypeORM';
  if (url.includes('node_modules/xstate')) return 'xstate';
  if (url.includes('node_modules/')) return 'other packages';
  if (url.includes('/dist/src/')) return `runway ${url.replace(/^.*\/dist\/src\//, '').replace(/\.js$/, '')}`;
  if (url.includes('/dist/bench/')) return 'the benchmark';
  if (url.startsWith('node:') || url === '') return 'Node.js internals (JSON, crypto, streams, ...)';
  return 'other';
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--'));
  if (file === undefined) throw new Error('usage: cpu-profile.js FILE.cpuprofile [--top N]');
  const top = Number(args[args.indexOf('--top') + 1]) || 25;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Self time of each node: the time deltas of the samples that landed on it.
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, micros] of self) {
    const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
    const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
    const area = areaOf(url, functionName);
    byArea.set(area, (byArea.get(area) ?? 0) + micros);
  }
  const row = (micros: number, label: string) => `${(micros / 1e6).toFixed(2).padStart(8)} s ${((100 * micros) / total).toFixed(1).padStart(5)}%  ${label}`;
  console.log(`${(total / 1e6).toFixed(1)} s sampled\n\nby area (self time):`);
  for (const [area, micros] of [...byArea].sort((a, b) => b[1] - a[1])) console.log(row(micros, area));
  console.log(`\ntop ${top} functions (self time):`);
  for (const [name, micros] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(row(micros, name));
}

main();
