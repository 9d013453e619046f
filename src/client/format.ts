import type { Job, QueueInfo, WaitingFor } from './api';

/**
 * How the commands show things to people: times, durations, sizes, tables. Pure (the time and the
 * zone come in as arguments where they matter), so it is unit tested; `--json` bypasses all of it.
 */

/** What a missing value reads as. */
export const NONE = '-';

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** `45s`, `3m12s`, `1h02m`, `2d04h`: at most two units, the larger first; `<1s` under a second. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '0s';
  if (ms < 1_000) return '<1s';
  const total = Math.floor(ms / 1_000);
  const [d, h, m, s] = [Math.floor(total / 86_400), Math.floor(total / 3_600) % 24, Math.floor(total / 60) % 60, total % 60];
  if (total < 60) return `${s}s`;
  if (total < 3_600) return `${m}m${pad2(s)}s`;
  if (total < 86_400) return `${Math.floor(total / 3_600)}h${pad2(m)}m`;
  return `${d}d${pad2(h)}h`;
}

/** The zone offset of the machine at `at`, minutes east of UTC. */
export const localOffsetMinutes = (at: Date): number => -at.getTimezoneOffset();

/**
 * `2026-05-03 16:02:11`: an ISO-8601 time in the reader's zone (the machine's, unless an offset
 * in minutes east of UTC is given), to the second. Anything unreadable is shown as it came.
 */
export function formatTime(iso: string | null | undefined, offsetMinutes?: number): string {
  if (iso === null || iso === undefined) return NONE;
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return iso;
  const shifted = new Date(at.getTime() + (offsetMinutes ?? localOffsetMinutes(at)) * 60_000);
  const date = `${shifted.getUTCFullYear()}-${pad2(shifted.getUTCMonth() + 1)}-${pad2(shifted.getUTCDate())}`;
  return `${date} ${pad2(shifted.getUTCHours())}:${pad2(shifted.getUTCMinutes())}:${pad2(shifted.getUTCSeconds())}`;
}

/** `in 2m10s`, `12s ago`, `now` (within a second). */
export function formatRelative(iso: string, now: Date): string {
  const delta = new Date(iso).getTime() - now.getTime();
  if (Number.isNaN(delta)) return iso;
  if (Math.abs(delta) < 1_000) return 'now';
  return delta > 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
}

/** `2026-05-03 16:02:11 (12s ago)`. */
export function formatTimeAgo(iso: string | null | undefined, now: Date, offsetMinutes?: number): string {
  if (iso === null || iso === undefined) return NONE;
  return `${formatTime(iso, offsetMinutes)} (${formatRelative(iso, now)})`;
}

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** `32 GiB`, `1.5 GiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const text = Number.isInteger(value) ? String(value) : value.toFixed(1).replace(/\.0$/, '');
  return `${text} ${BINARY_UNITS[unit]}`;
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

export type Cell = string | number | boolean | null | undefined;

const cellText = (cell: Cell): string => (cell === null || cell === undefined || cell === '' ? NONE : typeof cell === 'boolean' ? (cell ? 'yes' : 'no') : String(cell));

/**
 * Columns separated by two spaces, each as wide as its widest cell; headers upper-cased; empty
 * cells as `-`; no trailing spaces. No rows: the headers alone.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const texts = [headers.map((h) => h.toUpperCase()), ...rows.map((row) => headers.map((_, i) => cellText(row[i]).replace(/\s*\n\s*/g, ' ')))];
  const widths = headers.map((_, i) => Math.max(...texts.map((row) => row[i].length)));
  return texts.map((row) => row.map((text, i) => text.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** `label  value` lines with the values aligned. */
export function formatFields(fields: readonly (readonly [string, Cell])[]): string {
  const width = Math.max(0, ...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${label.padEnd(width)}  ${cellText(value)}`.trimEnd()).join('\n');
}

/** At most `width` characters, ending with `…` when cut. */
export function truncate(text: string, width: number): string {
  if (width <= 0) return '';
  if (text.length <= width) return text;
  return width === 1 ? '…' : `${text.slice(0, width - 1)}…`;
}

/** A command line as a shell would need it typed, e.g. `sh -c 'echo hi'`. */
export function formatCommand(cmd: readonly string[]): string {
  return cmd.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** What a pending job waits for, in words. */
export function formatWaitingFor(waiting: WaitingFor | null | undefined): string {
  if (waiting === null || waiting === undefined) return NONE;
  switch (waiting.reason) {
    case 'no_runner':
      return 'no runner of this spec is connected';
    case 'org_limit': {
      const whose = waiting.scope === 'ip' ? "its source IP's" : "its organization's";
      const queued = waiting.queuedAhead ? `, ${waiting.queuedAhead} of its own queued ahead` : '';
      return `${whose} in-flight limit (${waiting.inFlight ?? '?'}/${waiting.limit ?? '?'} in flight${queued})`;
    }
    case 'higher_priority':
      return `${plural(waiting.ahead ?? 0, 'job')} of higher tiers ahead`;
    case 'runner_busy':
      return `busy runners (${waiting.ahead ?? 0} ahead)`;
    default:
      return waiting.reason;
  }
}

/** `position 2 (1 ahead), eta 2026-05-03 16:05:00 (in 2m10s), waiting for: busy runners (1 ahead)`. */
export function formatQueue(queue: QueueInfo, now: Date, offsetMinutes?: number): string {
  const eta = queue.eta === null ? 'no eta yet' : `eta ${formatTimeAgo(queue.eta, now, offsetMinutes)}`;
  return `position ${queue.position} (${queue.ahead} ahead), ${eta}, waiting for: ${formatWaitingFor(queue.waitingFor)}`;
}

/**
 * How long the job ran (`startedAt` to `finishedAt`, or to now while running), or null if it
 * never started.
 */
export function runTime(job: Pick<Job, 'startedAt' | 'finishedAt'>, now: Date): number | null {
  if (job.startedAt === null) return null;
  const end = job.finishedAt === null ? now.getTime() : new Date(job.finishedAt).getTime();
  return Math.max(0, end - new Date(job.startedAt).getTime());
}

/** `3m12s`, `1m05s (running)`, or `-`. */
export function formatRunTime(job: Pick<Job, 'startedAt' | 'finishedAt'>, now: Date): string {
  const ms = runTime(job, now);
  if (ms === null) return NONE;
  return job.finishedAt === null ? `${formatDuration(ms)} (running)` : formatDuration(ms);
}

export const isTerminal = (status: string): boolean => status === 'completed' || status === 'failed' || status === 'canceled';

/**
 * The one-line outcome of a finished job: `completed, exit 0, ran 3m12s, waited 4s, billed 4 min`.
 */
export function formatOutcome(job: Job, separator = ', '): string {
  const parts: string[] = [job.status];
  if (job.failure !== null) parts.push(job.failure);
  if (job.exitCode !== null) parts.push(`exit ${job.exitCode}`);
  const ran = runTime(job, new Date(job.finishedAt ?? job.createdAt));
  parts.push(ran === null ? 'never ran' : `ran ${formatDuration(ran)}`);
  const claimed = job.claimedAt ?? job.startedAt;
  if (claimed !== null) parts.push(`waited ${formatDuration(new Date(claimed).getTime() - new Date(job.createdAt).getTime())}`);
  if (job.billedMinutes !== null) parts.push(`billed ${job.billedMinutes} min`);
  if (job.attempt > 1) parts.push(`attempt ${job.attempt}`);
  return parts.join(separator);
}
