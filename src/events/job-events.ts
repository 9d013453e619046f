import type { DomainEvent } from './envelope';
import type { Plan } from './plans';

/**
 * The job stream's events (docs/protocol.md, "The job lifecycle"). Every field is plain JSON: times are
 * ISO-8601 UTC strings, ids are UUID strings. Changing a `data` shape means a new `schemaVersion`.
 */

/** An organization's plan, which fixes the priority of its jobs at submission; its rules are the table in plans.ts. */
export { PLAN_PRIORITY, type Plan } from './plans';

/** Why an attempt ended in `failed`. A canceled job's `job_timeout` is carried by `JobCanceled`. */
/** `runner_lost`: the runner said hello again without the job (it died with a restart of the runner or the server). */
export type JobFailure = 'nonzero_exit' | 'runner_error' | 'claim_timeout' | 'heartbeat_timeout' | 'runner_lost';

/** What a finished attempt produced; the content itself is stored apart, by digest. */
export interface JobOutputSummary {
  stdout: { bytes: number; sha256: string } | null;
  stderr: { bytes: number; sha256: string } | null;
  files: { path: string; bytes: number; sha256: string }[];
  truncated: boolean;
}

type JobEventV1<Type extends string, Data> = DomainEvent<Type, Data> & { readonly schemaVersion: 1 };

export interface JobSubmittedData {
  jobId: string;
  orgId: string;
  projectId: string;
  /** The spec's slug; `specId` is its id. */
  spec: string;
  specId: string;
  plan: Plan;
  priority: number;
  image: string | null;
  cmd: string[];
  entrypoint: string[] | null;
  env: Record<string, string>;
  /** Seconds. */
  timeout: number;
  filePaths: string[];
  maxAttempts: number;
  sourceIp: string | null;
  /** The submission's Idempotency-Key and the SHA-256 of its request, when one was sent. */
  idempotency: { key: string; requestHash: string } | null;
  submittedAt: string;
}

/**
 * A job was accepted and queued as `pending` at attempt 1. Version 2 added `idempotency`;
 * version-1 events are read as version 2 with `idempotency: null` (see upcasters.ts).
 */
export type JobSubmitted = DomainEvent<'JobSubmitted', JobSubmittedData> & { readonly schemaVersion: 2 };

/** A runner took the pending job for the current attempt. */
export type JobClaimed = JobEventV1<'JobClaimed', { runnerId: string; attempt: number; claimedAt: string }>;

/** The claiming runner reported that the job's command is running. */
export type JobStarted = JobEventV1<
  'JobStarted',
  { runnerId: string; attempt: number; startedAt: string; fingerprint: Record<string, unknown> | null }
>;

/** The job's command exited 0. */
export type JobCompleted = JobEventV1<
  'JobCompleted',
  { runnerId: string; attempt: number; exitCode: number; finishedAt: string; output: JobOutputSummary | null }
>;

/** The attempt ended badly and no attempt follows. */
export type JobFailed = JobEventV1<
  'JobFailed',
  {
    runnerId: string | null;
    attempt: number;
    failure: JobFailure;
    exitCode: number | null;
    error: string | null;
    finishedAt: string;
    output: JobOutputSummary | null;
  }
>;

/** The job was canceled by a user, or by Runway when it ran past its timeout (`job_timeout`). */
export type JobCanceled = JobEventV1<
  'JobCanceled',
  {
    attempt: number;
    /** The runner that held the job (claimed or running), told to stop; null if it was pending. */
    runnerId: string | null;
    failure: 'job_timeout' | null;
    reason: string;
    canceledAt: string;
  }
>;

/** The runner that held a canceled job confirmed that its processes are gone. */
export type JobCancelAcknowledged = JobEventV1<
  'JobCancelAcknowledged',
  { runnerId: string; attempt: number; acknowledgedAt: string }
>;

/** A claimed attempt was lost before it ran; the job is pending again at the next attempt. */
export type JobRequeued = JobEventV1<
  'JobRequeued',
  {
    previousRunnerId: string;
    previousAttempt: number;
    /** `previousAttempt + 1`. */
    attempt: number;
    reason: 'claim_timeout' | 'heartbeat_timeout' | 'runner_lost';
    requeuedAt: string;
  }
>;

/** Every event of a job stream. */
export type JobEvent =
  | JobSubmitted
  | JobClaimed
  | JobStarted
  | JobCompleted
  | JobFailed
  | JobCanceled
  | JobCancelAcknowledged
  | JobRequeued;

export type JobEventType = JobEvent['type'];

// A mapped type, so that adding an event without listing it here does not compile.
const JOB_EVENT_TYPE_NAMES: { readonly [T in JobEventType]: T } = {
  JobSubmitted: 'JobSubmitted',
  JobClaimed: 'JobClaimed',
  JobStarted: 'JobStarted',
  JobCompleted: 'JobCompleted',
  JobFailed: 'JobFailed',
  JobCanceled: 'JobCanceled',
  JobCancelAcknowledged: 'JobCancelAcknowledged',
  JobRequeued: 'JobRequeued',
};

/** Every job event type, in lifecycle order. */
export const JOB_EVENT_TYPES: readonly JobEventType[] = Object.freeze(Object.values(JOB_EVENT_TYPE_NAMES));
