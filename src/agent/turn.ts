import { type AgentState, type AgentTiming, type Effect, EXIT, type HeldJob, type TimerName, jobRuns } from './agent-state';
import type { LogFields, LogLevel } from './log';
import { FRAME_MARGIN_BYTES, fitFrame } from './report';
import type { RunnerMessage } from './wire';

/**
 * One step of the lifecycle machine: a copy of the state that the step's handlers change, and
 * the effects they collect, plus what several handlers do (send the report, let the job go,
 * ask for work, exit). The held job is copied too; links and phases are replaced, never
 * changed in place, so the state the step started from is left as it was.
 */
export class Turn {
  readonly state: AgentState;
  readonly effects: Effect[] = [];

  constructor(previous: AgentState) {
    this.state = { ...previous, held: previous.held && { ...previous.held } };
  }

  get timing(): AgentTiming {
    return this.state.config.timing;
  }

  /** A signal came: no new work. */
  get stopping(): boolean {
    return this.state.signals > 0;
  }

  // --- effects -----------------------------------------------------------------------------

  do(effect: Effect): void {
    this.effects.push(effect);
  }

  /** Frames other than `hello` go only to a server that said `welcome`. */
  send(message: RunnerMessage): void {
    if (this.state.link.name === 'up') this.effects.push({ type: 'send', message });
  }

  log(level: LogLevel, message: string, fields?: LogFields): void {
    this.effects.push(fields === undefined ? { type: 'log', level, message } : { type: 'log', level, message, fields });
  }

  setTimer(timer: TimerName, ms: number, jitterMs?: number): void {
    this.effects.push(jitterMs === undefined ? { type: 'setTimer', timer, ms } : { type: 'setTimer', timer, ms, jitterMs });
  }

  clearTimer(...timers: TimerName[]): void {
    for (const timer of timers) this.effects.push({ type: 'clearTimer', timer });
  }

  // --- the held job ------------------------------------------------------------------------

  /** The held job, if it is this attempt. */
  heldJob(job: string, attempt: number): HeldJob | null {
    const { held } = this.state;
    return held !== null && held.job.id === job && held.job.attempt === attempt ? held : null;
  }

  /**
   * The server takes a report only of a job it knows started: until `running` is acknowledged
   * (it may have failed while the server's database was away), the report waits for that ack.
   */
  awaitsRunningAck(held: HeldJob): boolean {
    return held.startedAt !== null && !held.runningAcked && (held.phase.name === 'running' || held.phase.name === 'reporting');
  }

  sendRunning(held: HeldJob): void {
    this.send({ type: 'running', job: held.job.id, attempt: held.job.attempt });
  }

  /** The report, cut to the frame limit, and its retry timer; unless it must wait. */
  sendReport(): void {
    const { held } = this.state;
    if (held === null || held.phase.name !== 'reporting' || this.state.link.name !== 'up' || this.awaitsRunningAck(held)) return;
    const { phase } = held;
    const frame = fitFrame(phase.report, (phase.limit ?? this.state.maxMessageBytes) - FRAME_MARGIN_BYTES);
    if (frame.truncated && !phase.report.truncated) this.log('info', 'output cut to fit the server frame limit', { job: held.job.id });
    this.send(frame);
    held.phase = { ...phase, resend: 'unanswered' };
    this.setTimer('report', this.timing.reportRetryMs);
  }

  /** After the server could not handle the last message about the job: that message again, soon. */
  retrySoon(held: HeldJob): void {
    if (this.awaitsRunningAck(held)) this.setTimer('running', this.timing.retrySoonMs);
    else if (held.phase.name === 'reporting') {
      held.phase = { ...held.phase, resend: 'soon' };
      this.setTimer('report', this.timing.retrySoonMs);
    }
  }

  /** The held job is done with: report acknowledged, canceled or given up. */
  release(): void {
    this.state.held = null;
    this.clearTimer('report', 'running', 'drain');
    if (this.stopping) this.finish(EXIT.ok);
    else this.sendReady();
  }

  sendReady(): void {
    const { state } = this;
    if (state.link.name !== 'up' || state.held !== null || this.stopping || state.readyOutstanding) return;
    this.send({ type: 'ready' });
    state.readyOutstanding = true;
    this.log('debug', 'waiting for a job');
  }

  // --- stopping ----------------------------------------------------------------------------

  /** Stopping with a job that ended: how long its report may take to get through. */
  startReportDeadline(): void {
    if (this.state.reportDeadline) return;
    this.state.reportDeadline = true;
    this.setTimer('shutdown', this.timing.shutdownReportMs);
  }

  /** Exits with `code`: a job still running is stopped first, and reported to nobody. */
  finish(code: number): void {
    if (this.state.exitCode !== null) return;
    this.state.exitCode = code;
    const { held } = this.state;
    const stopRun = jobRuns(held);
    if (stopRun) {
      this.log('warn', 'stopping the running job before exiting; it is not reported', { job: held.job.id });
      // A cancel under way still ends in `canceled`.
      if (held.phase.name === 'running') held.phase = { name: 'abandoning' };
    }
    this.effects.push({ type: 'exit', code, stopRun });
  }
}
