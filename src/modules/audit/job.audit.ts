import { InvalidTransitionError } from '../../common/errors';
import { JOB_EVENTS } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import { PLAN_PRIORITY, type JobEvent, type JobSubmittedData } from '../../events/job-events';
import { type JobCommand, type JobState, decide, evolve } from '../../machines/job.machine';
import { compareLogPositions } from '../event-store/checkpoints';
import type { LogPosition } from '../event-store/event-store';
import type { AuditViews, BillingViewRow, JobViewRow } from './audit-views';
import { type Divergence, ViewComparison, normalize, sameJson } from './divergence';
import type { ContentFindings, StreamContentAudit } from './stream-audit';

/** Every member of a submission but its time: the `job` of a `submit` command. */
const SUBMITTED_MEMBERS = {
  jobId: true,
  orgId: true,
  projectId: true,
  spec: true,
  specId: true,
  plan: true,
  priority: true,
  image: true,
  cmd: true,
  entrypoint: true,
  env: true,
  timeout: true,
  filePaths: true,
  maxAttempts: true,
  sourceIp: true,
  idempotency: true,
} as const satisfies Record<keyof Omit<JobSubmittedData, 'submittedAt'>, true>;

/**
 * The command that would have produced a stored job event. Members are taken one by one (never
 * the whole `data`), so a member the command does not carry cannot come back out of `decide`.
 */
export function commandFor(event: JobEvent): JobCommand {
  switch (event.type) {
    case 'JobSubmitted': {
      const job = Object.fromEntries(Object.keys(SUBMITTED_MEMBERS).map((member) => [member, event.data[member as keyof JobSubmittedData]]));
      return { type: 'submit', at: event.data.submittedAt, job: job as Omit<JobSubmittedData, 'submittedAt'> };
    }
    case 'JobClaimed':
      return { type: 'claim', at: event.data.claimedAt, runnerId: event.data.runnerId };
    case 'JobStarted': {
      const { runnerId, attempt, fingerprint, startedAt } = event.data;
      return { type: 'start', at: startedAt, runnerId, attempt, fingerprint };
    }
    case 'JobCompleted': {
      const { runnerId, attempt, exitCode, output, finishedAt } = event.data;
      return { type: 'complete', at: finishedAt, runnerId, attempt, exitCode, output };
    }
    case 'JobFailed': {
      const { runnerId, attempt, failure, exitCode, error, output, finishedAt } = event.data;
      if (failure === 'claim_timeout') return { type: 'claimTimeout', at: finishedAt, attempt };
      if (failure === 'heartbeat_timeout') return { type: 'heartbeatTimeout', at: finishedAt, attempt };
      if (failure === 'runner_lost') return { type: 'runnerLost', at: finishedAt, runnerId: runnerId as string, attempt };
      // Runner-reported. A null runner or error is passed on as stored: the machine refuses the
      // first (no job is held by nobody) and `replay` reports the second.
      return { type: 'fail', at: finishedAt, runnerId: runnerId as string, attempt, error: error as string, exitCode, output };
    }
    case 'JobCanceled': {
      const { failure, attempt, reason, canceledAt } = event.data;
      return failure === 'job_timeout' ? { type: 'jobTimeout', at: canceledAt, attempt } : { type: 'cancel', at: canceledAt, reason };
    }
    case 'JobCancelAcknowledged': {
      const { runnerId, attempt, acknowledgedAt } = event.data;
      return { type: 'acknowledgeCancel', at: acknowledgedAt, runnerId, attempt };
    }
    case 'JobRequeued': {
      const { reason, previousAttempt, previousRunnerId, requeuedAt } = event.data;
      if (reason === 'runner_lost') return { type: 'runnerLost', at: requeuedAt, runnerId: previousRunnerId, attempt: previousAttempt };
      return { type: reason === 'claim_timeout' ? 'claimTimeout' : 'heartbeatTimeout', at: requeuedAt, attempt: previousAttempt };
    }
    default: {
      const _exhaustive: never = event;
      throw new Error(`unknown job event ${(_exhaustive as { type: string }).type}`);
    }
  }
}

/** The billing row a job's events call for, as the billing projection writes it. */
interface BillingExpectation {
  startedAt: string;
  finishedAt: string | null;
}

/**
 * Replays a job's stored events through the job machine: for each one, the command that would
 * have produced it is decided on the state folded so far, and must be allowed and record exactly
 * that event. The stored event is folded in either way, so one bad event is reported once and
 * the ones after it are judged on what the log says happened.
 */
export class JobReplay {
  state: JobState | null = null;
  readonly divergences: Divergence[] = [];
  /** The fold itself refused an event: the state past it means nothing. */
  broken = false;
  billing: BillingExpectation | null = null;

  constructor(private readonly jobId: string) {}

  push(stored: EventEnvelope): void {
    if (this.broken) return;
    const { position } = stored;
    // Upcast and checked against its type's shape: a member that is missing would otherwise pass
    // unseen (the machine's event would lack it too); members that are there but should not be
    // are caught by comparing with the machine's event.
    const { event, problems } = JOB_EVENTS.read(stored);
    if (!JOB_EVENTS.has(stored.type)) {
      this.fail({ position, ...problems[0] });
      return;
    }
    if (problems.length > 0) this.divergences.push(...problems.map((problem) => ({ position, ...problem })));
    else this.replay(event, position);
    try {
      this.state = evolve(this.state, event);
    } catch (error) {
      this.fail({ position, reason: `the job's fold refuses ${event.type}: ${(error as Error).message}` });
      return;
    }
    this.expectBilling(event);
  }

  private replay(event: JobEvent, position: number): void {
    if (event.type === 'JobSubmitted') {
      if (event.data.jobId !== this.jobId) {
        this.divergences.push({ position, field: 'data.jobId', expected: this.jobId, actual: event.data.jobId, reason: 'the submission names another job' });
      }
      const priority = PLAN_PRIORITY[event.data.plan];
      if (event.data.priority !== priority) {
        this.divergences.push({ position, field: 'data.priority', expected: priority, actual: event.data.priority, reason: "the priority is not the plan's" });
      }
    }
    if (event.type === 'JobFailed' && (event.data.failure === 'nonzero_exit' || event.data.failure === 'runner_error') && event.data.error === null) {
      this.divergences.push({ position, field: 'data.error', reason: 'a failure reported by a runner carries its error' });
    }
    const command = commandFor(event);
    let produced: JobEvent[];
    try {
      produced = decide(this.state, command);
    } catch (error) {
      if (!(error instanceof InvalidTransitionError)) throw error;
      this.divergences.push({ position, field: 'type', actual: event.type, reason: `the job machine refuses the ${command.type} that ${event.type} records: ${error.message}` });
      return;
    }
    if (produced.length !== 1) {
      this.divergences.push({
        position,
        expected: produced.map((e) => e.type),
        actual: [event.type],
        reason: `the job machine records ${produced.length} events for the ${command.type} that ${event.type} records`,
      });
      return;
    }
    const [expected] = produced;
    if (expected.type !== event.type) {
      this.divergences.push({ position, field: 'type', expected: expected.type, actual: event.type, reason: `the job machine records ${expected.type} for this ${command.type}` });
      return;
    }
    if (expected.schemaVersion !== event.schemaVersion) {
      this.divergences.push({ position, field: 'schemaVersion', expected: expected.schemaVersion, actual: event.schemaVersion, reason: 'not the schema version the job machine records' });
    }
    const want = new Map<string, unknown>(Object.entries(expected.data));
    const have = new Map<string, unknown>(Object.entries(event.data));
    for (const member of [...new Set([...want.keys(), ...have.keys()])].sort()) {
      if (!sameJson(want.get(member), have.get(member))) {
        this.divergences.push({
          position,
          field: `data.${member}`,
          expected: normalize(want.get(member)),
          actual: normalize(have.get(member)),
          reason: `the job machine would have recorded another ${member}`,
        });
      }
    }
  }

  /** As the billing projection does: the first start opens the row, the first end after it closes it. */
  private expectBilling(event: JobEvent): void {
    if (event.type === 'JobStarted') {
      this.billing ??= { startedAt: event.data.startedAt, finishedAt: null };
    } else if (event.type === 'JobCompleted' || event.type === 'JobFailed' || event.type === 'JobCanceled') {
      if (this.billing !== null && this.billing.finishedAt === null) {
        this.billing.finishedAt = event.type === 'JobCanceled' ? event.data.canceledAt : event.data.finishedAt;
      }
    }
  }

  private fail(divergence: Divergence): void {
    this.divergences.push(divergence);
    this.broken = true;
  }
}

/** The jobs view row a folded job is written as (job.views.ts), column by column. */
export function compareJobRow(job: JobState, row: JobViewRow | undefined): Divergence[] {
  const check = new ViewComparison('jobs');
  if (row === undefined) return check.missing('the job has no row in the jobs view').divergences;
  check
    .value('status', job.status, row.status)
    .value('attempt', job.attempt, row.attempt)
    .value('runner_id', job.runnerId, row.runner_id)
    .time('claimed_at', job.claimedAt, row.claimed_at)
    .time('started_at', job.startedAt, row.started_at)
    .time('finished_at', job.finishedAt, row.finished_at)
    .value('exit_code', job.exitCode, row.exit_code)
    .value('failure', job.failure, row.failure)
    .value('version', job.version, row.version)
    .value('cancel_acknowledged', job.cancelAcknowledged, row.cancel_acknowledged)
    .value('org_id', job.orgId, row.org_id)
    .value('project_id', job.projectId, row.project_id)
    .value('spec_id', job.specId, row.spec_id)
    .value('spec', job.spec, row.spec)
    .value('plan', job.plan, row.plan)
    .value('priority', job.priority, row.priority)
    .value('max_attempts', job.maxAttempts, row.max_attempts)
    .value('timeout', job.timeout, row.timeout)
    .value('source_ip', job.sourceIp, row.source_ip)
    .time('created_at', job.createdAt, row.created_at);
  // The folded state the jobs projection evolves the next event from: wrong here, wrong later.
  if (row.state !== null) {
    const stored = new Map<string, unknown>(Object.entries(row.state));
    const folded = new Map<string, unknown>(Object.entries(job));
    for (const member of [...new Set([...folded.keys(), ...stored.keys()])].sort()) {
      check.value(`state.${member}`, folded.get(member), stored.get(member));
    }
  }
  return check.divergences;
}

/** The job_billing row: there iff the job ran; minutes = ceil((finished - started) / 60 s) once it ended. */
export function compareBillingRow(job: JobState, expected: BillingExpectation | null, row: BillingViewRow | undefined): Divergence[] {
  const check = new ViewComparison('job_billing');
  if (expected === null) {
    if (row !== undefined) check.value('job_id', null, row.job_id);
    return check.divergences;
  }
  if (row === undefined) return check.missing('the job ran but has no row in the job_billing view').divergences;
  const minutes =
    expected.finishedAt === null ? null : Math.ceil((Date.parse(expected.finishedAt) - Date.parse(expected.startedAt)) / 60_000);
  return check
    .value('org_id', job.orgId, row.org_id)
    .value('project_id', job.projectId, row.project_id)
    .time('started_at', expected.startedAt, row.started_at)
    .time('finished_at', expected.finishedAt, row.finished_at)
    .value('minutes', minutes, row.minutes).divergences;
}

/** A job stream: replayed through the job machine, then compared with the jobs and billing views. */
export class JobStreamAudit implements StreamContentAudit {
  private readonly replay: JobReplay;

  constructor(private readonly jobId: string) {
    this.replay = new JobReplay(jobId);
  }

  push(event: EventEnvelope): void {
    this.replay.push(event);
  }

  finish(views: AuditViews, last: LogPosition | null): ContentFindings {
    const { state, broken, divergences } = this.replay;
    if (state === null && views.jobs.has(this.jobId)) {
      return { status: null, divergences: [...divergences, { field: 'jobs', reason: 'the jobs view has a row for a job with no events' }], pending: [] };
    }
    if (state === null || broken) return { status: state?.status ?? null, divergences, pending: [] };
    const billing = compareBillingRow(state, this.replay.billing, views.billing.get(state.jobId));
    // job_billing is kept by a projector: until its checkpoint has passed the job's last event,
    // a difference there is lag, reported apart (`pending`), not a divergence.
    const caughtUp =
      views.billingCheckpoint !== null && last !== null && compareLogPositions(views.billingCheckpoint, last) >= 0;
    return {
      status: state.status,
      divergences: [...divergences, ...compareJobRow(state, views.jobs.get(state.jobId)), ...(caughtUp ? billing : [])],
      pending: caughtUp ? [] : billing.map((d) => ({ ...d, reason: `${d.reason} (the billing projector has not reached the job's last event yet)` })),
    };
  }
}
