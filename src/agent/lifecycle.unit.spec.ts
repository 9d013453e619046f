import type { RunEnd } from './job-run';
import {
  type AgentEvent,
  type AgentState,
  DEFAULT_TIMING,
  type Effect,
  EXIT,
  type LifecycleConfig,
  initialState,
  step,
} from './lifecycle';
import type { JobPayload, ServerFrame, Welcome } from './wire';

/**
 * The lifecycle machine on its own: given a state (built from events) and an event, the next
 * state and the effects. No socket, no process, no timer: the time is the events' `at`.
 */

const A = 'ws://a.test/v1/runner/connect';
const B = 'ws://b.test/v1/runner/connect';
const CONFIG: LifecycleConfig = { urls: [A, B], version: 'runway-runner/test', fingerprint: { cores: 2 }, timing: DEFAULT_TIMING, drainTimeoutMs: null };
const WELCOME: Welcome = { type: 'welcome', runner: 'r-1', heartbeatIntervalMs: 10_000, heartbeatTimeoutMs: 30_000 };
const JOB: JobPayload = { id: 'j-1', attempt: 1, spec: 's', image: null, cmd: ['sh', '-c', 'echo out'], entrypoint: null, env: {}, timeout: 60, filePaths: [] };
const REF = { job: JOB.id, attempt: 1 };
const OUTPUT = { stdout: 'out\n', stderr: '', files: {}, truncated: false };
const EXITED_0: RunEnd = { kind: 'ended', exit: { code: 0, signal: null }, stoppedFor: null, output: OUTPUT, durationMs: 5, engineFailed: false };
const COMPLETED = { type: 'completed', ...REF, exitCode: 0, ...OUTPUT };

const frame = (frame: ServerFrame): AgentEvent => ({ type: 'frame', frame });
const at = (ms: number) => ms;

/** The state after `events`, from the start, with their effects dropped. */
function given(events: AgentEvent[], config: LifecycleConfig = CONFIG): AgentState {
  return events.reduce((state, event) => step(state, event)[0], initialState(config));
}

/** One step from `state`, which is frozen first: a step that changed it would throw. */
function when(state: AgentState, event: AgentEvent): [AgentState, Effect[]] {
  return step(deepFreeze(state), event);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

const sent = (effects: Effect[]) => effects.flatMap((effect) => (effect.type === 'send' ? [effect.message] : []));
const without = (effects: Effect[], ...types: Effect['type'][]) => effects.filter((effect) => !types.includes(effect.type));
const logged = (effects: Effect[]) => effects.flatMap((effect) => (effect.type === 'log' ? [`${effect.level}: ${effect.message}`] : []));

const CONNECTED: AgentEvent[] = [{ type: 'start', at: at(0) }, { type: 'opened' }, frame(WELCOME)];
/** Connected, the job taken and its command started at 1 s. */
const RUNNING: AgentEvent[] = [...CONNECTED, frame({ type: 'job', job: JOB }), { type: 'runStarted', run: 1, pid: 42, at: at(1_000) }];
/** ... `running` acknowledged and the job ended: its report is out, waiting for the ack. */
const REPORTED: AgentEvent[] = [...RUNNING, frame({ type: 'ack', ...REF, of: 'running' }), { type: 'runEnded', run: 1, end: EXITED_0 }];

describe('lifecycle: the connection', () => {
  it('connects to the first URL, says hello with the jobs it holds, and asks for work once welcomed', () => {
    const [connecting, connect] = when(initialState(CONFIG), { type: 'start', at: at(5) });
    expect(connect).toEqual([{ type: 'connect', url: A }]);
    expect(connecting).toMatchObject({ link: { name: 'connecting', url: A }, lastHeard: 5 });
    const [opened, hello] = when(connecting, { type: 'opened' });
    expect(hello).toEqual([
      { type: 'send', message: { type: 'hello', version: 'runway-runner/test', capacity: 1, fingerprint: { cores: 2 }, jobs: [] } },
      { type: 'setTimer', timer: 'welcome', ms: DEFAULT_TIMING.welcomeTimeoutMs },
    ]);
    const [up, effects] = when(opened, frame(WELCOME));
    expect(without(effects, 'log')).toEqual([
      { type: 'clearTimer', timer: 'welcome' },
      { type: 'resetBackoff' },
      { type: 'setInterval', timer: 'heartbeat', ms: 10_000 },
      { type: 'setInterval', timer: 'watchdog', ms: 10_000 },
      { type: 'send', message: { type: 'ready' } },
    ]);
    expect(up).toMatchObject({ link: { name: 'up', url: A }, readyOutstanding: true });
  });

  it('drops a connection whose welcome does not come in time', () => {
    const state = given(CONNECTED.slice(0, 2));
    expect(without(when(state, { type: 'timer', timer: 'welcome', at: at(15_000) })[1], 'log')).toEqual([{ type: 'drop' }]);
  });

  it('pings while the server is heard from, and drops the connection after heartbeatTimeoutMs of silence', () => {
    const state = given([...CONNECTED, { type: 'heard', at: at(10_000) }]);
    expect(when(state, { type: 'timer', timer: 'watchdog', at: at(40_000) })[1]).toEqual([{ type: 'ping' }]);
    const [, effects] = when(state, { type: 'timer', timer: 'watchdog', at: at(40_001) });
    expect(effects).toEqual([
      { type: 'log', level: 'warn', message: 'no word from the server; reconnecting', fields: { url: A, silentMs: 30_001 } },
      { type: 'drop' },
    ]);
  });

  it('after a disconnect: clears the connection timers and backs off towards the next URL, with a floor after 429 and 4000', () => {
    const state = given(CONNECTED);
    const [down, effects] = when(state, { type: 'disconnected', ending: { kind: 'closed', code: 1006, reason: '' } });
    expect(without(effects, 'log', 'clearTimer')).toEqual([{ type: 'backOff', floorMs: 0, url: B }]);
    expect(effects.filter((effect) => effect.type === 'clearTimer').map((effect) => effect.type === 'clearTimer' && effect.timer)).toEqual(
      expect.arrayContaining(['heartbeat', 'watchdog', 'report', 'running', 'ready', 'welcome']),
    );
    expect(down).toMatchObject({ link: { name: 'down' }, urlIndex: 1, readyOutstanding: false });
    expect(when(down, { type: 'timer', timer: 'reconnect', at: at(99) })[1]).toEqual([{ type: 'connect', url: B }]);
    const floor = (ending: AgentEvent & { type: 'disconnected' }) => without(when(state, ending)[1], 'log', 'clearTimer');
    expect(floor({ type: 'disconnected', ending: { kind: 'refused', status: 429, detail: '' } })).toEqual([{ type: 'backOff', floorMs: DEFAULT_TIMING.rateLimitedMs, url: B }]);
    expect(floor({ type: 'disconnected', ending: { kind: 'closed', code: 4000, reason: 'replaced' } })).toEqual([{ type: 'backOff', floorMs: DEFAULT_TIMING.replacedMs, url: B }]);
    expect(floor({ type: 'disconnected', ending: { kind: 'closed', code: 1013, reason: 'try again later' } })).toEqual([{ type: 'backOff', floorMs: 0, url: B }]);
  });

  it('exits 3 when the token is refused (401, 403, 1008), stopping a running job first', () => {
    for (const ending of [
      { kind: 'refused', status: 401, detail: 'unauthorized' },
      { kind: 'refused', status: 403, detail: 'forbidden' },
      { kind: 'closed', code: 1008, reason: 'revoked' },
    ] as const) {
      const [state, effects] = when(given(RUNNING), { type: 'disconnected', ending });
      expect(effects.at(-1)).toEqual({ type: 'exit', code: EXIT.refused, stopRun: true });
      expect(effects.some((effect) => effect.type === 'backOff')).toBe(false);
      expect(state.held?.phase).toEqual({ name: 'abandoning' });
    }
  });

  it('on a new connection with a job: says it holds it, running again, and the report after the ack (at half the frame limit after 1009)', () => {
    const dropped = given([...REPORTED, { type: 'disconnected', ending: { kind: 'closed', code: 1009, reason: '' } }]);
    expect(dropped.held?.phase).toMatchObject({ name: 'reporting', limit: Math.floor(dropped.maxMessageBytes / 2) });
    const [connecting] = when(dropped, { type: 'timer', timer: 'reconnect', at: at(2_000) });
    expect(sent(when(connecting, { type: 'opened' })[1])).toEqual([expect.objectContaining({ type: 'hello', jobs: [REF] })]);
    // running was acknowledged on the old connection: the server wants it again before the report.
    expect(sent(when(given([...REPORTED, { type: 'disconnected', ending: { kind: 'closed', code: 1001, reason: '' } }, { type: 'timer', timer: 'reconnect', at: 0 }, { type: 'opened' }]), frame(WELCOME))[1])).toEqual([
      { type: 'running', ...REF },
      COMPLETED,
    ]);
  });
});

describe('lifecycle: the held job', () => {
  it('takes a job, says running once its command started, and heartbeats it only while it runs', () => {
    const [taken, effects] = when(given(CONNECTED), frame({ type: 'job', job: JOB }));
    expect(without(effects, 'log')).toEqual([{ type: 'startRun', run: 1, job: JOB }]);
    expect(taken).toMatchObject({ readyOutstanding: false, held: { run: 1, phase: { name: 'running' }, startedAt: null } });
    const [started, startedEffects] = when(taken, { type: 'runStarted', run: 1, pid: 42, at: at(1_000) });
    expect(sent(startedEffects)).toEqual([{ type: 'running', ...REF }]);
    expect(started.held?.startedAt).toBe(1_000);
    expect(sent(when(started, { type: 'timer', timer: 'heartbeat', at: 0 })[1])).toEqual([{ type: 'heartbeat', ...REF }]);
    expect(sent(when(given(REPORTED), { type: 'timer', timer: 'heartbeat', at: 0 })[1])).toEqual([]);
  });

  it('does not take a second job, nor one that comes while stopping', () => {
    const [busy, effects] = when(given(RUNNING), frame({ type: 'job', job: { ...JOB, id: 'j-2' } }));
    expect(without(effects, 'log')).toEqual([]);
    expect(busy.held?.job.id).toBe(JOB.id);
    const [, stopping] = when(given([...CONNECTED, { type: 'heard', at: 0 }]), { type: 'signal', signal: 'SIGTERM', at: 0 });
    expect(stopping.at(-1)).toEqual({ type: 'exit', code: EXIT.ok, stopRun: false });
  });

  it('holds the report until running is acknowledged, then sends it with its retry timer', () => {
    const [ended, effects] = when(given(RUNNING), { type: 'runEnded', run: 1, end: EXITED_0 });
    expect(sent(effects)).toEqual([]);
    expect(ended.held?.phase).toMatchObject({ name: 'reporting', report: COMPLETED });
    const [, acked] = when(ended, frame({ type: 'ack', ...REF, of: 'running' }));
    expect(without(acked, 'log')).toEqual([
      { type: 'send', message: COMPLETED },
      { type: 'setTimer', timer: 'report', ms: DEFAULT_TIMING.reportRetryMs },
    ]);
  });

  it('sends an unanswered report again when its timer fires, and lets the job go on its ack', () => {
    const state = given(REPORTED);
    const [, again] = when(state, { type: 'timer', timer: 'report', at: 0 });
    expect(logged(again)).toContain('warn: no answer to the job report; sending it again');
    expect(sent(again)).toEqual([COMPLETED]);
    const [released, effects] = when(state, frame({ type: 'ack', ...REF, of: 'completed' }));
    expect(released.held).toBeNull();
    expect(sent(effects)).toEqual([{ type: 'ready' }]);
  });

  it('unavailable: running again soon (the report still waits for its ack); on the report, the report again soon', () => {
    const refused = given([...RUNNING, frame({ type: 'error', code: 'unavailable', message: 'no database', job: JOB.id })]);
    const [ended, endedEffects] = when(refused, { type: 'runEnded', run: 1, end: EXITED_0 });
    expect(sent(endedEffects)).toEqual([]);
    expect(sent(when(ended, { type: 'timer', timer: 'running', at: 0 })[1])).toEqual([{ type: 'running', ...REF }]);
    const [soon, effects] = when(given(REPORTED), frame({ type: 'error', code: 'unavailable', message: 'no database', job: JOB.id }));
    expect(without(effects, 'log')).toEqual([{ type: 'setTimer', timer: 'report', ms: DEFAULT_TIMING.retrySoonMs }]);
    const [, resent] = when(soon, { type: 'timer', timer: 'report', at: 0 });
    expect(logged(resent)).toEqual([]);
    expect(sent(resent)).toEqual([COMPLETED]);
  });

  it('cancel while it runs: stops it, and says canceled only once its run ended', () => {
    const [canceling, effects] = when(given(RUNNING), frame({ type: 'cancel', ...REF, reason: 'canceled' }));
    expect(without(effects, 'log')).toEqual([{ type: 'stopRun', reason: 'cancel' }]);
    expect(canceling.held?.phase).toEqual({ name: 'canceling' });
    expect(without(when(canceling, frame({ type: 'cancel', ...REF, reason: 'canceled' }))[1], 'log')).toEqual([]);
    expect(sent(when(canceling, { type: 'timer', timer: 'heartbeat', at: 0 })[1])).toEqual([]);
    const [released, ended] = when(canceling, { type: 'runEnded', run: 1, end: { ...EXITED_0, stoppedFor: 'cancel', output: null } });
    expect(sent(ended)).toEqual([{ type: 'canceled', ...REF }, { type: 'ready' }]);
    expect(released.held).toBeNull();
  });

  it('cancel after the job ended, before its report was acknowledged: canceled, the report dropped, ready', () => {
    for (const events of [REPORTED, [...RUNNING, { type: 'runEnded', run: 1, end: EXITED_0 } as const]]) {
      const [released, effects] = when(given(events), frame({ type: 'cancel', ...REF, reason: 'canceled' }));
      expect(sent(effects)).toEqual([{ type: 'canceled', ...REF }, { type: 'ready' }]);
      expect(released.held).toBeNull();
    }
  });

  it('a cancel for another job or attempt is acknowledged at once, the held job left alone', () => {
    const [state, effects] = when(given(RUNNING), frame({ type: 'cancel', job: JOB.id, attempt: 2, reason: 'canceled' }));
    expect(sent(effects)).toEqual([{ type: 'canceled', job: JOB.id, attempt: 2 }]);
    expect(state.held?.phase).toEqual({ name: 'running' });
  });

  it('bad_message: the report again without output, then given up', () => {
    const badMessage = frame({ type: 'error', code: 'bad_message', message: 'stdout: invalid string', job: JOB.id });
    const [stripped, effects] = when(given(REPORTED), badMessage);
    expect(sent(effects)).toEqual([{ type: 'completed', ...REF, exitCode: 0, truncated: true }]);
    const [released, again] = when(stripped, badMessage);
    expect(logged(again)).toContain('error: the server refused the job report twice; giving it up');
    expect(sent(again)).toEqual([{ type: 'ready' }]);
    expect(released.held).toBeNull();
  });

  it('invalid_transition: a running job is stopped and reported to nobody; a report is dropped', () => {
    const refused = frame({ type: 'error', code: 'invalid_transition', message: 'not the current attempt', job: JOB.id });
    const [abandoning, effects] = when(given(RUNNING), refused);
    expect(without(effects, 'log')).toEqual([{ type: 'stopRun', reason: 'abandon' }]);
    const [, ended] = when(abandoning, { type: 'runEnded', run: 1, end: EXITED_0 });
    expect(sent(ended)).toEqual([{ type: 'ready' }]);
    expect(sent(when(given(REPORTED), refused)[1])).toEqual([{ type: 'ready' }]);
  });

  it('ignores the events of an earlier run', () => {
    const state = given([...REPORTED, frame({ type: 'ack', ...REF, of: 'completed' }), frame({ type: 'job', job: { ...JOB, id: 'j-2' } })]);
    expect(state.held?.run).toBe(2);
    expect(when(state, { type: 'runEnded', run: 1, end: EXITED_0 })[1]).toEqual([]);
    expect(when(state, { type: 'runStarted', run: 1, pid: 1, at: 0 })[1]).toEqual([]);
  });
});

describe('lifecycle: stopping', () => {
  it('drains a running job for what is left of its timeout, then stops it', () => {
    // Started at 1 s with a 60 s timeout; the signal at 21 s leaves 40 s.
    const [draining, effects] = when(given([...RUNNING, frame({ type: 'ack', ...REF, of: 'running' })]), { type: 'signal', signal: 'SIGTERM', at: at(21_000) });
    expect(without(effects, 'log')).toEqual([{ type: 'setTimer', timer: 'drain', ms: 40_000 }]);
    expect(sent(when(draining, { type: 'timer', timer: 'ready', at: 0 })[1])).toEqual([]);
    expect(without(when(draining, { type: 'timer', timer: 'drain', at: at(61_000) })[1], 'log')).toEqual([{ type: 'stopRun', reason: 'drain' }]);
    // Its end starts the report deadline.
    const [, ended] = when(draining, { type: 'runEnded', run: 1, end: { ...EXITED_0, stoppedFor: 'drain' } });
    expect(without(ended, 'log', 'clearTimer')).toEqual([
      { type: 'setTimer', timer: 'shutdown', ms: DEFAULT_TIMING.shutdownReportMs },
      { type: 'send', message: expect.objectContaining({ type: 'failed', error: expect.stringContaining('drain timeout') }) },
      { type: 'setTimer', timer: 'report', ms: DEFAULT_TIMING.reportRetryMs },
    ]);
  });

  it('drains for --drain-timeout-ms when given, and for the whole timeout when the command has not started', () => {
    const signal: AgentEvent = { type: 'signal', signal: 'SIGTERM', at: at(21_000) };
    expect(when(given(RUNNING, { ...CONFIG, drainTimeoutMs: 500 }), signal)[1]).toContainEqual({ type: 'setTimer', timer: 'drain', ms: 500 });
    expect(when(given(RUNNING.slice(0, -1)), signal)[1]).toContainEqual({ type: 'setTimer', timer: 'drain', ms: 60_000 });
  });

  it('with a report not yet acknowledged: exits 0 on the ack, 1 at the deadline', () => {
    const [stopping, effects] = when(given(REPORTED), { type: 'signal', signal: 'SIGTERM', at: 0 });
    expect(without(effects, 'log')).toEqual([{ type: 'setTimer', timer: 'shutdown', ms: DEFAULT_TIMING.shutdownReportMs }]);
    expect(when(stopping, frame({ type: 'ack', ...REF, of: 'completed' }))[1].at(-1)).toEqual({ type: 'exit', code: EXIT.ok, stopRun: false });
    const [, late] = when(stopping, { type: 'timer', timer: 'shutdown', at: 0 });
    expect(late).toEqual([
      { type: 'log', level: 'error', message: 'stopping without having delivered the job report', fields: { job: JOB.id } },
      { type: 'exit', code: EXIT.failed, stopRun: false },
    ]);
  });

  it('a second signal stops the job now; a third exits 1 at once, stopping what still runs', () => {
    const first = given([...RUNNING, { type: 'signal', signal: 'SIGTERM', at: 0 }]);
    const [second, stop] = when(first, { type: 'signal', signal: 'SIGTERM', at: 0 });
    expect(without(stop, 'log')).toEqual([{ type: 'stopRun', reason: 'drain' }]);
    const [exiting, exit] = when(second, { type: 'signal', signal: 'SIGTERM', at: 0 });
    expect(exit.at(-1)).toEqual({ type: 'exit', code: EXIT.failed, stopRun: true });
    // The stopped job's end is not reported; the exit already happened.
    const [, ended] = when(exiting, { type: 'runEnded', run: 1, end: { ...EXITED_0, stoppedFor: 'abandon', output: null } });
    expect(without(ended, 'log', 'clearTimer')).toEqual([]);
  });
});
