/**
 * Where a Runway server's CPU went, by Runway code path: the inclusive time of each of Runway's
 * own functions (the samples with that function anywhere on the stack), and self time by
 * function, leaving out idle time. Reads a `node --cpu-prof` profile, such as the ones
 * `throughput.bench.js --cpu-prof DIR` writes for its servers.
 *
 *   node dist/bench/support/cpu-profile-paths.js DIR/runway-single.cpuprofile [--top N]
 *
 * A profile samples wall time: a process that the OS took off the CPU (on a busy machine, often
 * right in a system call such as `writev`) is charged to whatever it was running then, so read
 * the inclusive times as shares of where the process was, and compare them with its CPU time.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const IDLE = new Set(['(idle)']);

function label(frame: ProfileNode['callFrame']): string {
  const where = frame.url.replace(/^.*\/(node_modules|dist)\//, '$1/').replace(/^file:\/\//, '');
  return `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber + 1}`;
}

const isRunway = (url: string) => url.includes('/dist/src/');

export function summarize(profile: CpuProfile, top: number): string {
  const parent = new Map<number, number>();
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const inclusive = new Map<string, number>();
  const self = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const micros = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id) as ProfileNode;
    if (IDLE.has(leaf.callFrame.functionName)) {
      idle += micros;
      return;
    }
    busy += micros;
    const leafLabel = label(leaf.callFrame);
    self.set(leafLabel, (self.get(leafLabel) ?? 0) + micros);
    const seen = new Set<string>();
    for (let node: number | undefined = id; node !== undefined; node = parent.get(node)) {
      const frame = (byId.get(node) as ProfileNode).callFrame;
      if (!isRunway(frame.url)) continue;
      const key = label(frame);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + micros);
    }
  });
  const row = (micros: number, text: string) => `${(micros / 1e6).toFixed(2).padStart(8)} s ${((100 * micros) / busy).toFixed(1).padStart(5)}%  ${text}`;
  const sorted = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `${((busy + idle) / 1e6).toFixed(1)} s sampled, ${(idle / 1e6).toFixed(1)} s idle; shares below are of the ${(busy / 1e6).toFixed(1)} s not idle`,
    '',
    `Runway functions, inclusive (on the stack), top ${top}:`,
    ...sorted(inclusive).map(([k, v]) => row(v, k)),
    '',
    `self time by function, top ${top}:`,
    ...sorted(self).map(([k, v]) => row(v, k)),
  ].join('\n');
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a));
  if (file === undefined) throw new Error('usage: cpu-profile-paths.js FILE.cpuprofile [--top N]');
  const at = args.indexOf('--top');
  const top = at >= 0 ? Number(args[at + 1]) : 30;
  console.log(summarize(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, top));
}

if (require.main === module) main();
