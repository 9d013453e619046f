import type { EventEnvelope, Job, JobStatus, QueueInfo } from './api';
import { NONE, formatCommand, formatDuration, formatOutcome, formatQueue, formatRelative, formatTime, formatWaitingFor, isTerminal, truncate } from './format';

/**
 * What `runway jobs watch` knows of a job, folded from its events (status, runner, times) and
 * from `GET /v1/jobs/{job}` (the queue while pending), and how it is shown: a line per change
 * when piped, one status line on a terminal. Pure: the time comes in as an argument.
 */
export interface WatchState {
  status: JobStatus | null;
  attempt: number;
  maxAttempts: number | null;
  spec: string | null;
  runner: string | null;
  createdAt: string | null;
  claimedAt: string | null;
  startedAt: string | null;
  /** Only while pending. */
  queue: QueueInfo | null;
  /** The global position of the last event folded in: the feed resumes after it. */
  lastPosition: number;
}

/** Something that changed, as a piped watch prints it. */
export interface Change {
  /** ISO-8601: when it happened (the event's time, or when the queue was read). */
  at: string;
  status: string;
  text: string;
}

export const initialWatchState = (): WatchState => ({
  status: null,
  attempt: 1,
  maxAttempts: null,
  spec: null,
  runner: null,
  createdAt: null,
  claimedAt: null,
  startedAt: null,
  queue: null,
  lastPosition: 0,
});

type Data = Record<string, unknown>;
const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);
const num = (value: unknown): number | null => (typeof value === 'number' ? value : null);

const attemptText = (attempt: number | null, max: number | null): string =>
  attempt === null ? '' : max !== null && max > 1 ? ` (attempt ${attempt} of ${max})` : attempt > 1 ? ` (attempt ${attempt})` : '';

/**
 * What an event means for the job: the status it leaves the job in (null: unchanged or an event
 * this client does not know) and a short text. `maxAttempts` is the job's, when known.
 */
export function describeEvent(envelope: Pick<EventEnvelope, 'type' | 'data'>, maxAttempts: number | null = null): { status: JobStatus | null; text: string } {
  const data = (typeof envelope.data === 'object' && envelope.data !== null ? envelope.data : {}) as Data;
  switch (envelope.type) {
    case 'JobSubmitted': {
      const cmd = Array.isArray(data.cmd) ? formatCommand(data.cmd.map(String)) : NONE;
      return { status: 'pending', text: `submitted on spec ${str(data.spec) ?? NONE}: ${truncate(cmd, 80)}` };
    }
    case 'JobClaimed':
      return { status: 'claimed', text: `claimed by runner ${str(data.runnerId) ?? NONE}${attemptText(num(data.attempt), maxAttempts)}` };
    case 'JobStarted':
      return { status: 'running', text: `running on runner ${str(data.runnerId) ?? NONE}` };
    case 'JobCompleted':
      return { status: 'completed', text: `exit ${num(data.exitCode) ?? NONE}` };
    case 'JobFailed': {
      const exit = num(data.exitCode) === null ? '' : `, exit ${num(data.exitCode)}`;
      const error = str(data.error) === null ? '' : `: ${truncate(str(data.error) as string, 120)}`;
      return { status: 'failed', text: `${str(data.failure) ?? 'failed'}${exit}${error}` };
    }
    case 'JobCanceled': {
      const failure = str(data.failure) === null ? '' : ` (${str(data.failure)})`;
      return { status: 'canceled', text: `${str(data.reason) ?? 'canceled'}${failure}` };
    }
    case 'JobCancelAcknowledged':
      return { status: 'canceled', text: `runner ${str(data.runnerId) ?? NONE} stopped the job` };
    case 'JobRequeued':
      return { status: 'pending', text: `requeued after ${str(data.reason) ?? 'a lost attempt'}${attemptText(num(data.attempt), maxAttempts)}` };
    default:
      return { status: null, text: envelope.type };
  }
}

/** Folds one event in; an event at or before `lastPosition` was seen already and changes nothing. */
export function applyEvent(state: WatchState, envelope: EventEnvelope): { state: WatchState; change: Change | null } {
  if (envelope.globalPosition <= state.lastPosition) return { state, change: null };
  const data = (typeof envelope.data === 'object' && envelope.data !== null ? envelope.data : {}) as Data;
  const next: WatchState = { ...state, lastPosition: envelope.globalPosition };
  switch (envelope.type) {
    case 'JobSubmitted':
      next.maxAttempts = num(data.maxAttempts);
      next.spec = str(data.spec);
      next.createdAt = str(data.submittedAt) ?? envelope.occurredAt;
      break;
    case 'JobClaimed':
      next.runner = str(data.runnerId);
      next.attempt = num(data.attempt) ?? state.attempt;
      next.claimedAt = str(data.claimedAt) ?? envelope.occurredAt;
      next.queue = null;
      break;
    case 'JobStarted':
      next.runner = str(data.runnerId) ?? state.runner;
      next.startedAt = str(data.startedAt) ?? envelope.occurredAt;
      break;
    case 'JobRequeued':
      next.attempt = num(data.attempt) ?? state.attempt + 1;
      next.runner = null;
      next.claimedAt = null;
      next.startedAt = null;
      break;
  }
  const { status, text } = describeEvent(envelope, next.maxAttempts);
  if (status !== null) next.status = status;
  if (next.status !== 'pending') next.queue = null;
  return { state: next, change: { at: envelope.occurredAt, status: next.status ?? NONE, text } };
}

/** What a change of the queue is judged by: the estimate itself moves with every read. */
const queueKey = (queue: QueueInfo | null): string =>
  queue === null ? '' : JSON.stringify([queue.position, queue.ahead, queue.eta === null, queue.waitingFor]);

/**
 * Folds in what `GET /v1/jobs/{job}` said: the queue of a job the events say is pending. A
 * change is reported when its place or what it waits for changed.
 */
export function applyJob(state: WatchState, job: Job, now: Date): { state: WatchState; change: Change | null } {
  const next: WatchState = { ...state, maxAttempts: job.maxAttempts ?? state.maxAttempts, spec: state.spec ?? job.spec, createdAt: state.createdAt ?? job.createdAt };
  if (state.status !== 'pending' || job.status !== 'pending' || job.queue === undefined) return { state: next, change: null };
  next.queue = job.queue;
  if (queueKey(job.queue) === queueKey(state.queue)) return { state: next, change: null };
  return { state: next, change: { at: now.toISOString(), status: 'pending', text: formatQueue(job.queue, now) } };
}

/** A change as a piped watch prints it: `2026-05-03 16:02:11  claimed    by runner ...`. */
export function formatChange(change: Change, offsetMinutes?: number): string {
  return `${formatTime(change.at, offsetMinutes)}  ${change.status.padEnd(9)}  ${change.text}`;
}

export const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

const since = (iso: string | null, now: Date): string => (iso === null ? NONE : formatDuration(now.getTime() - new Date(iso).getTime()));

/** The terminal's status line (without the spinner): what the job is doing now, for how long, and where it stands. */
export function formatStatusLine(state: WatchState, now: Date, reconnecting: string | null = null): string {
  const parts: string[] = [];
  switch (state.status) {
    case null:
      parts.push('connecting');
      break;
    case 'pending': {
      parts.push(`pending ${since(state.createdAt, now)}`);
      const { queue } = state;
      if (queue !== null) {
        parts.push(`position ${queue.position} (${queue.ahead} ahead)`);
        // The estimate was made when the queue was read; once it has passed, the job should start now.
        if (queue.eta !== null) parts.push(new Date(queue.eta).getTime() <= now.getTime() ? 'eta now' : `eta ${formatRelative(queue.eta, now)}`);
        parts.push(`waiting for ${formatWaitingFor(queue.waitingFor)}`);
      }
      break;
    }
    case 'claimed':
      parts.push(`claimed ${since(state.claimedAt, now)}`, `runner ${state.runner ?? NONE}`);
      break;
    case 'running':
      parts.push(`running ${since(state.startedAt, now)}`, `runner ${state.runner ?? NONE}`);
      break;
    default:
      parts.push(state.status);
  }
  if (state.attempt > 1) parts.push(`attempt ${state.attempt}`);
  if (reconnecting !== null) parts.push(`reconnecting: ${reconnecting}`);
  return parts.join(' · ');
}

/** The last line of a watch: the outcome, with a mark on a terminal. */
export function formatSummary(job: Job, tty: boolean): string {
  const mark = job.status === 'completed' ? '✔ ' : '✖ ';
  return tty ? `${mark}${formatOutcome(job, ' · ')}` : formatOutcome(job);
}

/** 0 completed, 1 failed or canceled. */
export const watchExitCode = (status: JobStatus): number => (status === 'completed' ? 0 : 1);

export { isTerminal };
