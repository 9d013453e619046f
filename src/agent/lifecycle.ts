import { type AgentEvent, type AgentState, type Effect, EXIT, type TimerName, jobRuns } from './agent-state';
import { connect, disconnected, opened, watchdog, welcomeTimedOut, welcomed } from './connection-steps';
import { ack, cancel, error, heartbeatDue, job, reportDue, runEnded, runStarted, runningDue } from './job-steps';
import { MAX_TIMER_MS } from './job-run';
import { Turn } from './turn';
import type { ServerFrame } from './wire';

export * from './agent-state';

/**
 * The runner agent's life as a pure machine: `step(state, event)` returns the next state and the
 * effects to carry out (send a frame, start or stop the job's run, set a timer, log a line,
 * exit), and carries out none. `RunnerAgent` (agent.ts) is its shell: it feeds it the socket's
 * frames, the run's start and end, signals and timers, and does what it returns. No I/O and no
 * clock: the events that need the time carry it as `at`.
 *
 * The steps live by concern: the connection in connection-steps.ts, the held job in
 * job-steps.ts, stopping here; turn.ts has what they share.
 */
export function step(state: AgentState, event: AgentEvent): [AgentState, Effect[]] {
  const t = new Turn(state);
  switch (event.type) {
    case 'start':
      connect(t, event.at);
      break;
    case 'opened':
      opened(t);
      break;
    case 'frame':
      frame(t, event.frame);
      break;
    case 'heard':
      t.state.lastHeard = event.at;
      break;
    case 'disconnected':
      disconnected(t, event.ending);
      break;
    case 'runStarted':
      runStarted(t, event.run, event.pid, event.at);
      break;
    case 'runEnded':
      runEnded(t, event.run, event.end);
      break;
    case 'signal':
      signal(t, event.signal, event.at);
      break;
    case 'timer':
      timer(t, event.timer, event.at);
      break;
    case 'crashed':
      t.log('error', 'agent failed', { error: event.error });
      t.finish(EXIT.failed);
      break;
    default: {
      const _: never = event;
      return _;
    }
  }
  return [t.state, t.effects];
}

function frame(t: Turn, frame: ServerFrame): void {
  switch (frame.type) {
    case 'welcome':
      return welcomed(t, frame);
    case 'job':
      return job(t, frame.job);
    case 'cancel':
      return cancel(t, frame.job, frame.attempt, frame.reason);
    case 'ack':
      return ack(t, frame.job, frame.attempt, frame.of);
    case 'error':
      return error(t, frame.code, frame.message, frame.job);
    default: {
      const _: never = frame;
      return _;
    }
  }
}

function timer(t: Turn, timer: TimerName, at: number): void {
  switch (timer) {
    case 'welcome':
      return welcomeTimedOut(t);
    case 'heartbeat':
      return heartbeatDue(t);
    case 'watchdog':
      return watchdog(t, at);
    case 'ready':
      return t.sendReady();
    case 'running':
      return runningDue(t);
    case 'report':
      return reportDue(t);
    case 'drain':
      return drainDue(t);
    case 'shutdown':
      t.log('error', 'stopping without having delivered the job report', { job: t.state.held?.job.id });
      return t.finish(EXIT.failed);
    case 'reconnect':
      return connect(t, at);
    default: {
      const _: never = timer;
      return _;
    }
  }
}

/** SIGTERM/SIGINT: no new work; the running job may finish (drain); a second signal stops it, a third exits at once. */
function signal(t: Turn, signal: string, at: number): void {
  const signals = ++t.state.signals;
  const { held } = t.state;
  if (signals >= 3) {
    t.log('warn', 'third signal: exiting now', { signal });
    return t.finish(EXIT.failed);
  }
  if (signals === 2) {
    t.log('warn', 'second signal: stopping the job now', { signal, job: held?.job.id });
    if (jobRuns(held)) t.do({ type: 'stopRun', reason: 'drain' });
    return;
  }
  if (held === null) {
    t.log('info', 'stopping', { signal });
    return t.finish(EXIT.ok);
  }
  if (held.phase.name === 'reporting') {
    t.log('info', 'stopping once the job report is delivered', { signal, job: held.job.id });
    return t.startReportDeadline();
  }
  // Unless --drain-timeout-ms says otherwise, as long as the job's own timeout lets it run.
  const timeoutMs = held.job.timeout * 1000;
  const drainMs = t.state.config.drainTimeoutMs ?? (held.startedAt === null ? timeoutMs : Math.max(0, timeoutMs - (at - held.startedAt)));
  held.drainMs = drainMs;
  t.log('info', 'stopping: taking no new jobs; letting the running job finish', { signal, job: held.job.id, drainMs });
  t.setTimer('drain', Math.min(drainMs, MAX_TIMER_MS));
}

function drainDue(t: Turn): void {
  const { held } = t.state;
  if (!jobRuns(held)) return;
  t.log('warn', 'drain timeout: stopping the job', { job: held.job.id, drainMs: held.drainMs ?? undefined });
  t.do({ type: 'stopRun', reason: 'drain' });
}
