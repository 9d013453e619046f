import { existsSync, readFileSync, readdirSync } from 'node:fs';

/**
 * A job runs in a process group of its own (spawned detached: its own session and group, the
 * group id is the leader's pid). Canceling it means the whole group: whatever the job forked.
 * "Gone" is checked, never assumed.
 */

export interface GroupMembers {
  /** Members still running (not zombies). */
  living: number;
}

/**
 * Linux: the group's members from /proc, zombies apart. A zombie in the group (an orphan that
 * an init which does not reap, as in some containers, will never collect) is dead: it holds no
 * CPU, memory or files. Null where /proc cannot tell.
 */
export function groupMembers(pgid: number, procRoot = '/proc'): GroupMembers | null {
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return null;
  }
  let living = 0;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`${procRoot}/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const parsed = parseProcStat(stat);
    if (parsed !== null && parsed.pgrp === pgid && parsed.state !== 'Z' && parsed.state !== 'X') living++;
  }
  return { living };
}

/** `/proc/<pid>/stat`: the state and process group, read after the command name (which may hold spaces and parens). */
export function parseProcStat(stat: string): { state: string; pgrp: number } | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  const pgrp = Number(fields[2]);
  if (fields[0] === undefined || !Number.isInteger(pgrp)) return null;
  return { state: fields[0], pgrp };
}

/**
 * Whether the process is gone ("no such process", or no /proc/<pid> on a /proc that lists this
 * process), or a zombie nobody reaps (an init that does not reap orphans): dead either way. Throws
 * where it cannot tell (no /proc, an unreadable stat, an unexpected error), never guessing "gone".
 */
export function processGone(pid: number): boolean {
  return processGoneIn('/proc', pid);
}

/** `processGone` against another /proc (for tests). */
export function processGoneIn(procRoot: string, pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return true;
    if (code !== 'EPERM') throw error;
    // EPERM: it exists, but is not ours to signal; /proc says whether it is a zombie.
  }
  let stat: string;
  try {
    stat = readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
  } catch (error) {
    // Exited (and reaped) since the signal: /proc is there, as our own entry shows, but not it.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && existsSync(`${procRoot}/${process.pid}/stat`)) return true;
    throw new Error(`cannot tell whether process ${pid} is gone: ${(error as Error).message}`, { cause: error });
  }
  const parsed = parseProcStat(stat);
  if (parsed === null) throw new Error(`cannot tell whether process ${pid} is gone: unreadable ${procRoot}/${pid}/stat`);
  return parsed.state === 'Z' || parsed.state === 'X';
}

/** Whether any process of the group still lives. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ESRCH') return false;
    if (code !== 'EPERM') throw error;
    // EPERM: someone of the group exists but is not ours to signal (a setuid child); alive.
  }
  const members = groupMembers(pgid);
  return members === null ? true : members.living > 0;
}

/** Sends `signal` to the whole group; false if there was nobody to signal. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

export interface TerminateOptions {
  /** Between SIGTERM and SIGKILL. */
  graceMs: number;
  pollMs?: number;
  /** Called once if SIGKILL had to be sent. */
  onKill?: () => void;
  /** Called every `stuckReportMs` while the group survives SIGKILL (a process in uninterruptible sleep). */
  onStuck?: (elapsedMs: number) => void;
  stuckReportMs?: number;
  /** Also runs after SIGTERM and after SIGKILL (the container engine's own kill). */
  alsoOnTerm?: () => Promise<void>;
  alsoOnKill?: () => Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitGone(pgid: number, timeoutMs: number, pollMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!groupAlive(pgid)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(pollMs, Math.max(1, deadline - Date.now())));
  }
}

/**
 * SIGTERM to the group, SIGKILL after `graceMs` if anyone is left, and resolves only once no
 * member lives. Returns how it ended.
 */
export async function terminateGroup(pgid: number, options: TerminateOptions): Promise<'gone' | 'terminated' | 'killed'> {
  const pollMs = options.pollMs ?? 50;
  if (!groupAlive(pgid)) return 'gone';
  signalGroup(pgid, 'SIGTERM');
  const term = options.alsoOnTerm?.().catch(() => undefined);
  if (await waitGone(pgid, options.graceMs, pollMs)) {
    await term;
    return 'terminated';
  }
  options.onKill?.();
  const kill = options.alsoOnKill?.().catch(() => undefined);
  signalGroup(pgid, 'SIGKILL');
  const stuckReportMs = options.stuckReportMs ?? 10_000;
  const began = Date.now();
  while (!(await waitGone(pgid, stuckReportMs, pollMs))) {
    signalGroup(pgid, 'SIGKILL');
    options.onStuck?.(Date.now() - began);
  }
  await Promise.all([term, kill]);
  return 'killed';
}
