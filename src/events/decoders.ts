import {
  EventUnion,
  type StoredEvent,
  attempt,
  boolean,
  integer,
  nullable,
  object,
  oneOf,
  optional,
  shape,
  string,
  stringMap,
  strings,
  time,
} from './decode';
import type { JobEvent } from './job-events';
import type { OrgEvent } from './org-events';
import { PLAN_NAMES } from './plans';
import type { RunnerEvent } from './runner-events';
import { ARCHITECTURES, type SpecEvent } from './spec-events';

/*
 * The shape of every event's `data`, by union: what a reader of the log may rely on once an event
 * is decoded. A mapped type lists every type of a union and every member of its data, so an event
 * or a member added without its check here does not compile.
 */

const plan = oneOf(...PLAN_NAMES);
const output = nullable(object);

export const JOB_EVENTS = new EventUnion<JobEvent>('job', {
  JobSubmitted: {
    schemaVersion: 2,
    data: {
      jobId: string,
      orgId: string,
      projectId: string,
      spec: string,
      specId: string,
      plan,
      priority: integer,
      image: nullable(string),
      cmd: strings,
      entrypoint: nullable(strings),
      env: stringMap,
      timeout: integer,
      filePaths: strings,
      maxAttempts: attempt,
      sourceIp: nullable(string),
      idempotency: nullable(shape({ key: string, requestHash: string })),
      submittedAt: time,
    },
  },
  JobClaimed: { schemaVersion: 1, data: { runnerId: string, attempt, claimedAt: time } },
  JobStarted: { schemaVersion: 1, data: { runnerId: string, attempt, startedAt: time, fingerprint: nullable(object) } },
  JobCompleted: { schemaVersion: 1, data: { runnerId: string, attempt, exitCode: integer, finishedAt: time, output } },
  JobFailed: {
    schemaVersion: 1,
    data: {
      runnerId: nullable(string),
      attempt,
      failure: oneOf('nonzero_exit', 'runner_error', 'claim_timeout', 'heartbeat_timeout', 'runner_lost'),
      exitCode: nullable(integer),
      error: nullable(string),
      finishedAt: time,
      output,
    },
  },
  JobCanceled: {
    schemaVersion: 1,
    data: { attempt, runnerId: nullable(string), failure: oneOf('job_timeout', null), reason: string, canceledAt: time },
  },
  JobCancelAcknowledged: { schemaVersion: 1, data: { runnerId: string, attempt, acknowledgedAt: time } },
  JobRequeued: {
    schemaVersion: 1,
    data: {
      previousRunnerId: string,
      previousAttempt: attempt,
      attempt,
      reason: oneOf('claim_timeout', 'heartbeat_timeout', 'runner_lost'),
      requeuedAt: time,
    },
  },
});

const limit = nullable(integer);

export const ORG_EVENTS = new EventUnion<OrgEvent>('organization', {
  OrgCreated: { schemaVersion: 1, data: { orgId: string, slug: string, name: string, plan, maxConcurrency: limit } },
  // A member left out keeps its value; a null limit lifts it (a null plan is read as left out: upcasters.ts).
  OrgUpdated: { schemaVersion: 1, data: { plan: optional(plan), maxConcurrency: optional(limit) } },
  OrgKeyCreated: { schemaVersion: 1, data: { keyId: string, name: nullable(string), keyHash: string } },
  OrgKeyRevoked: { schemaVersion: 1, data: { keyId: string } },
  ProjectCreated: { schemaVersion: 1, data: { projectId: string, slug: string, name: string } },
});

export const RUNNER_EVENTS = new EventUnion<RunnerEvent>('runner', {
  RunnerRegistered: { schemaVersion: 1, data: { runnerId: string, slug: string, name: string, specIds: strings, tokenHash: string } },
  RunnerTokenRotated: { schemaVersion: 1, data: { tokenHash: string } },
  // Null name or specs are read as left out (upcasters.ts).
  RunnerUpdated: { schemaVersion: 1, data: { name: optional(string), specIds: optional(strings) } },
  RunnerArchived: { schemaVersion: 1, data: {} },
  RunnerUnarchived: { schemaVersion: 1, data: {} },
  RunnerConnected: {
    schemaVersion: 1,
    data: { connectionId: string, gateway: string, agentVersion: string, capacity: integer, fingerprint: object },
  },
  RunnerDisconnected: { schemaVersion: 1, data: { connectionId: string, reason: oneOf('closed', 'gateway_lost') } },
});

export const SPEC_EVENTS = new EventUnion<SpecEvent>('spec', {
  SpecCreated: {
    schemaVersion: 1,
    data: {
      specId: string,
      slug: string,
      name: string,
      architecture: oneOf(...ARCHITECTURES),
      cpu: integer,
      memory: integer,
      disk: integer,
      network: boolean,
    },
  },
});

/** A stored job event as its current schema version, checked; EventDecodeError if it is not one. */
export const decodeJobEvent = (stored: StoredEvent): JobEvent => JOB_EVENTS.decode(stored);
/** A stored organization event as its current schema version, checked; EventDecodeError if it is not one. */
export const decodeOrgEvent = (stored: StoredEvent): OrgEvent => ORG_EVENTS.decode(stored);
/** A stored runner event as its current schema version, checked; EventDecodeError if it is not one. */
export const decodeRunnerEvent = (stored: StoredEvent): RunnerEvent => RUNNER_EVENTS.decode(stored);
/** A stored spec event as its current schema version, checked; EventDecodeError if it is not one. */
export const decodeSpecEvent = (stored: StoredEvent): SpecEvent => SPEC_EVENTS.decode(stored);
