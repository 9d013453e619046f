/**
 * Where a `node --cpu-prof` profile spent its samples, leaving out idle time: self time by area
 * (node-postgres, TypeORM, xstate, Runway's own code by file, the benchmark, Node internals,
 * garbage collection), the inclusive time of each of Runway's own functions (the samples with
 * that function anywhere on the stack), and self time by function. Reads any `.cpuprofile`: those
 * `throughput.bench.js --cpu-prof DIR` writes for its servers, those `heartbeat.bench.js --cpu-prof
 * DIR` takes through the inspector, and one of a benchmark run under `node --cpu-prof`.
 *
 *   node dist-bench/support/cpu-profile.js DIR/runway-single.cpuprofile [--top N]
 *
 * A profile samples wall time: a process that the OS took off the CPU (on a busy machine, often
 * right in a system call such as `writev`) is charged to whatever it was running then, so read
 * the shares as shares of where the process was, and compare them with its CPU time.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const IDLE = '(idle)';

/** Runway's code, as the product build (`dist/src`) has it; the benchmark's own is in `dist-bench`. */
const isRunway = (url: string) => url.includes('/dist/src/');

function label(frame: ProfileNode['callFrame']): string {
  const where = frame.url.replace(/^.*\/(node_modules|dist|dist-bench)\//, '$1/').replace(/^file:\/\//, '');
  return `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
}

/** The part of the process a frame belongs to. */
function areaOf(url: string, name: string): string {
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)' || name === '(root)') return 'V8 (program)';
  if (url.includes('node_modules/pg-protocol') || url.includes('node_modules/pg/') || url.includes('node_modules/pg-pool') || url.includes('node_modules/pg-types')) return 'node-postgres';
  if (url.includes('node_modules/typeorm')) return 'TypeORM';
  if (url.includes('node_modules/xstate')) return 'xstate';
  if (url.includes('node_modules/')) return 'other packages';
  if (isRunway(url)) return `runway ${url.replace(/^.*\/dist\/src\//, '').replace(/\.js$/, '')}`;
  if (url.includes('/dist-bench/')) return 'the benchmark';
  if (url.startsWith('node:') || url === '') return 'Node.js internals (JSON, crypto, streams, ...)';
  return 'other';
}

export function summarize(profile: CpuProfile, top: number): string {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const byArea = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const self = new Map<string, number>();
  const add = (map: Map<string, number>, key: string, micros: number) => map.set(key, (map.get(key) ?? 0) + micros);
  let busy = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const micros = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id) as ProfileNode;
    if (leaf.callFrame.functionName === IDLE) {
      idle += micros;
      return;
    }
    busy += micros;
    add(byArea, areaOf(leaf.callFrame.url, leaf.callFrame.functionName), micros);
    add(self, label(leaf.callFrame), micros);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      const frame = (byId.get(node) as ProfileNode).callFrame;
      if (!isRunway(frame.url)) continue;
      const key = label(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      add(inclusive, key, micros);
    }
  });
  const row = (micros: number, text: string) => `${(micros / 1e6).toFixed(2).padStart(8)} s ${((100 * micros) / busy).toFixed(1).padStart(5)}%  ${text}`;
  const sorted = (map: Map<string, number>, n = Infinity) => [...map].sort((a, b) => b[1] - a[1]).slice(0, n);
  return [
    `${((busy + idle) / 1e6).toFixed(1)} s sampled, ${(idle / 1e6).toFixed(1)} s idle (waiting: for PostgreSQL, the network, a timer); shares below are of the ${(busy / 1e6).toFixed(1)} s not idle`,
    '',
    'by area (self time):',
    ...sorted(byArea).map(([k, v]) => row(v, k)),
    '',
    `Runway functions, inclusive (on the stack), top ${top}:`,
    ...sorted(inclusive, top).map(([k, v]) => row(v, k)),
    '',
    `self time by function, top ${top}:`,
    ...sorted(self, top).map(([k, v]) => row(v, k)),
  ].join('\n');
}

function main(): void {
  const args = process.argv.slice(2);
  const at = args.indexOf('--top');
  const file = args.find((a, i) => !a.startsWith('--') && !(at >= 0 && i === at + 1));
  if (file === undefined) throw new Error('usage: cpu-profile.js FILE.cpuprofile [--top N]');
  const top = at >= 0 ? Number(args[at + 1]) : 30;
  if (!Number.isInteger(top) || top <= 0) throw new Error(`--top needs a positive whole number, got ${args[at + 1]}`);
  console.log(summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top));
}

if (require.main === module) main();
