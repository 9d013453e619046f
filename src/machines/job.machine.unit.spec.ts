import { InvalidTransitionError } from '../common/errors';
import {
  JOB_EVENT_TYPES,
  PLAN_PRIORITY,
  type JobEvent,
  type JobOutputSummary,
  type JobSubmittedData,
} from '../events/job-events';
import {
  decide,
  evolve,
  fold,
  snapshotOf,
  type JobCommand,
  type JobCommandType,
  type JobState,
} from './job.machine';

const JOB_ID = '01940000-0000-7000-8000-000000000001';
const A = '01940000-0000-7000-8000-0000000000aa';
const B = '01940000-0000-7000-8000-0000000000bb';

/** The n-th second of the test day. */
const t = (n: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, n)).toISOString();

const job: Omit<JobSubmittedData, 'submittedAt'> = {
  jobId: JOB_ID,
  orgId: '01940000-0000-7000-8000-0000000000c1',
  projectId: '01940000-0000-7000-8000-0000000000c2',
  spec: 'x86-large',
  specId: '01940000-0000-7000-8000-0000000000c3',
  plan: 'team',
  priority: 200,
  image: `registry.example/bench@sha256:${'a'.repeat(64)}`,
  cmd: ['./bench', '--quick'],
  entrypoint: null,
  env: { MODE: 'ci' },
  timeout: 600,
  filePaths: ['/out/result.json'],
  maxAttempts: 3,
  sourceIp: null,
  idempotency: null,
};

const output: JobOutputSummary = {
  stdout: { bytes: 12, sha256: 'b'.repeat(64) },
  stderr: null,
  files: [{ path: '/out/result.json', bytes: 40, sha256: 'c'.repeat(64) }],
  truncated: false,
};

// Events, with the defaults of the happy path: runner A, attempt 1.
const ev = {
  submitted: (maxAttempts = 3): JobEvent => ({
    type: 'JobSubmitted',
    schemaVersion: 2,
    data: { ...job, maxAttempts, submittedAt: t(0) },
  }),
  claimed: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobClaimed',
    schemaVersion: 1,
    data: { runnerId, attempt, claimedAt: t(10) },
  }),
  started: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobStarted',
    schemaVersion: 1,
    data: { runnerId, attempt, startedAt: t(20), fingerprint: { cores: 8 } },
  }),
  completed: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobCompleted',
    schemaVersion: 1,
    data: { runnerId, attempt, exitCode: 0, finishedAt: t(90), output },
  }),
  failed: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobFailed',
    schemaVersion: 1,
    data: {
      runnerId,
      attempt,
      failure: 'nonzero_exit',
      exitCode: 1,
      error: 'boom',
      finishedAt: t(90),
      output: null,
    },
  }),
  canceled: (runnerId: string | null = A, attempt = 1): JobEvent => ({
    type: 'JobCanceled',
    schemaVersion: 1,
    data: { attempt, runnerId, failure: null, reason: 'user', canceledAt: t(60) },
  }),
  cancelAcknowledged: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobCancelAcknowledged',
    schemaVersion: 1,
    data: { runnerId, attempt, acknowledgedAt: t(61) },
  }),
  lost: (runnerId = A, attempt = 1): JobEvent => ({
    type: 'JobFailed',
    schemaVersion: 1,
    data: {
      runnerId,
      attempt,
      failure: 'claim_timeout',
      exitCode: null,
      error: null,
      finishedAt: t(70),
      output: null,
    },
  }),
  requeued: (previousRunnerId = A, previousAttempt = 1): JobEvent => ({
    type: 'JobRequeued',
    schemaVersion: 1,
    data: {
      previousRunnerId,
      previousAttempt,
      attempt: previousAttempt + 1,
      reason: 'claim_timeout',
      requeuedAt: t(70),
    },
  }),
};

const AT = t(100);

// Commands, same defaults. `at` is always AT, so expected events can name it.
const cmd = {
  submit: (): JobCommand => ({ type: 'submit', at: AT, job }),
  claim: (runnerId = A): JobCommand => ({ type: 'claim', at: AT, runnerId }),
  start: (runnerId = A, attempt = 1): JobCommand => ({ type: 'start', at: AT, runnerId, attempt }),
  heartbeat: (runnerId = A, attempt = 1): JobCommand => ({ type: 'heartbeat', at: AT, runnerId, attempt }),
  complete: (runnerId = A, attempt = 1): JobCommand => ({
    type: 'complete',
    at: AT,
    runnerId,
    attempt,
    exitCode: 0,
  }),
  fail: (runnerId = A, attempt = 1): JobCommand => ({
    type: 'fail',
    at: AT,
    runnerId,
    attempt,
    error: 'boom',
  }),
  cancel: (): JobCommand => ({ type: 'cancel', at: AT, reason: 'no longer needed' }),
  claimTimeout: (attempt = 1): JobCommand => ({ type: 'claimTimeout', at: AT, attempt }),
  heartbeatTimeout: (attempt = 1): JobCommand => ({ type: 'heartbeatTimeout', at: AT, attempt }),
  jobTimeout: (attempt = 1): JobCommand => ({ type: 'jobTimeout', at: AT, attempt }),
  runnerLost: (runnerId = A, attempt = 1): JobCommand => ({ type: 'runnerLost', at: AT, runnerId, attempt }),
  acknowledgeCancel: (runnerId = A, attempt = 1): JobCommand => ({
    type: 'acknowledgeCancel',
    at: AT,
    runnerId,
    attempt,
  }),
} satisfies Record<JobCommandType, (...args: never[]) => JobCommand>;

/** given(...events).when(command).then(...events) | .thenRefused() */
function given(...history: JobEvent[]) {
  const state = fold(history);
  return {
    when(command: JobCommand) {
      return {
        then(...expected: JobEvent[]) {
          expect(decide(state, command)).toEqual(expected);
        },
        thenRefused(message?: string | RegExp) {
          let error: unknown;
          try {
            decide(state, command);
          } catch (caught) {
            error = caught;
          }
          expect(error).toBeInstanceOf(InvalidTransitionError);
          const refusal = error as InvalidTransitionError;
          expect(refusal.code).toBe('invalid_transition');
          expect(refusal.details).toEqual({ state: state?.status ?? 'new', command: command.type });
          if (message !== undefined) expect(refusal.message).toMatch(message);
        },
      };
    },
  };
}

// Streams that end in each state, held (where held) by runner A at attempt 1.
const pending = [ev.submitted()];
const claimed = [...pending, ev.claimed()];
const running = [...claimed, ev.started()];
const completed = [...running, ev.completed()];
const failed = [...running, ev.failed()];
const canceledWhileRunning = [...running, ev.canceled(A)];
// Attempt 1 was lost by A; B now holds attempt 2.
const reclaimed = [...claimed, ev.requeued(A, 1), ev.claimed(B, 2)];

describe('job machine', () => {
  describe('new', () => {
    it('submit -> pending: JobSubmitted with the job and its time', () => {
      given()
        .when(cmd.submit())
        .then({ type: 'JobSubmitted', schemaVersion: 2, data: { ...job, submittedAt: AT } });
    });
  });

  describe('pending', () => {
    it('claim -> claimed: JobClaimed at the current attempt', () => {
      given(...pending)
        .when(cmd.claim(B))
        .then({ type: 'JobClaimed', schemaVersion: 1, data: { runnerId: B, attempt: 1, claimedAt: AT } });
    });

    it('claim after a requeue claims the next attempt', () => {
      given(...claimed, ev.requeued(A, 1))
        .when(cmd.claim(B))
        .then({ type: 'JobClaimed', schemaVersion: 1, data: { runnerId: B, attempt: 2, claimedAt: AT } });
    });

    it('cancel -> canceled, with no runner to tell', () => {
      given(...pending)
        .when(cmd.cancel())
        .then({
          type: 'JobCanceled',
          schemaVersion: 1,
          data: { attempt: 1, runnerId: null, failure: null, reason: 'no longer needed', canceledAt: AT },
        });
    });
  });

  describe('claimed', () => {
    it('start by the holder -> running: JobStarted', () => {
      const fingerprint = { cpuModel: 'EPYC 9654', cores: 96 };
      given(...claimed)
        .when({ type: 'start', at: AT, runnerId: A, attempt: 1, fingerprint })
        .then({
          type: 'JobStarted',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, startedAt: AT, fingerprint },
        });
    });

    it('start without a fingerprint records null', () => {
      given(...claimed)
        .when(cmd.start())
        .then({
          type: 'JobStarted',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, startedAt: AT, fingerprint: null },
        });
    });

    it('heartbeat by the holder is accepted and records nothing', () => {
      given(...claimed).when(cmd.heartbeat()).then();
    });

    it('fail by the holder without an exit code -> failed: runner_error', () => {
      given(...claimed)
        .when(cmd.fail())
        .then({
          type: 'JobFailed',
          schemaVersion: 1,
          data: {
            runnerId: A,
            attempt: 1,
            failure: 'runner_error',
            exitCode: null,
            error: 'boom',
            finishedAt: AT,
            output: null,
          },
        });
    });

    it('cancel -> canceled, naming the holder to tell', () => {
      given(...claimed)
        .when(cmd.cancel())
        .then({
          type: 'JobCanceled',
          schemaVersion: 1,
          data: { attempt: 1, runnerId: A, failure: null, reason: 'no longer needed', canceledAt: AT },
        });
    });

    describe.each([
      ['claimTimeout', 'claim_timeout', cmd.claimTimeout],
      ['heartbeatTimeout', 'heartbeat_timeout', cmd.heartbeatTimeout],
      // The holder said hello again without it: lost like a timeout, at once.
      ['runnerLost', 'runner_lost', (attempt: number) => cmd.runnerLost(attempt === 2 ? B : A, attempt)],
    ] as const)('%s', (_, reason, timeout) => {
      it('while attempt < maxAttempts -> pending: JobRequeued at the next attempt', () => {
        given(...claimed)
          .when(timeout(1))
          .then({
            type: 'JobRequeued',
            schemaVersion: 1,
            data: { previousRunnerId: A, previousAttempt: 1, attempt: 2, reason, requeuedAt: AT },
          });
      });

      it('at attempt == maxAttempts -> failed', () => {
        given(ev.submitted(2), ev.claimed(A, 1), ev.requeued(A, 1), ev.claimed(B, 2))
          .when(timeout(2))
          .then({
            type: 'JobFailed',
            schemaVersion: 1,
            data: {
              runnerId: B,
              attempt: 2,
              failure: reason,
              exitCode: null,
              error: null,
              finishedAt: AT,
              output: null,
            },
          });
      });

      it('with maxAttempts 1 -> failed at once', () => {
        given(ev.submitted(1), ev.claimed(A, 1))
          .when(timeout(1))
          .then({
            type: 'JobFailed',
            schemaVersion: 1,
            data: {
              runnerId: A,
              attempt: 1,
              failure: reason,
              exitCode: null,
              error: null,
              finishedAt: AT,
              output: null,
            },
          });
      });

      it('for a stale attempt is refused', () => {
        given(...reclaimed).when(timeout(1)).thenRefused('attempt 1 is not the current attempt 2');
      });

      it('for a future attempt is refused', () => {
        given(...claimed).when(timeout(2)).thenRefused();
      });
    });
  });

  describe('running', () => {
    it('start again by the holder (a reconnecting runner) is accepted and records nothing', () => {
      given(...running).when(cmd.start()).then();
    });

    it('heartbeat by the holder is accepted and records nothing', () => {
      given(...running).when(cmd.heartbeat()).then();
    });

    it('complete by the holder -> completed: JobCompleted', () => {
      given(...running)
        .when({ type: 'complete', at: AT, runnerId: A, attempt: 1, exitCode: 0, output })
        .then({
          type: 'JobCompleted',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, exitCode: 0, finishedAt: AT, output },
        });
    });

    it('complete without output records null', () => {
      given(...running)
        .when(cmd.complete())
        .then({
          type: 'JobCompleted',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, exitCode: 0, finishedAt: AT, output: null },
        });
    });

    it('fail with a non-zero exit code -> failed: nonzero_exit', () => {
      given(...running)
        .when({ type: 'fail', at: AT, runnerId: A, attempt: 1, error: 'exit 2', exitCode: 2, output })
        .then({
          type: 'JobFailed',
          schemaVersion: 1,
          data: {
            runnerId: A,
            attempt: 1,
            failure: 'nonzero_exit',
            exitCode: 2,
            error: 'exit 2',
            finishedAt: AT,
            output,
          },
        });
    });

    it('fail with exit code 0 is a runner error, not a non-zero exit', () => {
      given(...running)
        .when({ type: 'fail', at: AT, runnerId: A, attempt: 1, error: 'upload failed', exitCode: 0 })
        .then({
          type: 'JobFailed',
          schemaVersion: 1,
          data: {
            runnerId: A,
            attempt: 1,
            failure: 'runner_error',
            exitCode: 0,
            error: 'upload failed',
            finishedAt: AT,
            output: null,
          },
        });
    });

    it('cancel -> canceled, naming the holder to tell', () => {
      given(...running)
        .when(cmd.cancel())
        .then({
          type: 'JobCanceled',
          schemaVersion: 1,
          data: { attempt: 1, runnerId: A, failure: null, reason: 'no longer needed', canceledAt: AT },
        });
    });

    it('heartbeatTimeout -> failed, even with attempts left: a job that ran is not retried', () => {
      given(...running)
        .when(cmd.heartbeatTimeout(1))
        .then({
          type: 'JobFailed',
          schemaVersion: 1,
          data: {
            runnerId: A,
            attempt: 1,
            failure: 'heartbeat_timeout',
            exitCode: null,
            error: null,
            finishedAt: AT,
            output: null,
          },
        });
    });

    it('runnerLost -> failed, even with attempts left: a job that ran is not retried', () => {
      given(...running)
        .when(cmd.runnerLost(A, 1))
        .then({
          type: 'JobFailed',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, failure: 'runner_lost', exitCode: null, error: null, finishedAt: AT, output: null },
        });
    });

    it('runnerLost from a runner that does not hold the job is refused', () => {
      given(...running).when(cmd.runnerLost(B, 1)).thenRefused(/runner .* does not hold it/);
      given(...claimed).when(cmd.runnerLost(B, 1)).thenRefused(/runner .* does not hold it/);
    });

    it('jobTimeout -> canceled: job_timeout', () => {
      given(...running)
        .when(cmd.jobTimeout(1))
        .then({
          type: 'JobCanceled',
          schemaVersion: 1,
          data: { attempt: 1, runnerId: A, failure: 'job_timeout', reason: 'job_timeout', canceledAt: AT },
        });
    });

    it.each([
      ['heartbeatTimeout', cmd.heartbeatTimeout],
      ['jobTimeout', cmd.jobTimeout],
    ] as const)('%s for a stale attempt is refused', (_, timeout) => {
      given(...reclaimed, ev.started(B, 2))
        .when(timeout(1))
        .thenRefused();
    });
  });

  describe('fencing: a runner acts only on the attempt it holds', () => {
    const runningAttempt2 = [...reclaimed, ev.started(B, 2)];
    describe.each([
      ['claimed', reclaimed],
      ['running', runningAttempt2],
    ] as const)('%s', (_, history) => {
      it.each([
        ['start', cmd.start],
        ['heartbeat', cmd.heartbeat],
        ['complete', cmd.complete],
        ['fail', cmd.fail],
      ] as const)('%s by another runner, or for a stale or future attempt, is refused', (__, command) => {
        given(...history).when(command(A, 2)).thenRefused(`runner ${A} does not hold it`);
        given(...history).when(command(B, 1)).thenRefused('attempt 1 is not the current attempt 2');
        given(...history).when(command(A, 1)).thenRefused();
        given(...history).when(command(B, 3)).thenRefused();
      });
    });

    it('the holder of the current attempt is accepted', () => {
      given(...reclaimed).when(cmd.heartbeat(B, 2)).then();
      given(...reclaimed, ev.started(B, 2)).when(cmd.heartbeat(B, 2)).then();
    });
  });

  describe('canceled', () => {
    it('acknowledgeCancel by the runner that held it: JobCancelAcknowledged', () => {
      given(...canceledWhileRunning)
        .when(cmd.acknowledgeCancel(A, 1))
        .then({
          type: 'JobCancelAcknowledged',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, acknowledgedAt: AT },
        });
    });

    it('acknowledgeCancel of a job canceled while claimed', () => {
      given(...claimed, ev.canceled(A))
        .when(cmd.acknowledgeCancel(A, 1))
        .then({
          type: 'JobCancelAcknowledged',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, acknowledgedAt: AT },
        });
    });

    it('acknowledgeCancel after a job_timeout cancel', () => {
      const timedOut: JobEvent = {
        type: 'JobCanceled',
        schemaVersion: 1,
        data: { attempt: 1, runnerId: A, failure: 'job_timeout', reason: 'job_timeout', canceledAt: t(60) },
      };
      given(...running, timedOut)
        .when(cmd.acknowledgeCancel(A, 1))
        .then({
          type: 'JobCancelAcknowledged',
          schemaVersion: 1,
          data: { runnerId: A, attempt: 1, acknowledgedAt: AT },
        });
    });

    it('a second acknowledgement is refused', () => {
      given(...canceledWhileRunning, ev.cancelAcknowledged()).when(cmd.acknowledgeCancel(A, 1)).thenRefused();
    });

    it('acknowledgement by another runner or for another attempt is refused', () => {
      given(...canceledWhileRunning)
        .when(cmd.acknowledgeCancel(B, 1))
        .thenRefused(`runner ${B} does not hold it`);
      given(...canceledWhileRunning)
        .when(cmd.acknowledgeCancel(A, 2))
        .thenRefused('attempt 2 is not the current attempt 1');
    });

    it('a job canceled while pending had no runner: any acknowledgement is refused', () => {
      given(...pending, ev.canceled(null)).when(cmd.acknowledgeCancel(A, 1)).thenRefused();
      // Requeued first: attempt 1's runner no longer held the job when it was canceled.
      const canceledAfterRequeue = [...claimed, ev.requeued(A, 1), ev.canceled(null, 2)];
      given(...canceledAfterRequeue).when(cmd.acknowledgeCancel(A, 1)).thenRefused();
      given(...canceledAfterRequeue).when(cmd.acknowledgeCancel(A, 2)).thenRefused();
    });
  });

  describe('each state allows its commands and refuses every other', () => {
    // Each command as the holder (A, attempt 1) would send it, so that only the state refuses it.
    const everyCommand = Object.values(cmd).map((make) => make());
    const table: [string, JobEvent[], JobCommandType[]][] = [
      ['new', [], ['submit']],
      ['pending', pending, ['claim', 'cancel']],
      ['claimed', claimed, ['start', 'heartbeat', 'fail', 'cancel', 'claimTimeout', 'heartbeatTimeout', 'runnerLost']],
      [
        'running',
        running,
        ['start', 'heartbeat', 'complete', 'fail', 'cancel', 'heartbeatTimeout', 'runnerLost', 'jobTimeout'],
      ],
      ['completed', completed, []],
      ['failed', failed, []],
      ['failed (claim timed out)', [ev.submitted(1), ev.claimed(), ev.lost()], []],
      ['canceled, unacknowledged', canceledWhileRunning, ['acknowledgeCancel']],
      ['canceled, acknowledged', [...canceledWhileRunning, ev.cancelAcknowledged()], []],
      ['canceled while pending', [...pending, ev.canceled(null)], []],
    ];

    const cases = table.flatMap(([name, history, allowed]) =>
      everyCommand.map(
        (command) => [name, command.type, history, command, allowed.includes(command.type)] as const,
      ),
    );

    it.each(cases.filter(([, , , , allowed]) => !allowed))('%s refuses %s', (_, type, history, command) => {
      given(...history)
        .when(command)
        .thenRefused(`cannot ${type} a job that is ${fold(history)?.status ?? 'not submitted'}`);
    });

    it.each(cases.filter(([, , , , allowed]) => allowed))('%s accepts %s', (_, __, history, command) => {
      expect(() => decide(fold(history), command)).not.toThrow();
    });
  });

  it('the refusal names the command and the state', () => {
    given(...running).when(cmd.claim()).thenRefused(/^cannot claim a job that is running$/);
    given().when(cmd.claim()).thenRefused(/^cannot claim a job that is not submitted$/);
  });
});

describe('evolve / fold', () => {
  const submittedState: JobState = {
    ...job,
    status: 'pending',
    attempt: 1,
    runnerId: null,
    createdAt: t(0),
    claimedAt: null,
    startedAt: null,
    finishedAt: null,
    exitCode: null,
    failure: null,
    error: null,
    cancelAcknowledged: false,
    fingerprint: null,
    output: null,
    version: 1,
  };

  it('folds nothing to null', () => {
    expect(fold([])).toBeNull();
  });

  it('folds a submission to a pending job at attempt 1', () => {
    expect(fold(pending)).toEqual(submittedState);
  });

  it('folds a completed run', () => {
    expect(fold(completed)).toEqual({
      ...submittedState,
      status: 'completed',
      runnerId: A,
      claimedAt: t(10),
      startedAt: t(20),
      finishedAt: t(90),
      exitCode: 0,
      fingerprint: { cores: 8 },
      output,
      version: 4,
    });
  });

  it('a requeue clears the holder and its times and moves to the next attempt', () => {
    expect(fold([...claimed, ev.requeued(A, 1)])).toEqual({ ...submittedState, attempt: 2, version: 3 });
  });

  it('a failure keeps the holder for the record', () => {
    expect(fold(failed)).toMatchObject({
      status: 'failed',
      runnerId: A,
      failure: 'nonzero_exit',
      exitCode: 1,
      error: 'boom',
      finishedAt: t(90),
      version: 4,
    });
  });

  it('a cancel keeps the holder, finishes the job, and records the acknowledgement', () => {
    expect(fold(canceledWhileRunning)).toMatchObject({
      status: 'canceled',
      runnerId: A,
      failure: null,
      finishedAt: t(60),
      cancelAcknowledged: false,
      version: 4,
    });
    expect(fold([...canceledWhileRunning, ev.cancelAcknowledged()])).toMatchObject({
      status: 'canceled',
      cancelAcknowledged: true,
      version: 5,
    });
  });

  it('refuses a stream that does not start with JobSubmitted, or submits twice', () => {
    expect(() => evolve(null, ev.claimed())).toThrow('JobClaimed before JobSubmitted');
    expect(() => fold([ev.submitted(), ev.submitted()])).toThrow(/already exists/);
  });

  it('snapshotOf puts the machine in the folded status', () => {
    expect(snapshotOf(null).value).toBe('new');
    expect(snapshotOf(fold(running)).value).toBe('running');
    expect(snapshotOf(fold(completed)).status).toBe('done');
    expect(snapshotOf(fold(running)).context.job).toEqual(fold(running));
  });
});

describe('job events', () => {
  it('lists every event type', () => {
    expect(JOB_EVENT_TYPES).toEqual([
      'JobSubmitted',
      'JobClaimed',
      'JobStarted',
      'JobCompleted',
      'JobFailed',
      'JobCanceled',
      'JobCancelAcknowledged',
      'JobRequeued',
    ]);
  });

  it('ranks plans', () => {
    expect(PLAN_PRIORITY).toEqual({ enterprise: 300, team: 200, free: 100, unclaimed: 0 });
  });
});
