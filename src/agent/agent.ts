import { constants } from 'node:os';
import { Backoff } from '../common/backoff';
import { Connection, type Ending } from './connection';
import type { Fingerprint } from './fingerprint';
import { JobRun, type JobRunSettings, MAX_TIMER_MS, type RunEnd } from './job-run';
import type { Log } from './log';
import type { AgentOptions } from './options';
import { DEFAULT_MAX_MESSAGE_BYTES, FRAME_MARGIN_BYTES, type ReportFrame, bareReport, fitFrame } from './report';
import type { FrameError, JobPayload, RunnerMessage, ServerFrame, Welcome } from './wire';

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

/** A job this runner holds: from the `job` frame until its report is acknowledged or it is canceled. */
interface Held {
  job: JobPayload;
  run: JobRun | null;
  /** The command is running: `running` is due on every new connection. */
  started: boolean;
  /** Nothing of the job runs any more; what is left is the report. */
  finished: boolean;
  runningAcked: boolean;
  cancelRequested: boolean;
  /** The server no longer holds this job for this runner: stop it and report nothing. */
  abandoned: boolean;
  /** The final report, kept until the server acknowledges it. */
  report: ReportFrame | null;
  /** Lowered after the server closed the socket for a frame too big (1009). */
  reportLimit: number | null;
  reportStripped: boolean;
}

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

export interface AgentDeps {
  options: AgentOptions;
  log: Log;
  fingerprint: Fingerprint;
  version: string;
  random?: () => number;
  timing?: Partial<AgentTiming>;
}

/**
 * The runner agent: keeps one connection to a server up (reconnecting with back-off and failing
 * over across the URLs), asks for work when idle, runs one job at a time, heartbeats it, reports
 * its end until the report is acknowledged, cancels for real, and drains on SIGTERM.
 */
export class RunnerAgent {
  private readonly options: AgentOptions;
  private readonly log: Log;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly settings: JobRunSettings;
  private readonly timing: AgentTiming;

  private connection: Connection | null = null;
  private welcome: Welcome | null = null;
  private maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  private urlIndex = 0;
  private held: Held | null = null;
  private readyOutstanding = false;
  private stopping = false;
  private signals = 0;
  private lastHeard = 0;
  private exitCode: number | null = null;
  private resolveExit: (code: number) => void = () => undefined;
  private readonly exited: Promise<number>;
  private wake: (() => void) | null = null;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly intervals = new Map<string, NodeJS.Timeout>();

  constructor(private readonly deps: AgentDeps) {
    this.options = deps.options;
    this.log = deps.log;
    this.random = deps.random ?? Math.random;
    this.timing = { ...DEFAULT_TIMING, ...deps.timing };
    this.backoff = new Backoff(this.options.reconnectMinMs, this.options.reconnectMaxMs, this.random);
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
    const { options } = this;
    this.settings = {
      workRoot: options.workDir,
      keepWorkDirs: options.keepWorkDirs,
      maxOutputBytes: options.maxOutputBytes,
      maxFileBytes: options.maxFileBytes,
      maxFiles: options.maxFiles,
      killGraceMs: options.killGraceMs,
      baseEnv: options.jobEnv,
      container: options.executor === null ? null : { tool: options.executor, network: options.containerNetwork, engineEnv: options.engineEnv },
    };
  }

  /** Runs until stopped; resolves with the process exit code. */
  run(): Promise<number> {
    this.log.info('runner agent starting', {
      version: this.deps.version,
      urls: this.options.urls.join(','),
      executor: this.options.executor ?? 'host',
      workDir: this.options.workDir,
    });
    void this.loop().catch((error: unknown) => {
      this.log.error('agent failed', { error: (error as Error).stack ?? String(error) });
      void this.finish(EXIT.failed);
    });
    return this.exited;
  }

  /** SIGTERM/SIGINT: no new work; the running job may finish (drain); a second signal stops it, a third exits at once. */
  shutdown(signal: string): void {
    this.signals += 1;
    const held = this.held;
    if (this.signals >= 3) {
      this.log.warn('third signal: exiting now', { signal });
      void this.finish(EXIT.failed);
      return;
    }
    if (this.signals === 2) {
      this.log.warn('second signal: stopping the job now', { signal, job: held?.job.id });
      if (held?.run && !held.finished) void held.run.stop('drain');
      return;
    }
    this.stopping = true;
    if (held === null) {
      this.log.info('stopping', { signal });
      void this.finish(EXIT.ok);
      return;
    }
    if (held.finished) {
      this.log.info('stopping once the job report is delivered', { signal, job: held.job.id });
      this.startReportDeadline();
      return;
    }
    const drainMs = this.options.drainTimeoutMs ?? held.run?.remainingMs() ?? 0;
    this.log.info('stopping: taking no new jobs; letting the running job finish', { signal, job: held.job.id, drainMs });
    this.setTimer('drain', Math.min(drainMs, MAX_TIMER_MS), () => {
      if (this.held === held && !held.finished) {
        this.log.warn('drain timeout: stopping the job', { job: held.job.id, drainMs });
        void held.run?.stop('drain');
      }
    });
  }

  /** Last resort when the agent's process exits: nothing of a job may outlive it. */
  killJobNow(): void {
    const pid = this.held?.finished === false ? this.held.run?.pid : undefined;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  // --- connection loop -------------------------------------------------------------------

  private async loop(): Promise<void> {
    while (this.exitCode === null) {
      const url = this.options.urls[this.urlIndex];
      const ending = await this.session(url);
      if (this.exitCode !== null) return;
      const delay = this.delayAfter(ending, url);
      if (delay === null || this.exitCode !== null) return;
      this.urlIndex = (this.urlIndex + 1) % this.options.urls.length;
      this.log.info('reconnecting', { inMs: delay, url: this.options.urls[this.urlIndex] });
      await this.pause(delay);
    }
  }

  private session(url: string): Promise<Ending> {
    return new Promise((resolve) => {
      this.lastHeard = Date.now();
      const connection = new Connection(url, this.options.token, {
        onOpen: () => this.onOpen(connection),
        onFrame: (frame) => this.guard(() => this.onFrame(connection, frame)),
        onBadFrame: (error: FrameError) => this.log.warn('ignoring a frame the agent does not understand', { error: error.message }),
        onHeard: () => (this.lastHeard = Date.now()),
        onEnd: (ending) => {
          if (this.connection === connection) {
            this.connection = null;
            this.welcome = null;
            this.readyOutstanding = false;
            for (const name of ['welcome', 'report', 'running', 'ready']) this.clearTimer(name);
            for (const timer of this.intervals.values()) clearInterval(timer);
            this.intervals.clear();
          }
          resolve(ending);
        },
      });
      this.connection = connection;
    });
  }

  /** What to do after a connection ended: the delay before the next attempt, or null to stop. */
  private delayAfter(ending: Ending, url: string): number | null {
    if (ending.kind === 'refused') {
      if (ending.status === 401 || ending.status === 403) {
        this.fatal(`the server refused this runner's token (HTTP ${ending.status}: ${ending.detail}); it was rotated or revoked, or the runner is archived`);
        return null;
      }
      if (ending.status === 429) {
        this.log.warn('connection attempts rate limited by the server; backing off', { url });
        return this.timing.rateLimitedMs + this.backoff.next();
      }
      this.log.warn('the server refused the connection', { url, status: ending.status, detail: ending.detail });
      return this.backoff.next();
    }
    if (ending.kind === 'failed') {
      this.log.warn('could not connect', { url, error: ending.error });
      return this.backoff.next();
    }
    switch (ending.code) {
      case 1008:
        this.fatal(`the server closed the connection: ${ending.reason || 'policy violation'} (the token was revoked or the runner archived)`);
        return null;
      case 1009:
        this.log.error('the server closed the connection: a frame was over its size limit', { url });
        if (this.held?.report) this.held.reportLimit = Math.max(1024, Math.floor(this.reportLimit(this.held) / 2));
        return this.backoff.next();
      case 4000:
        this.log.warn('another connection with this runner token replaced this one: is a second agent running with the same token?', { url });
        return this.timing.replacedMs + this.backoff.next();
      default:
        this.log.warn('disconnected', { url, code: ending.code, reason: ending.reason || undefined });
        return this.backoff.next();
    }
  }

  private fatal(message: string): void {
    this.log.error(message);
    void this.finish(EXIT.refused);
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => {
        this.clearTimer('pause');
        this.wake = null;
        resolve();
      };
      this.setTimer('pause', ms, () => this.wake?.());
    });
  }

  private async finish(code: number): Promise<void> {
    if (this.exitCode !== null) return;
    this.exitCode = code;
    this.wake?.();
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    for (const timer of this.intervals.values()) clearInterval(timer);
    this.intervals.clear();
    const held = this.held;
    if (held?.run && !held.finished) {
      this.log.warn('stopping the running job before exiting; it is not reported', { job: held.job.id });
      held.abandoned = true;
      await held.run.stop('abandon');
      await held.run.ended;
    }
    this.connection?.close(1000, 'runner stopping');
    this.log.info('runner agent stopped', { exitCode: code });
    this.resolveExit(code);
  }

  // --- frames ----------------------------------------------------------------------------

  private guard(work: () => void): void {
    try {
      work();
    } catch (error) {
      this.log.error('could not handle a frame', { error: (error as Error).stack ?? String(error) });
    }
  }

  private onOpen(connection: Connection): void {
    // Says which job it still holds (none after a restart of the agent), so the server can let go
    // of one assigned to it that it lost, at once rather than after the heartbeat timeout.
    const jobs = this.held === null ? [] : [{ job: this.held.job.id, attempt: this.held.job.attempt }];
    connection.send({ type: 'hello', version: this.deps.version, capacity: 1, fingerprint: this.deps.fingerprint, jobs });
    this.setTimer('welcome', this.timing.welcomeTimeoutMs, () => {
      this.log.warn('no welcome from the server; reconnecting', { url: connection.url });
      connection.terminate();
    });
  }

  private onFrame(connection: Connection, frame: ServerFrame): void {
    if (connection !== this.connection) return;
    switch (frame.type) {
      case 'welcome':
        return this.onWelcome(connection, frame);
      case 'job':
        return this.onJob(frame.job);
      case 'cancel':
        return this.onCancel(frame.job, frame.attempt, frame.reason);
      case 'ack':
        return this.onAck(frame.job, frame.attempt, frame.of);
      case 'error':
        return this.onError(frame.code, frame.message, frame.job);
      default: {
        const _exhaustive: never = frame;
        return _exhaustive;
      }
    }
  }

  private onWelcome(connection: Connection, welcome: Welcome): void {
    this.clearTimer('welcome');
    this.welcome = welcome;
    // Servers that do not announce their frame limit get the default one.
    this.maxMessageBytes = welcome.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.backoff.reset();
    this.readyOutstanding = false;
    this.log.info('connected', { url: connection.url, runner: welcome.runner, heartbeatMs: welcome.heartbeatIntervalMs });
    for (const timer of this.intervals.values()) clearInterval(timer);
    this.intervals.set('heartbeat', setInterval(() => this.heartbeat(), welcome.heartbeatIntervalMs));
    const silenceMs = welcome.heartbeatTimeoutMs;
    this.intervals.set(
      'watchdog',
      setInterval(() => {
        if (Date.now() - this.lastHeard > silenceMs) {
          this.log.warn('no word from the server; reconnecting', { url: connection.url, silentMs: Date.now() - this.lastHeard });
          connection.terminate();
        } else connection.ping();
      }, Math.max(100, Math.floor(silenceMs / 3))),
    );
    const held = this.held;
    if (held === null) return this.sendReady();
    // Carry on with the held job on this connection: say it runs, and deliver its report.
    if (held.started && !held.finished && !held.cancelRequested && !held.abandoned) this.log.info('job still running; resuming it here', { job: held.job.id });
    if (held.started && !held.cancelRequested && !held.abandoned) this.send({ type: 'running', job: held.job.id, attempt: held.job.attempt });
    if (held.report !== null) this.sendReport();
  }

  private onJob(job: JobPayload): void {
    this.readyOutstanding = false;
    const held = this.held;
    if (held !== null) {
      if (held.job.id === job.id && held.job.attempt === job.attempt) return;
      // Capacity 1: never two jobs. Failing it would end it for good (a failure is final); left
      // alone, the server gives the attempt up after its claim or heartbeat timeout and requeues it.
      this.log.warn('the server pushed a job while this runner is busy; not taking it', { job: job.id, busyWith: held.job.id });
      return;
    }
    if (this.stopping) {
      this.log.warn('a job arrived while stopping; not taking it (the server requeues it after its claim timeout)', { job: job.id });
      return;
    }
    this.start(job);
  }

  private start(job: JobPayload): void {
    const held: Held = {
      job,
      run: null,
      started: false,
      finished: false,
      runningAcked: false,
      cancelRequested: false,
      abandoned: false,
      report: null,
      reportLimit: null,
      reportStripped: false,
    };
    this.held = held;
    const command = [...(job.entrypoint ?? []), ...job.cmd][0];
    this.log.info('job received', { job: job.id, attempt: job.attempt, image: job.image ?? undefined, command, timeoutS: job.timeout });
    held.run = new JobRun(job, this.settings, this.log, () => this.maxMessageBytes - FRAME_MARGIN_BYTES, () => this.onStarted(held));
    held.run.ended.then(
      (end) => this.guard(() => this.onRunEnded(held, end)),
      (error: unknown) => this.guard(() => this.onRunEnded(held, { kind: 'not-started', error: `runner_error: ${(error as Error).message}` })),
    );
  }

  private onStarted(held: Held): void {
    if (this.held !== held) return;
    held.started = true;
    this.log.info('job started', { job: held.job.id, pid: held.run?.pid });
    if (!held.cancelRequested && !held.abandoned) this.send({ type: 'running', job: held.job.id, attempt: held.job.attempt });
  }

  private heartbeat(): void {
    const held = this.held;
    if (held === null || held.finished || held.cancelRequested || held.abandoned) return;
    this.send({ type: 'heartbeat', job: held.job.id, attempt: held.job.attempt });
  }

  private onRunEnded(held: Held, end: RunEnd): void {
    if (this.held !== held) return;
    held.finished = true;
    this.clearTimer('drain');
    const { job } = held;
    if (held.cancelRequested) {
      this.log.info('job canceled; its processes are gone', { job: job.id });
      this.send({ type: 'canceled', job: job.id, attempt: job.attempt });
      return this.release(held);
    }
    if (held.abandoned) {
      this.log.info('job stopped; not reported', { job: job.id });
      return this.release(held);
    }
    held.report = reportFor(job, end);
    if (end.kind === 'not-started') {
      this.log.warn('job could not start', { job: job.id, error: end.error });
    } else {
      const report = held.report;
      this.log.info('job finished', {
        job: job.id,
        outcome: report.type,
        exitCode: end.exit.code,
        signal: end.exit.signal ?? undefined,
        durationMs: end.durationMs,
        error: report.type === 'failed' ? report.error : undefined,
        truncated: report.truncated || undefined,
      });
    }
    if (this.stopping) this.startReportDeadline();
    this.sendReport();
  }

  private reportLimit(held: Held): number {
    return held.reportLimit ?? this.maxMessageBytes;
  }

  private sendReport(): void {
    const held = this.held;
    if (held?.report == null || this.welcome === null) return;
    // The server takes a report only of a job it knows started: until `running` is acknowledged
    // (it may have failed while the server's database was away), the report waits for that ack.
    if (this.awaitsRunningAck(held)) return;
    const frame = fitFrame(held.report, this.reportLimit(held) - FRAME_MARGIN_BYTES);
    if (frame.truncated && !held.report.truncated) this.log.info('output cut to fit the server frame limit', { job: held.job.id });
    if (!this.send(frame)) return;
    this.setTimer('report', this.timing.reportRetryMs, () => {
      this.log.warn('no answer to the job report; sending it again', { job: held.job.id });
      this.sendReport();
    });
  }

  private awaitsRunningAck(held: Held): boolean {
    return held.started && !held.runningAcked && !held.cancelRequested && !held.abandoned;
  }

  private onAck(job: string, attempt: number, of: string): void {
    const held = this.held;
    if (held === null || held.job.id !== job || held.job.attempt !== attempt) return;
    if (of === 'running') {
      held.runningAcked = true;
      if (held.report !== null) this.sendReport();
    }
    else if ((of === 'completed' || of === 'failed') && held.report !== null) {
      this.log.info('job reported', { job, outcome: of });
      this.release(held);
    }
  }

  private onCancel(job: string, attempt: number, reason: string): void {
    const held = this.held;
    if (held === null || held.job.id !== job || held.job.attempt !== attempt) {
      // Nothing of it runs here (e.g. a cancel redelivered after a restart): acknowledge at once.
      this.log.info('cancel for a job not running here; acknowledging', { job, attempt, reason });
      this.send({ type: 'canceled', job, attempt });
      return;
    }
    if (held.cancelRequested && !held.finished) return; // already stopping; `canceled` follows
    held.cancelRequested = true;
    this.clearTimer('report');
    if (held.run !== null && !held.finished) {
      this.log.info('cancel: stopping the job', { job, reason });
      void held.run.stop('cancel');
      return;
    }
    this.log.info('cancel for a job that already ended; acknowledging', { job, reason });
    this.send({ type: 'canceled', job, attempt });
    this.release(held);
  }

  private onError(code: string, message: string, job: string | undefined): void {
    const held = this.held;
    if (job === undefined) {
      this.log.warn('the server answered with an error', { code, message });
      if (code !== 'rate_limited') return;
      // A dropped frame: which one is not said. Send again what may have been lost.
      if (this.readyOutstanding) {
        this.readyOutstanding = false;
        this.setTimer('ready', this.timing.readyRetryMs * (1 + this.random()), () => this.sendReady());
      } else if (held !== null && this.awaitsRunningAck(held)) this.retryRunning(held);
      else if (held?.report) this.setTimer('report', this.timing.retrySoonMs, () => this.sendReport());
      return;
    }
    if (held === null || held.job.id !== job) {
      this.log.debug('error about a job not held here', { code, message, job });
      return;
    }
    switch (code) {
      case 'invalid_transition':
      case 'not_found':
      case 'forbidden':
        if (held.report !== null) {
          this.log.warn('the server refused the job report: the job is already over there', { job, code, message });
          this.release(held);
        } else if (!held.cancelRequested && !held.abandoned) {
          this.log.warn('the server no longer holds this job for this runner; stopping it', { job, code, message });
          held.abandoned = true;
          void held.run?.stop('abandon');
        }
        return;
      case 'bad_message':
        if (held.report !== null && !held.reportStripped) {
          this.log.warn('the server refused the job report as malformed; sending it without output', { job, message });
          held.reportStripped = true;
          held.report = bareReport(held.report);
          this.sendReport();
        } else if (held.report !== null) {
          this.log.error('the server refused the job report twice; giving it up', { job, message });
          this.release(held);
        } else this.log.error('the server refused a message about the job', { job, code, message });
        return;
      default:
        // internal_error, rate_limited, ...: the same again in a moment.
        this.log.warn('the server could not handle a message about the job; retrying', { job, code, message });
        if (this.awaitsRunningAck(held)) this.retryRunning(held);
        else if (held.report !== null) this.setTimer('report', this.timing.retrySoonMs, () => this.sendReport());
    }
  }

  private retryRunning(held: Held): void {
    this.setTimer('running', this.timing.retrySoonMs, () => {
      // Also once the job finished: its report waits for this `running` to be acknowledged.
      if (this.held === held && this.awaitsRunningAck(held)) {
        this.send({ type: 'running', job: held.job.id, attempt: held.job.attempt });
      }
    });
  }

  /** The held job is done with: report acknowledged, canceled or given up. */
  private release(held: Held): void {
    if (this.held !== held) return;
    this.held = null;
    this.clearTimer('report');
    this.clearTimer('running');
    this.clearTimer('drain');
    if (this.stopping) void this.finish(EXIT.ok);
    else this.sendReady();
  }

  private sendReady(): void {
    if (this.welcome === null || this.held !== null || this.stopping || this.readyOutstanding) return;
    if (this.send({ type: 'ready' })) {
      this.readyOutstanding = true;
      this.log.debug('waiting for a job');
    }
  }

  private startReportDeadline(): void {
    if (this.timers.has('shutdown')) return;
    this.setTimer('shutdown', this.timing.shutdownReportMs, () => {
      this.log.error('stopping without having delivered the job report', { job: this.held?.job.id });
      void this.finish(EXIT.failed);
    });
  }

  private send(message: RunnerMessage): boolean {
    if (this.welcome === null && message.type !== 'hello') return false;
    return this.connection?.send(message) ?? false;
  }

  private setTimer(name: string, ms: number, action: () => void): void {
    this.clearTimer(name);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        this.guard(action);
      }, ms),
    );
  }

  private clearTimer(name: string): void {
    const timer = this.timers.get(name);
    if (timer !== undefined) clearTimeout(timer);
    this.timers.delete(name);
  }
}

/** The report for how a run ended (PROTOCOL.md, "Lifecycle"). */
export function reportFor(job: Pick<JobPayload, 'id' | 'attempt'>, end: RunEnd): ReportFrame {
  const ref = { job: job.id, attempt: job.attempt };
  if (end.kind === 'not-started') return { type: 'failed', ...ref, error: end.error, exitCode: null };
  const output = end.output ?? { stdout: '', stderr: '', files: {}, truncated: false };
  const parts = { stdout: output.stdout, stderr: output.stderr, files: output.files, truncated: output.truncated };
  const failed = (error: string, exitCode: number | null): ReportFrame => ({ type: 'failed', ...ref, error, exitCode, ...parts });
  if (end.stoppedFor === 'timeout') return failed('timeout', null);
  if (end.stoppedFor === 'drain') return failed('runner_error: the runner was stopped and the job did not finish within the drain timeout', null);
  if (end.engineFailed) return failed('runner_error: the container engine could not run the job (exit 125)', null);
  const { code, signal } = end.exit;
  if (code === 0) return { type: 'completed', ...ref, exitCode: 0, ...parts };
  if (code !== null) return failed(`exit status ${code}`, code);
  // Killed by a signal of its own doing (a crash): the shell's convention, 128 + the signal number.
  const number = signal === null ? undefined : constants.signals[signal];
  return failed(`killed by signal ${signal ?? 'unknown'}`, number === undefined ? null : 128 + number);
}
