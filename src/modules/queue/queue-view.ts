import { MinHeap } from './min-heap';
import { type LimitHold, type PendingJob, type Placed, ipKey } from './queue-order';

/**
 * What users read of a queue: for each job in claim order, when it should start (`eta`) and what
 * it waits for (`waitingFor`). Pure: the time and the spec's load come in as data.
 */

/** The runners of a spec and how long its jobs run. */
export interface SpecLoad {
  /** Registered, not archived runners that serve the spec. */
  runners: number;
  /** Of those, connected now (`runner_status`). */
  connected: number;
  /** For each of those runners that holds a job: how long it has been running it, ms (0 while only claimed). */
  busyElapsedMs: readonly number[];
  /** Mean of `finished_at - started_at` of the last 20 jobs that ran on the spec, ms; null without history. */
  meanRunMs: number | null;
  /**
   * How long each job in flight now (on any spec) has been running, ms (0 while only claimed), per
   * limit group: `limitGroup('org', orgId)` and `limitGroup('ip', ipKey(sourceIp))`.
   */
  inFlightElapsedMs: ReadonlyMap<string, readonly number[]>;
}

/**
 * Why a pending job is not running yet, the most useful reason first (see `waitingFor`).
 * `org_limit` with `scope: 'ip'` is the unclaimed plan's limit per source IP.
 */
export type WaitingFor =
  | { reason: 'no_runner' }
  | { reason: 'org_limit'; scope: 'org' | 'ip'; inFlight: number; limit: number; queuedAhead: number }
  | { reason: 'higher_priority'; ahead: number }
  | { reason: 'runner_busy'; ahead: number };

/** A job's place in its spec's queue (`queue` of a pending job on the API). */
export interface QueueInfo {
  position: number;
  ahead: number;
  /** ISO-8601: when it should start; null without run history or without a runner. */
  eta: string | null;
  waitingFor: WaitingFor;
}

export interface QueueItem<J extends PendingJob> extends QueueInfo {
  job: J;
}

export const limitGroup = (scope: LimitHold['scope'], key: string): string => `${scope}:${key}`;

/**
 * Precedence of `waitingFor`, from what blocks the most to what blocks the least, so the answer
 * names what has to change first for the job to start:
 * 1. `no_runner`: no runner of the spec is connected; nothing in the queue moves until one is.
 * 2. `org_limit`: the job's own organization (or IP) is at its in-flight limit; even free
 *    runners will not take it until one of those jobs ends (the one reason the user controls).
 * 3. `higher_priority`: jobs of a higher tier are ahead of it (`ahead`: how many).
 * 4. `runner_busy`: the runners are busy or jobs of its own tier are ahead (`ahead`: all of them).
 */
function waitingFor(load: SpecLoad, heldBy: LimitHold | null, ahead: number, higherAhead: number): WaitingFor {
  if (load.connected === 0) return { reason: 'no_runner' };
  if (heldBy !== null) {
    return { reason: 'org_limit', scope: heldBy.scope, inFlight: heldBy.inFlight, limit: heldBy.limit, queuedAhead: heldBy.queuedAhead };
  }
  if (higherAhead > 0) return { reason: 'higher_priority', ahead: higherAhead };
  return { reason: 'runner_busy', ahead };
}

/**
 * ETA, with R the spec's connected runners, D the mean run time, B the runners busy now:
 *
 * - The runners take the jobs ahead in rounds of D: the job is slot `B + ahead` (0-based) of a
 *   queue dealt to R runners, so it starts after `rounds = floor((B + ahead) / R)` rounds.
 * - rounds = 0: a runner is free for it now: eta = now.
 * - Otherwise the first round is already under way, by the mean time the runners have spent on
 *   their current jobs (each at most D, an idle runner 0): eta = now + rounds * D - sum(min(elapsed, D)) / R.
 * - A job held by its org's (IP's) limit also needs one of that org's jobs to end first. Each of
 *   the group's jobs is taken to end at its start + D (in flight now: now + D - elapsed); the held
 *   job starts no earlier than the end that brings the group below its limit, and then holds a
 *   slot itself until its own eta + D.
 * - null when there is no run history on the spec (D unknown) or no runner of it is connected (R = 0):
 *   a registered runner that is away starts nothing.
 *
 * D comes from this spec's history, also for the group's jobs on other specs: an estimate.
 */
export function describeQueue<J extends PendingJob>(placed: readonly Placed<J>[], load: SpecLoad, now: Date): QueueItem<J>[] {
  const D = load.meanRunMs;
  const R = load.connected;
  const estimating = D !== null && R > 0;
  const busy = Math.min(load.busyElapsedMs.length, R);
  const firstRoundDone = estimating ? load.busyElapsedMs.slice(0, busy).reduce((sum, e) => sum + Math.min(Math.max(e, 0), D), 0) / R : 0;
  const positional = (ahead: number): number | null => {
    if (!estimating) return null;
    const rounds = Math.floor((busy + ahead) / R);
    return rounds === 0 ? now.getTime() : now.getTime() + rounds * D - firstRoundDone;
  };

  // When each group's jobs (in flight now, then those placed) are expected to end, earliest first.
  const ends = new Map<string, MinHeap<number>>();
  const endsOf = (group: string): MinHeap<number> => {
    let heap = ends.get(group);
    if (heap === undefined) {
      heap = new MinHeap<number>((a, b) => a - b);
      for (const elapsed of load.inFlightElapsedMs.get(group) ?? []) heap.push(now.getTime() + (D as number) - Math.min(Math.max(elapsed, 0), D as number));
      ends.set(group, heap);
    }
    return heap;
  };

  const seen = new Map<number, number>(); // priority -> jobs placed so far
  return placed.map(({ job, position, heldBy }) => {
    const ahead = position - 1;
    let higherAhead = 0;
    for (const [priority, n] of seen) if (priority > job.priority) higherAhead += n;
    seen.set(job.priority, (seen.get(job.priority) ?? 0) + 1);

    let start = positional(ahead);
    if (start !== null) {
      const groups = [limitGroup('org', job.orgId), ...(job.orgPlan === 'unclaimed' ? [limitGroup('ip', ipKey(job.sourceIp))] : [])];
      if (heldBy !== null) {
        const heap = endsOf(limitGroup(heldBy.scope, heldBy.key));
        while (heap.size >= heldBy.limit) start = Math.max(start, heap.pop() as number);
      }
      for (const group of groups) endsOf(group).push(start + (D as number));
    }
    return {
      job,
      position,
      ahead,
      eta: start === null ? null : new Date(start).toISOString(),
      waitingFor: waitingFor(load, heldBy, ahead, higherAhead),
    };
  });
}
