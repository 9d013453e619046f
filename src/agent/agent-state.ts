import type { Ending } from './connection';
import type { Fingerprint } from './fingerprint';
import type { RunEnd, StopReason } from './job-run';
import type { LogFields, LogLevel } from './log';
import { DEFAULT_MAX_MESSAGE_BYTES, type ReportFrame } from './report';
import type { JobPayload, RunnerMessage, ServerFrame, Welcome } from './wire';

/**
 * What the agent's lifecycle machine (lifecycle.ts) works with: its state, the events it is fed
 * and the effects it returns for its shell (agent.ts) to carry out. Plain data.
 */

/** How the agent's process ends. */
export const EXIT = {
  ok: 0,
  /** Stopped without delivering a report, or an internal failure. */
  failed: 1,
  /** Bad flags or environment. */
  usage: 2,
  /** The server refused this runner's credentials: revoked, archived, wrong. Retrying would not help. */
  refused: 3,
} as const;

/** The agent's own delays; tests shorten them. */
export interface AgentTiming {
  /** From the socket opening to `welcome`. */
  welcomeTimeoutMs: number;
  /** A report not answered within this is sent again. */
  reportRetryMs: number;
  /** After the server could not handle a message (internal_error): send it again after this. */
  retrySoonMs: number;
  /** After a `ready` refused as rate limited: wait this long, plus up to as much again. */
  readyRetryMs: number;
  /** Back-off floor after the server answered an upgrade with 429. */
  rateLimitedMs: number;
  /** Back-off floor after another connection with this token replaced this one (4000). */
  replacedMs: number;
  /** Stopping: how long a finished job's report may take to get through before giving up. */
  shutdownReportMs: number;
}

export const DEFAULT_TIMING: AgentTiming = {
  welcomeTimeoutMs: 15_000,
  reportRetryMs: 30_000,
  retrySoonMs: 2_000,
  readyRetryMs: 5_000,
  rateLimitedMs: 5_000,
  replacedMs: 5_000,
  shutdownReportMs: 30_000,
};

/** What the machine is given once: who the agent is and how it waits. */
export interface LifecycleConfig {
  /** Runner endpoints, tried in this order, the next one after a failure. */
  urls: readonly string[];
  version: string;
  fingerprint: Fingerprint;
  timing: AgentTiming;
  /** On the first signal, how long the running job may go on; null: its own remaining timeout. */
  drainTimeoutMs: number | null;
}

/** The connection to a server. */
export type Link =
  /** None: not started yet, or waiting to reconnect. */
  | { name: 'down' }
  /** A socket to `url` is opening, or open and waiting for `welcome` after `hello`. */
  | { name: 'connecting'; url: string }
  | { name: 'up'; url: string; welcome: Welcome };

/** Where the held job is. */
export type JobPhase =
  /** Its run is on: the command is being started (`startedAt` null) or runs. */
  | { name: 'running' }
  /** A cancel is stopping it; `canceled` is said once every process of it is gone. */
  | { name: 'canceling' }
  /** The server no longer holds it for this runner: it is stopped and reported to nobody. */
  | { name: 'abandoning' }
  /** Nothing of it runs any more; its report is sent until the server acknowledges it. */
  | {
      name: 'reporting';
      report: ReportFrame;
      /** Lowered after the server closed the socket for a frame too big (1009). */
      limit: number | null;
      /** Sent again without output after the server refused it as malformed. */
      stripped: boolean;
      /** Why the report timer runs: no answer yet, or the server asked for it again soon. */
      resend: 'unanswered' | 'soon';
    };

/** A job this runner holds: from the `job` frame until its report is acknowledged or it is canceled. */
export interface HeldJob {
  /** Tells this run's events from an earlier run's. */
  run: number;
  job: JobPayload;
  phase: JobPhase;
  /** When the command started (`at` of its start); null until then. */
  startedAt: number | null;
  runningAcked: boolean;
  /** How long a drain lets it run, once a signal asked for one. */
  drainMs: number | null;
}

export interface AgentState {
  readonly config: LifecycleConfig;
  link: Link;
  /** Index in `config.urls` of the server connected to, or to connect to next. */
  urlIndex: number;
  /** The server's frame limit, from its last `welcome`. */
  maxMessageBytes: number;
  /** When the server was last heard from: a frame, a ping, a pong. */
  lastHeard: number;
  held: HeldJob | null;
  /** A `ready` was sent on this connection and not yet answered with a job. */
  readyOutstanding: boolean;
  /** SIGTERM/SIGINT received: the first drains, the second stops the job, the third exits. */
  signals: number;
  /** The deadline for the report of a stopping agent is set. */
  reportDeadline: boolean;
  /** The number the next run gets. */
  nextRun: number;
  /** Set once the agent exits, with its exit status. */
  exitCode: number | null;
}

/** The agent's timers, each one at most once. */
export type TimerName = 'welcome' | 'heartbeat' | 'watchdog' | 'ready' | 'running' | 'report' | 'drain' | 'shutdown' | 'reconnect';

export type AgentEvent =
  | { type: 'start'; at: number }
  /** The socket opened. */
  | { type: 'opened' }
  | { type: 'frame'; frame: ServerFrame }
  /** Any sign of life from the server. */
  | { type: 'heard'; at: number }
  | { type: 'disconnected'; ending: Ending }
  /** The job's command runs (`run` is the number `startRun` gave it). */
  | { type: 'runStarted'; run: number; pid: number | undefined; at: number }
  /** Nothing of the job's run is left. */
  | { type: 'runEnded'; run: number; end: RunEnd }
  /** SIGTERM or SIGINT. */
  | { type: 'signal'; signal: string; at: number }
  | { type: 'timer'; timer: TimerName; at: number }
  /** The shell failed to handle an event: exit. */
  | { type: 'crashed'; error: string };

export type Effect =
  /** Open a socket to `url`; its events come back as `opened`, `frame`, `heard`, `disconnected`. */
  | { type: 'connect'; url: string }
  | { type: 'send'; message: RunnerMessage }
  | { type: 'ping' }
  /** Drop the connection at once. */
  | { type: 'drop' }
  | { type: 'startRun'; run: number; job: JobPayload }
  | { type: 'stopRun'; reason: StopReason }
  /** Fire `timer` once after `ms` plus up to `jitterMs` more, chosen at random; replaces it if set. */
  | { type: 'setTimer'; timer: TimerName; ms: number; jitterMs?: number }
  /** Fire `timer` every `ms`; replaces it if set. */
  | { type: 'setInterval'; timer: TimerName; ms: number }
  | { type: 'clearTimer'; timer: TimerName }
  /** Set the `reconnect` timer to `floorMs` plus the next back-off delay, to connect to `url`. */
  | { type: 'backOff'; floorMs: number; url: string }
  /** The connection worked: back-off starts again from its shortest delay. */
  | { type: 'resetBackoff' }
  | { type: 'log'; level: LogLevel; message: string; fields?: LogFields }
  /** Exit with `code`, once the job's run is stopped when `stopRun` says so. */
  | { type: 'exit'; code: number; stopRun: boolean };

export function initialState(config: LifecycleConfig): AgentState {
  return {
    config,
    link: { name: 'down' },
    urlIndex: 0,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    lastHeard: 0,
    held: null,
    readyOutstanding: false,
    signals: 0,
    reportDeadline: false,
    nextRun: 1,
    exitCode: null,
  };
}

/** The held job's run is still on: something of it may run, it is not down to its report. */
export const jobRuns = (held: HeldJob | null): held is HeldJob => held !== null && held.phase.name !== 'reporting';
