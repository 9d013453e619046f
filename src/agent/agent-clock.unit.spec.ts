import { type AgentConnection, type AgentRun, type AgentTiming, DEFAULT_TIMING, EXIT, RunnerAgent } from './agent';
import type { ConnectionHandlers, Ending } from './connection';
import type { RunEnd, StopReason } from './job-run';
import type { Log, LogFields, LogLevel } from './log';
import { type AgentFlags, resolveAgentOptions } from './options';
import { ManualScheduler, settle } from './scheduler';
import type { JobPayload, RunnerMessage, ServerFrame } from './wire';

/**
 * RunnerAgent, the shell around the lifecycle machine, on a manual clock: a scripted socket and
 * scripted job runs stand in for the server and the processes, and time moves only when the test
 * advances it. Drain, retries, cancels, the report deadline and reconnecting are checked to the
 * millisecond, at the agent's default delays, without sleeping.
 */

const TOKEN = `runway_runner_${'ef'.repeat(32)}`;
const WELCOME: ServerFrame = { type: 'welcome', runner: 'r-1', heartbeatIntervalMs: 10_000, heartbeatTimeoutMs: 30_000 };
const OUTPUT = { stdout: 'out\n', stderr: '', files: {}, truncated: false };
const exited = (extra: Partial<Extract<RunEnd, { kind: 'ended' }>> = {}): RunEnd => ({
  kind: 'ended',
  exit: { code: 0, signal: null },
  stoppedFor: null,
  output: OUTPUT,
  durationMs: 5,
  engineFailed: false,
  ...extra,
});

class ScriptedConnection implements AgentConnection {
  readonly sent: RunnerMessage[] = [];
  pings = 0;
  terminated = false;
  closedWith: { code: number; reason: string } | null = null;

  constructor(
    readonly url: string,
    private readonly handlers: ConnectionHandlers,
  ) {}

  send(message: RunnerMessage): boolean {
    this.sent.push(message);
    return true;
  }
  ping(): void {
    this.pings += 1;
  }
  close(code = 1000, reason = ''): void {
    this.closedWith = { code, reason };
  }
  terminate(): void {
    this.terminated = true;
  }

  open(): void {
    this.handlers.onOpen();
  }
  receive(frame: ServerFrame): void {
    this.handlers.onHeard();
    this.handlers.onFrame(frame);
  }
  end(ending: Ending): void {
    this.handlers.onEnd(ending);
  }
  /** The frames of `type` sent so far. */
  of(type: RunnerMessage['type']): RunnerMessage[] {
    return this.sent.filter((frame) => frame.type === type);
  }
  /** The last frame sent, heartbeats aside. */
  get last(): RunnerMessage | undefined {
    return this.sent.filter((frame) => frame.type !== 'heartbeat').at(-1);
  }
}

class ScriptedRun implements AgentRun {
  readonly stops: StopReason[] = [];
  readonly pid: number | undefined = undefined;
  readonly ended: Promise<RunEnd>;
  private resolve: (end: RunEnd) => void = () => undefined;

  constructor(
    readonly job: JobPayload,
    private readonly onStarted: () => void,
  ) {
    this.ended = new Promise((resolve) => (this.resolve = resolve));
  }

  async stop(reason: StopReason): Promise<void> {
    this.stops.push(reason);
  }
  start(): void {
    this.onStarted();
  }
  end(end: RunEnd): void {
    this.resolve(end);
  }
}

function recordingLog(): Log & { has(level: LogLevel, message: string): boolean } {
  const lines: { level: LogLevel; message: string; fields: LogFields }[] = [];
  const at = (level: LogLevel) => (message: string, fields: LogFields = {}) => void lines.push({ level, message, fields });
  return { has: (level, message) => lines.some((line) => line.level === level && line.message === message), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

let ids = 0;
const job = (timeout = 60): JobPayload => ({ id: `j-${++ids}`, attempt: 1, spec: 's', image: null, cmd: ['true'], entrypoint: null, env: {}, timeout, filePaths: [] });

/** An agent on a manual clock with a scripted server at two URLs; the random draw is always 0.5. */
function start(flags: AgentFlags = {}, timing: Partial<AgentTiming> = {}) {
  const clock = new ManualScheduler();
  const connections: ScriptedConnection[] = [];
  const runs: ScriptedRun[] = [];
  const log = recordingLog();
  const options = resolveAgentOptions({ url: 'http://a.test,http://b.test', token: TOKEN, reconnectMinMs: '100', reconnectMaxMs: '1000', ...flags }, {});
  const agent = new RunnerAgent({
    options,
    log,
    fingerprint: { cores: 2 },
    version: 'runway-runner/test',
    random: () => 0.5,
    timing,
    scheduler: clock,
    connect: (url, _token, handlers) => {
      const connection = new ScriptedConnection(url, handlers);
      connections.push(connection);
      return connection;
    },
    startRun: (payload, _settings, _log, _frameLimit, onStarted) => {
      const run = new ScriptedRun(payload, onStarted);
      runs.push(run);
      return run;
    },
  });
  let exitCode: number | null = null;
  void agent.run().then((code) => (exitCode = code));
  /** The first connection opened and welcomed. */
  const connected = (): ScriptedConnection => {
    const c = connections[0];
    c.open();
    c.receive(WELCOME);
    return c;
  };
  /** Connected, a job given, its command started and `running` acknowledged. */
  const running = (timeout = 60) => {
    const c = connected();
    const payload = job(timeout);
    c.receive({ type: 'job', job: payload });
    runs[0].start();
    c.receive({ type: 'ack', job: payload.id, attempt: 1, of: 'running' });
    return { c, run: runs[0], ref: { job: payload.id, attempt: 1 } };
  };
  return { agent, clock, connections, runs, log, running, connected, exitCode: () => exitCode };
}

describe('RunnerAgent on a manual clock', () => {
  it('heartbeats a running job every heartbeatIntervalMs', async () => {
    const { clock, running } = start();
    const { c, ref } = running();
    await clock.advance(35_000);
    expect(c.of('heartbeat')).toEqual([1, 2, 3].map(() => ({ type: 'heartbeat', ...ref })));
  });

  it('drain: the job runs on for what is left of its timeout, then is stopped, reported failed, and the ack ends the agent with 0', async () => {
    const { agent, clock, running, exitCode } = start();
    const { c, run, ref } = running(60);
    await clock.advance(20_000);
    agent.shutdown('SIGTERM');
    await clock.advance(39_999);
    expect(run.stops).toEqual([]);
    await clock.advance(1);
    expect(run.stops).toEqual(['drain']);
    run.end(exited({ exit: { code: null, signal: 'SIGTERM' }, stoppedFor: 'drain' }));
    await settle();
    expect(c.last).toMatchObject({ type: 'failed', ...ref, exitCode: null, error: expect.stringContaining('drain timeout') });
    expect(exitCode()).toBeNull();
    c.receive({ type: 'ack', ...ref, of: 'failed' });
    await settle();
    expect(exitCode()).toBe(EXIT.ok);
    expect(c.closedWith).toEqual({ code: 1000, reason: 'runner stopping' });
    expect(c.of('ready')).toHaveLength(1);
  });

  it('drain for --drain-timeout-ms when given', async () => {
    const { agent, clock, running } = start({ drainTimeoutMs: '5000' });
    const { run } = running(3_600);
    agent.shutdown('SIGTERM');
    await clock.advance(4_999);
    expect(run.stops).toEqual([]);
    await clock.advance(1);
    expect(run.stops).toEqual(['drain']);
  });

  it('report retry: an unanswered report goes again after reportRetryMs, not before; its ack frees the agent for work', async () => {
    const { clock, running, log } = start();
    const { c, run, ref } = running();
    run.end(exited());
    await settle();
    const report = { type: 'completed', ...ref, exitCode: 0, ...OUTPUT };
    expect(c.of('completed')).toEqual([report]);
    await clock.advance(DEFAULT_TIMING.reportRetryMs - 1);
    expect(c.of('completed')).toHaveLength(1);
    await clock.advance(1);
    expect(c.of('completed')).toEqual([report, report]);
    expect(log.has('warn', 'no answer to the job report; sending it again')).toBe(true);
    c.receive({ type: 'ack', ...ref, of: 'completed' });
    expect(c.last).toEqual({ type: 'ready' });
    await clock.advance(DEFAULT_TIMING.reportRetryMs * 3);
    expect(c.of('completed')).toHaveLength(2);
  });

  it('unavailable: running again after retrySoonMs, and the report only once that is acknowledged', async () => {
    const { clock, connected, runs } = start();
    const c = connected();
    const payload = job();
    const ref = { job: payload.id, attempt: 1 };
    c.receive({ type: 'job', job: payload });
    runs[0].start();
    c.receive({ type: 'error', code: 'unavailable', message: 'the database is not available; try again shortly', job: payload.id });
    runs[0].end(exited());
    await clock.advance(DEFAULT_TIMING.retrySoonMs - 1);
    expect(c.of('running')).toHaveLength(1);
    await clock.advance(1);
    expect(c.of('running')).toHaveLength(2);
    expect(c.of('completed')).toEqual([]);
    c.receive({ type: 'ack', ...ref, of: 'running' });
    expect(c.last).toMatchObject({ type: 'completed', ...ref });
  });

  it('cancel: the run is stopped, canceled is said only when it ended, then ready', async () => {
    const { clock, running } = start();
    const { c, run, ref } = running();
    c.receive({ type: 'cancel', ...ref, reason: 'canceled' });
    expect(run.stops).toEqual(['cancel']);
    await clock.advance(60_000);
    expect(c.of('canceled')).toEqual([]);
    expect(c.of('heartbeat')).toEqual([]);
    run.end(exited({ stoppedFor: 'cancel', output: null }));
    await settle();
    expect(c.sent.slice(-2)).toEqual([{ type: 'canceled', ...ref }, { type: 'ready' }]);
    expect(c.of('completed')).toEqual([]);
  });

  it('cancel after the job ended, before the ack of its report: canceled, and the report is never sent again', async () => {
    const { clock, running } = start();
    const { c, run, ref } = running();
    run.end(exited());
    await settle();
    c.receive({ type: 'cancel', ...ref, reason: 'canceled' });
    expect(c.sent.slice(-2)).toEqual([{ type: 'canceled', ...ref }, { type: 'ready' }]);
    await clock.advance(DEFAULT_TIMING.reportRetryMs * 2);
    expect(c.of('completed')).toHaveLength(1);
  });

  it('stopping with a report not acknowledged: exits 1 at shutdownReportMs, not a millisecond before', async () => {
    const { agent, clock, running, exitCode, log } = start();
    const { c, run } = running();
    run.end(exited());
    await settle();
    agent.shutdown('SIGTERM');
    await clock.advance(DEFAULT_TIMING.shutdownReportMs - 1);
    expect(exitCode()).toBeNull();
    await clock.advance(1);
    expect(exitCode()).toBe(EXIT.failed);
    expect(log.has('error', 'stopping without having delivered the job report')).toBe(true);
    expect(c.closedWith?.code).toBe(1000);
    expect(clock.pending).toBe(0);
  });

  it('a third signal stops the running job and exits 1 once its run is over', async () => {
    const { agent, running, exitCode } = start();
    const { run } = running();
    for (let i = 0; i < 3; i += 1) agent.shutdown('SIGTERM');
    expect(run.stops).toEqual(['drain', 'abandon']);
    await settle();
    expect(exitCode()).toBeNull();
    run.end(exited({ stoppedFor: 'drain', output: null }));
    await settle();
    expect(exitCode()).toBe(EXIT.failed);
  });

  it('reconnects with back-off (from the injected random) to the next URL, and back-off starts over after a welcome', async () => {
    const { clock, connections } = start();
    expect(connections.map((c) => c.url)).toEqual(['ws://a.test/v1/runner/connect']);
    connections[0].end({ kind: 'failed', error: 'connect ECONNREFUSED' });
    // Attempt 1: between 100 and 200 ms; 0.5 of the way is 150.
    await clock.advance(149);
    expect(connections).toHaveLength(1);
    await clock.advance(1);
    expect(connections.map((c) => c.url)).toEqual(['ws://a.test/v1/runner/connect', 'ws://b.test/v1/runner/connect']);
    connections[1].end({ kind: 'refused', status: 503, detail: 'unavailable' });
    // Attempt 2: between 100 and 400 ms.
    await clock.advance(249);
    expect(connections).toHaveLength(2);
    await clock.advance(1);
    expect(connections).toHaveLength(3);
    connections[2].open();
    connections[2].receive(WELCOME);
    connections[2].end({ kind: 'closed', code: 1013, reason: 'try again later' });
    await clock.advance(149);
    expect(connections).toHaveLength(3);
    await clock.advance(1);
    expect(connections).toHaveLength(4);
  });

  it('a server that stays silent for heartbeatTimeoutMs is dropped; before that it is pinged', async () => {
    const { clock, connected } = start();
    const c = connected();
    await clock.advance(30_000);
    expect(c.pings).toBe(3);
    expect(c.terminated).toBe(false);
    await clock.advance(10_000);
    expect(c.terminated).toBe(true);
  });

  it('a welcome that does not come within welcomeTimeoutMs drops the connection', async () => {
    const { clock, connections } = start();
    connections[0].open();
    await clock.advance(DEFAULT_TIMING.welcomeTimeoutMs - 1);
    expect(connections[0].terminated).toBe(false);
    await clock.advance(1);
    expect(connections[0].terminated).toBe(true);
  });

  it('asks for work again after readyRetryMs plus a jitter when a ready was refused as rate limited', async () => {
    const { clock, connected } = start();
    const c = connected();
    c.receive({ type: 'error', code: 'rate_limited', message: 'too many claims' });
    // 5 s, plus half as much again (the random draw is 0.5).
    await clock.advance(7_499);
    expect(c.of('ready')).toHaveLength(1);
    await clock.advance(1);
    expect(c.of('ready')).toHaveLength(2);
  });
});
