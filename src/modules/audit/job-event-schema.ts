import type { JobEvent, JobEventType } from '../../events/job-events';
import { PLAN_PRIORITY } from '../../events/job-events';
import type { Divergence } from './divergence';

/**
 * The shape of every job event's `data`, checked before the event is replayed: a member that is
 * missing would otherwise pass unseen (the machine's event would lack it too). Members that are
 * there but should not be are caught by comparing with the machine's event.
 */
type Check = (value: unknown) => boolean;
type DataSchema<E extends JobEvent> = { readonly [K in keyof E['data']]-?: Check };

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const string: Check = (v) => typeof v === 'string';
const integer: Check = (v) => Number.isSafeInteger(v);
const attempt: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 1;
const time: Check = (v) => typeof v === 'string' && ISO_TIME.test(v) && !Number.isNaN(Date.parse(v));
const object: Check = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const strings: Check = (v) => Array.isArray(v) && v.every(string);
const nullable = (check: Check): Check => (v) => v === null || check(v);
const oneOf = (...values: unknown[]): Check => (v) => values.includes(v);
const stringMap: Check = (v) => object(v) && Object.values(v as object).every(string);
const idempotency: Check = (v) => object(v) && string((v as { key?: unknown }).key) && string((v as { requestHash?: unknown }).requestHash);

const SCHEMAS: { readonly [T in JobEventType]: DataSchema<Extract<JobEvent, { type: T }>> } = {
  JobSubmitted: {
    jobId: string,
    orgId: string,
    projectId: string,
    spec: string,
    specId: string,
    plan: oneOf(...Object.keys(PLAN_PRIORITY)),
    priority: integer,
    image: nullable(string),
    cmd: strings,
    entrypoint: nullable(strings),
    env: stringMap,
    timeout: integer,
    filePaths: strings,
    maxAttempts: attempt,
    sourceIp: nullable(string),
    idempotency: nullable(idempotency),
    submittedAt: time,
  },
  JobClaimed: { runnerId: string, attempt, claimedAt: time },
  JobStarted: { runnerId: string, attempt, startedAt: time, fingerprint: nullable(object) },
  JobCompleted: { runnerId: string, attempt, exitCode: integer, finishedAt: time, output: nullable(object) },
  JobFailed: {
    runnerId: nullable(string),
    attempt,
    failure: oneOf('nonzero_exit', 'runner_error', 'claim_timeout', 'heartbeat_timeout', 'runner_lost'),
    exitCode: nullable(integer),
    error: nullable(string),
    finishedAt: time,
    output: nullable(object),
  },
  JobCanceled: { attempt, runnerId: nullable(string), failure: oneOf('job_timeout', null), reason: string, canceledAt: time },
  JobCancelAcknowledged: { runnerId: string, attempt, acknowledgedAt: time },
  JobRequeued: {
    previousRunnerId: string,
    previousAttempt: attempt,
    attempt,
    reason: oneOf('claim_timeout', 'heartbeat_timeout', 'runner_lost'),
    requeuedAt: time,
  },
};

export function isJobEventType(type: string): type is JobEventType {
  return Object.hasOwn(SCHEMAS, type);
}

/** What is wrong with the event's data for its type (nothing: an empty list). */
export function checkJobEventData(event: { type: JobEventType; data: unknown }, position: number): Divergence[] {
  if (!object(event.data)) return [{ position, field: 'data', actual: event.data, reason: `${event.type} data is not an object` }];
  const data = event.data as Record<string, unknown>;
  const schema = SCHEMAS[event.type] as Readonly<Record<string, Check>>;
  const problems: Divergence[] = [];
  for (const [member, check] of Object.entries(schema)) {
    if (!Object.hasOwn(data, member)) {
      problems.push({ position, field: `data.${member}`, reason: `${event.type} has no ${member}` });
    } else if (!check(data[member])) {
      problems.push({ position, field: `data.${member}`, actual: data[member], reason: `${event.type} has an invalid ${member}` });
    }
  }
  return problems;
}
