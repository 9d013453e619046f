import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc; null when it is gone or
 * there is no /proc. On a busy machine this says what a system costs where its throughput
 * says mostly how much of the machine it got.
 */
export function processCpuMs(pid: number): number | null {
  const split = processCpuSplitMs(pid);
  return split === null ? null : split.user + split.system;
}

/** User and system (kernel) CPU time of a process so far, in ms; null when it is gone. */
export function processCpuSplitMs(pid: number): { user: number; system: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, inside parentheses).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(fields[11]) * 1000) / TICKS_PER_SECOND, system: (Number(fields[12]) * 1000) / TICKS_PER_SECOND };
  } catch {
    return null;
  }
}

/** CPU used by a fixed set of processes between `start()` and `stop()`, in ms. */
export class ProcessCpu {
  private readonly startMs = new Map<number, { user: number; system: number }>();
  /** Of the last `stop()`: the part spent in the kernel (system calls: sockets, mostly), ms. */
  kernelMs = 0;

  constructor(private readonly pids: readonly number[]) {}

  start(): this {
    for (const pid of this.pids) this.startMs.set(pid, processCpuSplitMs(pid) ?? { user: 0, system: 0 });
    return this;
  }

  /** User + system CPU since `start()`, ms. */
  stop(): number {
    let total = 0;
    this.kernelMs = 0;
    for (const pid of this.pids) {
      const now = processCpuSplitMs(pid);
      const then = this.startMs.get(pid) ?? { user: 0, system: 0 };
      if (now === null) continue;
      total += now.user - then.user + now.system - then.system;
      this.kernelMs += now.system - then.system;
    }
    return total;
  }
}

/** This process's own CPU (user + system) since `start`, in ms. */
export function ownCpuSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}
