import { and, assign, setup, transition, type SnapshotFrom } from 'xstate';
import { InvalidTransitionError } from '../common/errors';
import type {
  JobCanceled,
  JobCancelAcknowledged,
  JobClaimed,
  JobCompleted,
  JobEvent,
  JobFailed,
  JobFailure,
  JobOutputSummary,
  JobRequeued,
  JobStarted,
  JobSubmitted,
  JobSubmittedData,
} from '../events/job-events';

/**
 * The job lifecycle (docs/protocol.md, "The job lifecycle") as a pure XState machine over a job's events.
 *
 * - `evolve` / `fold`: how events change a job's state, the one place that says so.
 * - `jobMachine`: which command is allowed in which state, and which event it records.
 * - `decide`: runs a command through the machine with xstate's pure `transition` and returns
 *   the events to append, or throws `InvalidTransitionError`.
 *
 * No I/O, no clock: every command carries its time as `at`.
 */

export type JobStatus = 'pending' | 'claimed' | 'running' | 'completed' | 'failed' | 'canceled';

/** A job folded from its events: plain data, as the projections and the audit see it. */
export interface JobState extends Omit<JobSubmittedData, 'submittedAt'> {
  status: JobStatus;
  /** Starts at 1; each requeue moves to the next attempt. */
  attempt: number;
  /** Holder of the current attempt; kept after it completes, fails or is canceled. */
  runnerId: string | null;
  createdAt: string;
  claimedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  failure: JobFailure | 'job_timeout' | null;
  error: string | null;
  cancelAcknowledged: boolean;
  fingerprint: Record<string, unknown> | null;
  output: JobOutputSummary | null;
  /** How many events were folded: the stream position of the last one. */
  version: number;
}

/** What may be asked of a job. `at` is the time the command is decided at (ISO-8601). */
export type JobCommand =
  | { type: 'submit'; at: string; job: Omit<JobSubmittedData, 'submittedAt'> }
  | { type: 'claim'; at: string; runnerId: string }
  | {
      type: 'start';
      at: string;
      runnerId: string;
      attempt: number;
      fingerprint?: Record<string, unknown> | null;
    }
  | { type: 'heartbeat'; at: string; runnerId: string; attempt: number }
  | {
      type: 'complete';
      at: string;
      runnerId: string;
      attempt: number;
      exitCode: number;
      output?: JobOutputSummary | null;
    }
  | {
      type: 'fail';
      at: string;
      runnerId: string;
      attempt: number;
      error: string;
      /** A non-zero exit code makes the failure `nonzero_exit`; none (or 0) makes it `runner_error`. */
      exitCode?: number | null;
      output?: JobOutputSummary | null;
    }
  | { type: 'cancel'; at: string; reason: string }
  | { type: 'claimTimeout'; at: string; attempt: number }
  | { type: 'heartbeatTimeout'; at: string; attempt: number }
  | { type: 'jobTimeout'; at: string; attempt: number }
  /** The runner holding the attempt said hello again without it: the attempt is gone with it. */
  | { type: 'runnerLost'; at: string; runnerId: string; attempt: number }
  | { type: 'acknowledgeCancel'; at: string; runnerId: string; attempt: number };

export type JobCommandType = JobCommand['type'];
type Command<T extends JobCommandType> = Extract<JobCommand, { type: T }>;

/** The machine's context: `job` is null only in `new`, before `JobSubmitted`. */
export interface JobContext {
  job: JobState | null;
}

// ---------------------------------------------------------------------------------------------
// evolve

/**
 * Applies one event. Throws on a stream that does not open with exactly one `JobSubmitted`:
 * that is a corrupt stream, not a refused command.
 */
export function evolve(state: JobState | null, event: JobEvent): JobState {
  if (event.type === 'JobSubmitted') {
    if (state !== null) throw new Error(`JobSubmitted on job ${state.jobId}, which already exists`);
    const { submittedAt, ...job } = event.data;
    return {
      ...job,
      status: 'pending',
      attempt: 1,
      runnerId: null,
      createdAt: submittedAt,
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
  }
  if (state === null) throw new Error(`${event.type} before JobSubmitted`);

  const version = state.version + 1;
  switch (event.type) {
    case 'JobClaimed': {
      const { runnerId, attempt, claimedAt } = event.data;
      return { ...state, version, status: 'claimed', runnerId, attempt, claimedAt };
    }
    case 'JobStarted': {
      const { startedAt, fingerprint } = event.data;
      return { ...state, version, status: 'running', startedAt, fingerprint };
    }
    case 'JobCompleted': {
      const { exitCode, finishedAt, output } = event.data;
      return { ...state, version, status: 'completed', exitCode, finishedAt, output };
    }
    case 'JobFailed': {
      const { runnerId, failure, exitCode, error, finishedAt, output } = event.data;
      return { ...state, version, status: 'failed', runnerId, failure, exitCode, error, finishedAt, output };
    }
    case 'JobCanceled': {
      const { runnerId, failure, canceledAt } = event.data;
      return { ...state, version, status: 'canceled', runnerId, failure, finishedAt: canceledAt };
    }
    case 'JobCancelAcknowledged':
      return { ...state, version, cancelAcknowledged: true };
    case 'JobRequeued':
      return {
        ...state,
        version,
        status: 'pending',
        attempt: event.data.attempt,
        runnerId: null,
        claimedAt: null,
        startedAt: null,
      };
    default: {
      const _exhaustive: never = event;
      throw new Error(`unknown job event ${JSON.stringify(_exhaustive)}`);
    }
  }
}

/** The job after `events`, in stream order; null for no events. */
export function fold(events: readonly JobEvent[]): JobState | null {
  return events.reduce<JobState | null>(evolve, null);
}

// ---------------------------------------------------------------------------------------------
// The events each accepted command records

const submitted = ({ job, at }: Command<'submit'>): JobSubmitted => ({
  type: 'JobSubmitted',
  schemaVersion: 2,
  data: { ...job, submittedAt: at },
});

const claimed = ({ runnerId, at }: Command<'claim'>, job: JobState): JobClaimed => ({
  type: 'JobClaimed',
  schemaVersion: 1,
  data: { runnerId, attempt: job.attempt, claimedAt: at },
});

const started = ({ runnerId, attempt, fingerprint, at }: Command<'start'>): JobStarted => ({
  type: 'JobStarted',
  schemaVersion: 1,
  data: { runnerId, attempt, startedAt: at, fingerprint: fingerprint ?? null },
});

const completed = ({ runnerId, attempt, exitCode, output, at }: Command<'complete'>): JobCompleted => ({
  type: 'JobCompleted',
  schemaVersion: 1,
  data: { runnerId, attempt, exitCode, finishedAt: at, output: output ?? null },
});

const failed = ({ runnerId, attempt, error, exitCode, output, at }: Command<'fail'>): JobFailed => ({
  type: 'JobFailed',
  schemaVersion: 1,
  data: {
    runnerId,
    attempt,
    failure: typeof exitCode === 'number' && exitCode !== 0 ? 'nonzero_exit' : 'runner_error',
    exitCode: exitCode ?? null,
    error,
    finishedAt: at,
    output: output ?? null,
  },
});

const canceled = ({ reason, at }: Command<'cancel'>, job: JobState): JobCanceled => ({
  type: 'JobCanceled',
  schemaVersion: 1,
  data: { attempt: job.attempt, runnerId: job.runnerId, failure: null, reason, canceledAt: at },
});

const timedOut = ({ at }: Command<'jobTimeout'>, job: JobState): JobCanceled => ({
  type: 'JobCanceled',
  schemaVersion: 1,
  data: {
    attempt: job.attempt,
    runnerId: job.runnerId,
    failure: 'job_timeout',
    reason: 'job_timeout',
    canceledAt: at,
  },
});

/** An attempt that ended without its runner's report: timed out, or lost by its runner. */
type AttemptTimeout = Command<'claimTimeout' | 'heartbeatTimeout' | 'runnerLost'>;
const REASONS = { claimTimeout: 'claim_timeout', heartbeatTimeout: 'heartbeat_timeout', runnerLost: 'runner_lost' } as const;
const reasonOf = (command: AttemptTimeout) => REASONS[command.type];

const requeued = (command: AttemptTimeout, job: JobState): JobRequeued => ({
  type: 'JobRequeued',
  schemaVersion: 1,
  data: {
    previousRunnerId: holderOf(job),
    previousAttempt: job.attempt,
    attempt: job.attempt + 1,
    reason: reasonOf(command),
    requeuedAt: command.at,
  },
});

const lost = (command: AttemptTimeout, job: JobState): JobFailed => ({
  type: 'JobFailed',
  schemaVersion: 1,
  data: {
    runnerId: job.runnerId,
    attempt: job.attempt,
    failure: reasonOf(command),
    exitCode: null,
    error: null,
    finishedAt: command.at,
    output: null,
  },
});

const acknowledged = ({ runnerId, attempt, at }: Command<'acknowledgeCancel'>): JobCancelAcknowledged => ({
  type: 'JobCancelAcknowledged',
  schemaVersion: 1,
  data: { runnerId, attempt, acknowledgedAt: at },
});

function holderOf(job: JobState): string {
  // Unreachable: the guards only let a timeout requeue a claimed job, which has a holder.
  if (job.runnerId === null) throw new Error(`job ${job.jobId} has no runner to requeue from`);
  return job.runnerId;
}

function submittedJob({ job }: JobContext): JobState {
  // Unreachable: only `new` has no job, and it only accepts `submit`.
  if (job === null) throw new Error('the job was not submitted');
  return job;
}

// ---------------------------------------------------------------------------------------------
// The machine

const jobSetup = setup({
  types: {
    context: {} as JobContext,
    events: {} as JobCommand,
  },
  guards: {
    /** The command comes from the runner holding the job, at the job's current attempt. */
    isCurrentRunnerAndAttempt: ({ context: { job }, event }) =>
      'runnerId' in event &&
      'attempt' in event &&
      job?.runnerId === event.runnerId &&
      job.attempt === event.attempt,
    /** A timeout is about the attempt in progress, not about one that was already replaced. */
    attemptIsCurrent: ({ context: { job }, event }) => 'attempt' in event && job?.attempt === event.attempt,
    canRetry: ({ context: { job } }) => job !== null && job.attempt < job.maxAttempts,
    cancelNotAcknowledged: ({ context: { job } }) => job?.cancelAcknowledged === false,
  },
  actions: {
    /** A domain event to append. Does nothing itself: `decide` collects these from `transition`. */
    record: (_, _event: JobEvent) => {},
    /** Folds a recorded event into the context, so the context is always `fold` of the events. */
    evolve: assign(({ context }, event: JobEvent) => ({ job: evolve(context.job, event) })),
  },
});

/** The actions of a transition that produces the event built by `params`: record it, then fold it in. */
function emit<C extends JobCommand>(params: (args: { context: JobContext; event: C }) => JobEvent) {
  // Both actions compute the same event: `record` does not change the context `evolve` reads.
  return [
    { type: 'record', params },
    { type: 'evolve', params },
  ] as const;
}

/** `emit` for a submitted job (any state but `new`): `build` derives the event from command and job. */
function record<C extends JobCommand>(build: (command: C, job: JobState) => JobEvent) {
  return emit<C>(({ context, event }) => build(event, submittedJob(context)));
}

/**
 * Transitions not listed are refused. A transition that records nothing still names a target
 * (its own state): that is what makes `snapshot.can(command)` tell an accepted no-op (a
 * heartbeat, a reconnecting runner's repeated `start`) from a refusal.
 */
export const jobMachine = jobSetup.createMachine({
  id: 'job',
  context: { job: null },
  initial: 'new',
  states: {
    new: {
      on: {
        submit: { target: 'pending', actions: emit(({ event }) => submitted(event)) },
      },
    },
    pending: {
      on: {
        claim: { target: 'claimed', actions: record(claimed) },
        cancel: { target: 'canceled', actions: record(canceled) },
      },
    },
    claimed: {
      on: {
        start: { guard: 'isCurrentRunnerAndAttempt', target: 'running', actions: record(started) },
        heartbeat: { guard: 'isCurrentRunnerAndAttempt', target: 'claimed' },
        fail: { guard: 'isCurrentRunnerAndAttempt', target: 'failed', actions: record(failed) },
        cancel: { target: 'canceled', actions: record(canceled) },
        claimTimeout: [
          { guard: and(['attemptIsCurrent', 'canRetry']), target: 'pending', actions: record(requeued) },
          { guard: 'attemptIsCurrent', target: 'failed', actions: record(lost) },
        ],
        heartbeatTimeout: [
          { guard: and(['attemptIsCurrent', 'canRetry']), target: 'pending', actions: record(requeued) },
          { guard: 'attemptIsCurrent', target: 'failed', actions: record(lost) },
        ],
        runnerLost: [
          { guard: and(['isCurrentRunnerAndAttempt', 'canRetry']), target: 'pending', actions: record(requeued) },
          { guard: 'isCurrentRunnerAndAttempt', target: 'failed', actions: record(lost) },
        ],
      },
    },
    running: {
      on: {
        start: { guard: 'isCurrentRunnerAndAttempt', target: 'running' },
        heartbeat: { guard: 'isCurrentRunnerAndAttempt', target: 'running' },
        complete: { guard: 'isCurrentRunnerAndAttempt', target: 'completed', actions: record(completed) },
        fail: { guard: 'isCurrentRunnerAndAttempt', target: 'failed', actions: record(failed) },
        cancel: { target: 'canceled', actions: record(canceled) },
        // Once the command ran, a lost attempt is not retried: it may have had effects.
        heartbeatTimeout: { guard: 'attemptIsCurrent', target: 'failed', actions: record(lost) },
        runnerLost: { guard: 'isCurrentRunnerAndAttempt', target: 'failed', actions: record(lost) },
        jobTimeout: { guard: 'attemptIsCurrent', target: 'canceled', actions: record(timedOut) },
      },
    },
    completed: { type: 'final' },
    failed: { type: 'final' },
    // Not `final`: the runner that held the job still acknowledges the cancel, once.
    canceled: {
      on: {
        acknowledgeCancel: {
          guard: and(['isCurrentRunnerAndAttempt', 'cancelNotAcknowledged']),
          target: 'canceled',
          actions: record(acknowledged),
        },
      },
    },
  },
});

export type JobSnapshot = SnapshotFrom<typeof jobMachine>;

/** The machine's snapshot for a folded job (`new` for no events). */
export function snapshotOf(state: JobState | null): JobSnapshot {
  return jobMachine.resolveState({ value: state?.status ?? 'new', context: { job: state } });
}

/**
 * The events that `command` appends to the stream folded into `state`: usually one, none for an
 * accepted no-op (heartbeat, repeated start). Throws `InvalidTransitionError` if the machine
 * refuses the command in that state.
 */
export function decide(state: JobState | null, command: JobCommand): JobEvent[] {
  const snapshot = snapshotOf(state);
  if (!snapshot.can(command)) throw refusal(state, command);
  const [, actions] = transition(jobMachine, snapshot, command);
  return actions.flatMap((action) => (action.type === 'record' ? [action.params] : []));
}

/**
 * Whether the machine takes a heartbeat of `runnerId` at `attempt` (an accepted no-op: it
 * appends nothing): the same answer as `decide` without building the machine's snapshot, for
 * the gateway's hot path (a heartbeat a second per runner). The property test holds it to
 * `decide` for every state the machine reaches.
 */
export function acceptsHeartbeat(state: JobState | null, runnerId: string, attempt: number): boolean {
  return state !== null && (state.status === 'claimed' || state.status === 'running') && state.runnerId === runnerId && state.attempt === attempt;
}

// ---------------------------------------------------------------------------------------------
// What other modules ask of the machine instead of restating its rules. Each is read from the
// machine's definition or held to `decide` by the property test.

/** The commands each status takes at all (its guards aside), read from the machine's own states. */
const TAKES: ReadonlyMap<string, ReadonlySet<string>> = new Map(
  Object.values(jobMachine.states).map((node) => [node.key, new Set<string>(node.ownEvents)]),
);

/** The statuses of the machine's final states: they take no command. */
const FINAL: ReadonlySet<string> = new Set(Object.values(jobMachine.states).flatMap((node) => (node.type === 'final' ? [node.key] : [])));

/**
 * The statuses in which the machine takes any of `types` at all (its guards aside), in the
 * machine's order. For SQL that selects the jobs such a command may apply to, so the query
 * follows the machine: the statuses a runner holds a job in are `statusesTaking('heartbeat')`.
 */
export function statusesTaking(...types: JobCommandType[]): JobStatus[] {
  return [...TAKES].flatMap(([status, takes]) => (status !== 'new' && types.some((type) => takes.has(type)) ? [status as JobStatus] : []));
}

/**
 * Whether the machine takes `runnerId`'s acknowledgement of the cancel of `attempt`: the job was
 * canceled while that runner held that attempt, and the runner has not acknowledged it yet.
 * Asked with the job's own attempt, it says whether the runner still owes the acknowledgement.
 */
export function acceptsCancelAck(state: JobState | null, runnerId: string, attempt: number): boolean {
  return (
    state !== null &&
    TAKES.get(state.status)?.has('acknowledgeCancel') === true &&
    state.runnerId === runnerId &&
    state.attempt === attempt &&
    !state.cancelAcknowledged
  );
}

/** The commands that end an attempt its runner went silent on or overran. */
export type TimeoutType = Extract<JobCommandType, 'claimTimeout' | 'heartbeatTimeout' | 'jobTimeout'>;
export const TIMEOUT_TYPES: readonly TimeoutType[] = ['claimTimeout', 'heartbeatTimeout', 'jobTimeout'];

/**
 * Whether the machine takes the timeout `type` of `attempt` for a job in `job.status` at
 * `job.attempt`: which timeouts apply is the status's, and only to the current attempt.
 */
export function acceptsTimeout(job: Pick<JobState, 'status' | 'attempt'>, type: TimeoutType, attempt: number): boolean {
  return TAKES.get(job.status)?.has(type) === true && job.attempt === attempt;
}

/**
 * Whether `status` is final: the job completed or failed and takes no further command, its last
 * attempt's report (if it sent one) its result. A canceled job is not final: it still takes its
 * runner's acknowledgement.
 */
export function isFinal(status: JobStatus): boolean {
  return FINAL.has(status);
}

function refusal(state: JobState | null, command: JobCommand): InvalidTransitionError {
  const status = state?.status ?? 'new';
  let message = `cannot ${command.type} a job that is ${state ? status : 'not submitted'}`;
  if (state && 'attempt' in command && command.attempt !== state.attempt) {
    message += `: attempt ${command.attempt} is not the current attempt ${state.attempt}`;
  } else if (state && 'runnerId' in command && 'attempt' in command && command.runnerId !== state.runnerId) {
    message += `: runner ${command.runnerId} does not hold it`;
  }
  return new InvalidTransitionError(message, { state: status, command: command.type });
}
