import { Backoff } from '../common/backoff';
import { Connection, type ConnectionHandlers } from './connection';
import type { Fingerprint } from './fingerprint';
import { JobRun, type JobRunSettings } from './job-run';
import { type AgentEvent, type AgentState, type AgentTiming, DEFAULT_TIMING, type Effect, type TimerName, initialState, jobRuns, step } from './lifecycle';
import type { Log } from './log';
import type { AgentOptions } from './options';
import { FRAME_MARGIN_BYTES } from './report';
import { type Cancel, type Scheduler, SystemScheduler } from './scheduler';
import type { FrameError, JobPayload } from './wire';

export { type AgentTiming, DEFAULT_TIMING, EXIT } from './lifecycle';

/** The socket as the agent uses it; tests pass a scripted one. */
export type AgentConnection = Pick<Connection, 'send' | 'ping' | 'close' | 'terminate'>;
/** A job's run as the agent uses it; tests pass a scripted one. */
export type AgentRun = Pick<JobRun, 'ended' | 'stop' | 'pid'>;

export interface AgentDeps {
  options: AgentOptions;
  log: Log;
  fingerprint: Fingerprint;
  version: string;
  random?: () => number;
  timing?: Partial<AgentTiming>;
  /** The clock and the timers (default: the system's). */
  scheduler?: Scheduler;
  /** Opens a socket (default: a WebSocket, `Connection`). */
  connect?: (url: string, token: string, handlers: ConnectionHandlers) => AgentConnection;
  /** Starts a job (default: `JobRun`, for real). `frameLimit` is the server's frame limit now. */
  startRun?: (job: JobPayload, settings: JobRunSettings, log: Log, frameLimit: () => number, onStarted: () => void) => AgentRun;
}

/**
 * The runner agent: keeps one connection to a server up (reconnecting with back-off and failing
 * over across the URLs), asks for work when idle, runs one job at a time, heartbeats it, reports
 * its end until the report is acknowledged, cancels for real, and drains on SIGTERM.
 *
 * What to do when is decided by the pure machine in lifecycle.ts; this class is its shell: it
 * turns sockets, runs, signals and timers into events, and carries out the effects.
 */
export class RunnerAgent {
  private readonly options: AgentOptions;
  private readonly log: Log;
  private readonly backoff: Backoff;
  private readonly random: () => number;
  private readonly settings: JobRunSettings;
  private readonly scheduler: Scheduler;
  private readonly openConnection: NonNullable<AgentDeps['connect']>;
  private readonly startRun: NonNullable<AgentDeps['startRun']>;

  private state: AgentState;
  private readonly queue: AgentEvent[] = [];
  private stepping = false;
  private connection: AgentConnection | null = null;
  private current: { id: number; run: AgentRun } | null = null;
  private readonly timers = new Map<TimerName, Cancel>();
  private exiting = false;
  private resolveExit: (code: number) => void = () => undefined;
  private readonly exited: Promise<number>;

  constructor(private readonly deps: AgentDeps) {
    const { options } = deps;
    this.options = options;
    this.log = deps.log;
    this.random = deps.random ?? Math.random;
    this.backoff = new Backoff(options.reconnectMinMs, options.reconnectMaxMs, this.random);
    this.scheduler = deps.scheduler ?? new SystemScheduler();
    this.openConnection = deps.connect ?? ((url, token, handlers) => new Connection(url, token, handlers));
    this.startRun = deps.startRun ?? ((job, settings, log, frameLimit, onStarted) => new JobRun(job, settings, log, frameLimit, onStarted));
    this.exited = new Promise((resolve) => (this.resolveExit = resolve));
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
    this.state = initialState({
      urls: options.urls,
      version: deps.version,
      fingerprint: deps.fingerprint,
      timing: { ...DEFAULT_TIMING, ...deps.timing },
      drainTimeoutMs: options.drainTimeoutMs,
    });
  }

  /** Runs until stopped; resolves with the process exit code. */
  run(): Promise<number> {
    this.log.info('runner agent starting', {
      version: this.deps.version,
      urls: this.options.urls.join(','),
      executor: this.options.executor ?? 'host',
      workDir: this.options.workDir,
    });
    this.dispatch({ type: 'start', at: this.now() });
    return this.exited;
  }

  /** SIGTERM/SIGINT: no new work; the running job may finish (drain); a second signal stops it, a third exits at once. */
  shutdown(signal: string): void {
    this.dispatch({ type: 'signal', signal, at: this.now() });
  }

  /** Last resort when the agent's process exits: nothing of a job may outlive it. */
  killJobNow(): void {
    const pid = jobRuns(this.state.held) ? this.current?.run.pid : undefined;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  // --- events in ---------------------------------------------------------------------------

  /** Steps the machine through `event`, and through the events its effects cause, one at a time. */
  private dispatch(event: AgentEvent): void {
    this.queue.push(event);
    if (this.stepping) return;
    this.stepping = true;
    try {
      for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) this.handle(next);
    } finally {
      this.stepping = false;
    }
  }

  private handle(event: AgentEvent): void {
    try {
      const [state, effects] = step(this.state, event);
      this.state = state;
      for (const effect of effects) this.execute(effect);
    } catch (error) {
      const text = (error as Error).stack ?? String(error);
      // The connection loop cannot go on after a failure; a frame or a timer can be let go.
      const loop = event.type === 'start' || event.type === 'disconnected' || (event.type === 'timer' && event.timer === 'reconnect');
      if (loop) this.queue.push({ type: 'crashed', error: text });
      else if (event.type !== 'crashed') this.log.error('could not handle a frame', { error: text });
    }
  }

  private now(): number {
    return this.scheduler.clock.now().getTime();
  }

  private open(url: string): void {
    const from = (event: AgentEvent) => {
      if (this.connection === connection) this.dispatch(event);
    };
    const connection = this.openConnection(url, this.options.token, {
      onOpen: () => from({ type: 'opened' }),
      onFrame: (frame) => from({ type: 'frame', frame }),
      onBadFrame: (error: FrameError) => this.log.warn('ignoring a frame the agent does not understand', { error: error.message }),
      onHeard: () => from({ type: 'heard', at: this.now() }),
      onEnd: (ending) => {
        if (this.connection !== connection) return;
        this.connection = null;
        this.dispatch({ type: 'disconnected', ending });
      },
    });
    this.connection = connection;
  }

  private launch(id: number, job: JobPayload): void {
    const run = this.startRun(job, this.settings, this.log, () => this.state.maxMessageBytes - FRAME_MARGIN_BYTES, () =>
      this.dispatch({ type: 'runStarted', run: id, pid: run.pid, at: this.now() }),
    );
    this.current = { id, run };
    run.ended.then(
      (end) => this.dispatch({ type: 'runEnded', run: id, end }),
      (error: unknown) => this.dispatch({ type: 'runEnded', run: id, end: { kind: 'not-started', error: `runner_error: ${(error as Error).message}` } }),
    );
  }

  // --- effects out -------------------------------------------------------------------------

  private execute(effect: Effect): void {
    switch (effect.type) {
      case 'connect':
        return this.open(effect.url);
      case 'send':
        this.connection?.send(effect.message);
        return;
      case 'ping':
        return this.connection?.ping();
      case 'drop':
        return this.connection?.terminate();
      case 'startRun':
        return this.launch(effect.run, effect.job);
      case 'stopRun':
        void this.current?.run.stop(effect.reason);
        return;
      case 'setTimer':
        return this.setTimer(effect.timer, effect.jitterMs === undefined ? effect.ms : effect.ms + effect.jitterMs * this.random(), false);
      case 'setInterval':
        return this.setTimer(effect.timer, effect.ms, true);
      case 'clearTimer':
        return this.clearTimer(effect.timer);
      case 'backOff': {
        const inMs = effect.floorMs + this.backoff.next();
        this.log.info('reconnecting', { inMs, url: effect.url });
        return this.setTimer('reconnect', inMs, false);
      }
      case 'resetBackoff':
        return this.backoff.reset();
      case 'log':
        return this.log[effect.level](effect.message, effect.fields);
      case 'exit':
        void this.exit(effect.code, effect.stopRun);
        return;
      default: {
        const _: never = effect;
        return _;
      }
    }
  }

  private async exit(code: number, stopRun: boolean): Promise<void> {
    this.exiting = true;
    for (const timer of [...this.timers.keys()]) this.clearTimer(timer);
    const current = this.current;
    if (stopRun && current !== null) {
      await current.run.stop('abandon');
      await current.run.ended;
    }
    this.connection?.close(1000, 'runner stopping');
    this.log.info('runner agent stopped', { exitCode: code });
    this.resolveExit(code);
  }

  private setTimer(timer: TimerName, ms: number, repeat: boolean): void {
    this.clearTimer(timer);
    if (this.exiting) return;
    const fire = () => {
      if (!repeat) this.timers.delete(timer);
      this.dispatch({ type: 'timer', timer, at: this.now() });
    };
    this.timers.set(timer, repeat ? this.scheduler.every(ms, fire) : this.scheduler.after(ms, fire));
  }

  private clearTimer(timer: TimerName): void {
    this.timers.get(timer)?.();
    this.timers.delete(timer);
  }
}
