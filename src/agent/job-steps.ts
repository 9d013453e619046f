import type { RunEnd } from './job-run';
import { bareReport, reportFor } from './report';
import type { Turn } from './turn';
import type { JobPayload } from './wire';

/**
 * The lifecycle machine's steps for the held job: take it, say it runs and heartbeat it, report
 * its end until the server acknowledges the report, cancel it, and answer the server's errors
 * about it (stop it, give the report up, strip it, or send again soon).
 */

export function job(t: Turn, job: JobPayload): void {
  const { state } = t;
  state.readyOutstanding = false;
  const { held } = state;
  if (held !== null) {
    if (held.job.id === job.id && held.job.attempt === job.attempt) return;
    // Capacity 1: never two jobs. Failing it would end it for good (a failure is final); left
    // alone, the server gives the attempt up after its claim or heartbeat timeout and requeues it.
    return t.log('warn', 'the server pushed a job while this runner is busy; not taking it', { job: job.id, busyWith: held.job.id });
  }
  if (t.stopping) {
    return t.log('warn', 'a job arrived while stopping; not taking it (the server requeues it after its claim timeout)', { job: job.id });
  }
  const run = state.nextRun++;
  state.held = { run, job, phase: { name: 'running' }, startedAt: null, runningAcked: false, drainMs: null };
  const command = [...(job.entrypoint ?? []), ...job.cmd][0];
  t.log('info', 'job received', { job: job.id, attempt: job.attempt, image: job.image ?? undefined, command, timeoutS: job.timeout });
  t.do({ type: 'startRun', run, job });
}

export function runStarted(t: Turn, run: number, pid: number | undefined, at: number): void {
  const { held } = t.state;
  if (held?.run !== run) return;
  held.startedAt = at;
  t.log('info', 'job started', { job: held.job.id, pid });
  if (held.phase.name === 'running') t.sendRunning(held);
}

export function heartbeatDue(t: Turn): void {
  const { held } = t.state;
  if (held?.phase.name === 'running') t.send({ type: 'heartbeat', job: held.job.id, attempt: held.job.attempt });
}

export function runEnded(t: Turn, run: number, end: RunEnd): void {
  const { held } = t.state;
  if (held?.run !== run) return;
  t.clearTimer('drain');
  const { job } = held;
  switch (held.phase.name) {
    case 'canceling':
      t.log('info', 'job canceled; its processes are gone', { job: job.id });
      t.send({ type: 'canceled', job: job.id, attempt: job.attempt });
      return t.release();
    case 'abandoning':
      t.log('info', 'job stopped; not reported', { job: job.id });
      return t.release();
    case 'reporting':
      return; // a run ends once
    case 'running':
      break;
    default: {
      const _: never = held.phase;
      return _;
    }
  }
  const report = reportFor(job, end);
  held.phase = { name: 'reporting', report, limit: null, stripped: false, resend: 'unanswered' };
  if (end.kind === 'not-started') {
    t.log('warn', 'job could not start', { job: job.id, error: end.error });
  } else {
    t.log('info', 'job finished', {
      job: job.id,
      outcome: report.type,
      exitCode: end.exit.code,
      signal: end.exit.signal ?? undefined,
      durationMs: end.durationMs,
      error: report.type === 'failed' ? report.error : undefined,
      truncated: report.truncated || undefined,
    });
  }
  if (t.stopping) t.startReportDeadline();
  t.sendReport();
}

/** The `running` timer: `running` again after the server could not handle it. */
export function runningDue(t: Turn): void {
  // Also once the job finished: its report waits for this `running` to be acknowledged.
  const { held } = t.state;
  if (held !== null && t.awaitsRunningAck(held)) t.sendRunning(held);
}

/** The `report` timer: the report again, unanswered or asked for again. */
export function reportDue(t: Turn): void {
  const { held } = t.state;
  if (held?.phase.name !== 'reporting') return;
  if (held.phase.resend === 'unanswered') t.log('warn', 'no answer to the job report; sending it again', { job: held.job.id });
  t.sendReport();
}

export function ack(t: Turn, job: string, attempt: number, of: string): void {
  const held = t.heldJob(job, attempt);
  if (held === null) return;
  if (of === 'running') {
    held.runningAcked = true;
    if (held.phase.name === 'reporting') t.sendReport();
  } else if ((of === 'completed' || of === 'failed') && held.phase.name === 'reporting') {
    t.log('info', 'job reported', { job, outcome: of });
    t.release();
  }
}

export function cancel(t: Turn, job: string, attempt: number, reason: string): void {
  const held = t.heldJob(job, attempt);
  if (held === null) {
    // Nothing of it runs here (e.g. a cancel redelivered after a restart): acknowledge at once.
    t.log('info', 'cancel for a job not running here; acknowledging', { job, attempt, reason });
    t.send({ type: 'canceled', job, attempt });
    return;
  }
  switch (held.phase.name) {
    case 'canceling':
      return; // already stopping; `canceled` follows
    case 'running':
    case 'abandoning':
      held.phase = { name: 'canceling' };
      t.log('info', 'cancel: stopping the job', { job, reason });
      t.do({ type: 'stopRun', reason: 'cancel' });
      return;
    case 'reporting':
      // Canceled on the server meanwhile, which refuses the report and takes `canceled` as the
      // acknowledgement of its cancel: the report is dropped.
      t.log('info', 'cancel for a job that already ended; acknowledging', { job, reason });
      t.send({ type: 'canceled', job, attempt });
      return t.release();
    default: {
      const _: never = held.phase;
      return _;
    }
  }
}

export function error(t: Turn, code: string, message: string, job: string | undefined): void {
  const { state } = t;
  const { held } = state;
  if (job === undefined) {
    t.log('warn', 'the server answered with an error', { code, message });
    if (code !== 'rate_limited') return;
    // A dropped frame: which one is not said. Send again what may have been lost.
    if (state.readyOutstanding) {
      state.readyOutstanding = false;
      t.setTimer('ready', t.timing.readyRetryMs, t.timing.readyRetryMs);
    } else if (held !== null) t.retrySoon(held);
    return;
  }
  if (held === null || held.job.id !== job) return t.log('debug', 'error about a job not held here', { code, message, job });
  const { phase } = held;
  switch (code) {
    case 'invalid_transition':
    case 'not_found':
    case 'forbidden':
      if (phase.name === 'reporting') {
        t.log('warn', 'the server refused the job report: the job is already over there', { job, code, message });
        t.release();
      } else if (phase.name === 'running') {
        t.log('warn', 'the server no longer holds this job for this runner; stopping it', { job, code, message });
        held.phase = { name: 'abandoning' };
        t.do({ type: 'stopRun', reason: 'abandon' });
      }
      return;
    case 'bad_message':
      if (phase.name === 'reporting' && !phase.stripped) {
        t.log('warn', 'the server refused the job report as malformed; sending it without output', { job, message });
        held.phase = { ...phase, stripped: true, report: bareReport(phase.report) };
        t.sendReport();
      } else if (phase.name === 'reporting') {
        t.log('error', 'the server refused the job report twice; giving it up', { job, message });
        t.release();
      } else t.log('error', 'the server refused a message about the job', { job, code, message });
      return;
    default:
      // internal_error, unavailable, rate_limited...: the same again in a moment.
      t.log('warn', 'the server could not handle a message about the job; retrying', { job, code, message });
      t.retrySoon(held);
  }
}
