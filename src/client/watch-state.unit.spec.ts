import type { EventEnvelope, Job } from './api';
import { type WatchState, applyEvent, applyJob, describeEvent, formatChange, formatStatusLine, formatSummary, initialWatchState, watchExitCode } from './watch-state';

const JOB = '01900000-0000-7000-8000-00000000000a';
const RUNNER = '01900000-0000-7000-8000-0000000000r1';
let position = 100;

function event(type: string, data: Record<string, unknown>, occurredAt: string): EventEnvelope {
  position += 1;
  return {
    id: `e${position}`,
    streamId: JOB,
    streamType: 'job',
    position: position - 100,
    globalPosition: position,
    type,
    schemaVersion: 1,
    data,
    metadata: { correlationId: 'c', causationId: null, actor: 'system' },
    occurredAt,
    hash: 'h',
    prevHash: 'p',
  };
}

const submitted = () => event('JobSubmitted', { spec: 'x86-8c', cmd: ['cargo', 'bench'], maxAttempts: 2, submittedAt: '2026-05-03T14:00:00Z' }, '2026-05-03T14:00:00Z');
const claimed = (attempt = 1) => event('JobClaimed', { runnerId: RUNNER, attempt, claimedAt: '2026-05-03T14:00:04Z' }, '2026-05-03T14:00:04Z');
const started = () => event('JobStarted', { runnerId: RUNNER, attempt: 1, startedAt: '2026-05-03T14:00:05Z' }, '2026-05-03T14:00:05Z');

function fold(events: EventEnvelope[], state: WatchState = initialWatchState()) {
  const changes = [];
  for (const e of events) {
    const result = applyEvent(state, e);
    state = result.state;
    if (result.change) changes.push(result.change);
  }
  return { state, changes };
}

const job = (over: Partial<Job> = {}): Job => ({
  id: JOB,
  project: 'p',
  org: 'o',
  spec: 'x86-8c',
  status: 'pending',
  priority: 200,
  attempt: 1,
  maxAttempts: 2,
  runner: null,
  createdAt: '2026-05-03T14:00:00Z',
  claimedAt: null,
  startedAt: null,
  finishedAt: null,
  exitCode: null,
  failure: null,
  billedMinutes: null,
  ...over,
});

describe('watching a job: events fold into its state, each a line when piped', () => {
  it('pending -> claimed -> running -> completed', () => {
    const { state, changes } = fold([
      submitted(),
      claimed(),
      started(),
      event('JobCompleted', { runnerId: RUNNER, attempt: 1, exitCode: 0, finishedAt: '2026-05-03T14:03:17Z' }, '2026-05-03T14:03:17Z'),
    ]);
    expect(changes.map((c) => formatChange(c, 0))).toEqual([
      '2026-05-03 14:00:00  pending    submitted on spec x86-8c: cargo bench',
      `2026-05-03 14:00:04  claimed    claimed by runner ${RUNNER} (attempt 1 of 2)`,
      `2026-05-03 14:00:05  running    running on runner ${RUNNER}`,
      '2026-05-03 14:03:17  completed  exit 0',
    ]);
    expect(state).toMatchObject({ status: 'completed', runner: RUNNER, startedAt: '2026-05-03T14:00:05Z', lastPosition: position });
  });

  it('an event seen already (a repeat after a reconnect) changes nothing', () => {
    const first = submitted();
    const { state } = fold([first, claimed()]);
    expect(applyEvent(state, first)).toEqual({ state, change: null });
  });

  it('a requeued attempt goes back to pending with the next attempt and no runner', () => {
    const { state, changes } = fold([
      submitted(),
      claimed(),
      event('JobRequeued', { previousRunnerId: RUNNER, previousAttempt: 1, attempt: 2, reason: 'claim_timeout' }, '2026-05-03T14:01:04Z'),
    ]);
    expect(state).toMatchObject({ status: 'pending', attempt: 2, runner: null, claimedAt: null });
    expect(changes[2]).toMatchObject({ status: 'pending', text: 'requeued after claim_timeout (attempt 2 of 2)' });
  });

  it('failures and cancels say why', () => {
    expect(describeEvent({ type: 'JobFailed', data: { failure: 'nonzero_exit', exitCode: 2, error: 'exit status 2' } })).toEqual({
      status: 'failed',
      text: 'nonzero_exit, exit 2: exit status 2',
    });
    expect(describeEvent({ type: 'JobFailed', data: { failure: 'heartbeat_timeout', exitCode: null, error: null } }).text).toBe('heartbeat_timeout');
    expect(describeEvent({ type: 'JobCanceled', data: { reason: 'canceled by key:k', failure: null } })).toEqual({ status: 'canceled', text: 'canceled by key:k' });
    expect(describeEvent({ type: 'JobCanceled', data: { reason: 'ran past its timeout', failure: 'job_timeout' } }).text).toBe('ran past its timeout (job_timeout)');
  });

  it('an event type it does not know leaves the status as it is', () => {
    const { state, changes } = fold([submitted(), event('JobPrioritized', {}, '2026-05-03T14:00:01Z')]);
    expect(state.status).toBe('pending');
    expect(changes[1]).toMatchObject({ status: 'pending', text: 'JobPrioritized' });
  });
});

describe('the queue while pending', () => {
  const now = new Date('2026-05-03T14:00:10Z');
  const queue = { position: 3, ahead: 2, eta: '2026-05-03T14:05:00Z', waitingFor: { reason: 'runner_busy', ahead: 2 } };

  it('a new place or reason is a change; a new estimate alone is not', () => {
    const { state } = fold([submitted()]);
    const first = applyJob(state, job({ queue }), now);
    expect(first.change).toMatchObject({ status: 'pending', text: expect.stringContaining('position 3 (2 ahead)') });
    const sameButLater = applyJob(first.state, job({ queue: { ...queue, eta: '2026-05-03T14:05:30Z' } }), now);
    expect(sameButLater.change).toBeNull();
    const moved = applyJob(sameButLater.state, job({ queue: { ...queue, position: 2, ahead: 1 } }), now);
    expect(moved.change).toMatchObject({ text: expect.stringContaining('position 2 (1 ahead)') });
  });

  it('is ignored once the events say the job left the queue', () => {
    const { state } = fold([submitted(), claimed()]);
    expect(applyJob(state, job({ queue }), now)).toMatchObject({ change: null, state: { queue: null } });
  });
});

describe('the terminal status line', () => {
  const now = new Date('2026-05-03T14:01:10Z');

  it('pending: how long, place, eta, what it waits for', () => {
    let { state } = fold([submitted()]);
    state = applyJob(state, job({ queue: { position: 2, ahead: 1, eta: '2026-05-03T14:03:20Z', waitingFor: { reason: 'runner_busy', ahead: 1 } } }), now).state;
    expect(formatStatusLine(state, now)).toBe('pending 1m10s · position 2 (1 ahead) · eta in 2m10s · waiting for busy runners (1 ahead)');
    // The estimate has passed: it should start now.
    expect(formatStatusLine(state, new Date('2026-05-03T14:04:00Z'))).toContain('· eta now ·');
  });

  it('running: for how long, on which runner; and a reconnect in progress', () => {
    const { state } = fold([submitted(), claimed(), started()]);
    expect(formatStatusLine(state, now)).toBe(`running 1m05s · runner ${RUNNER}`);
    expect(formatStatusLine(state, now, 'connection refused (ECONNREFUSED)')).toBe(`running 1m05s · runner ${RUNNER} · reconnecting: connection refused (ECONNREFUSED)`);
  });

  it('before anything is known', () => {
    expect(formatStatusLine(initialWatchState(), now)).toBe('connecting');
  });
});

describe('the end of a watch', () => {
  const done = job({ status: 'completed', runner: RUNNER, claimedAt: '2026-05-03T14:00:04Z', startedAt: '2026-05-03T14:00:05Z', finishedAt: '2026-05-03T14:03:17Z', exitCode: 0, billedMinutes: 4 });

  it('summarizes the outcome, with a mark on a terminal only', () => {
    expect(formatSummary(done, false)).toBe('completed, exit 0, ran 3m12s, waited 4s, billed 4 min');
    expect(formatSummary(done, true)).toBe('✔ completed · exit 0 · ran 3m12s · waited 4s · billed 4 min');
    expect(formatSummary({ ...done, status: 'failed', failure: 'nonzero_exit', exitCode: 1 }, true)).toMatch(/^✖ failed · nonzero_exit · exit 1/);
  });

  it('exits 0 for completed, 1 for failed or canceled', () => {
    expect(watchExitCode('completed')).toBe(0);
    expect(watchExitCode('failed')).toBe(1);
    expect(watchExitCode('canceled')).toBe(1);
  });
});
