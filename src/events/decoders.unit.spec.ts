import { EventDecodeError, type StoredEvent } from './decode';
import { JOB_EVENTS, ORG_EVENTS, RUNNER_EVENTS, SPEC_EVENTS, decodeJobEvent, decodeOrgEvent, decodeRunnerEvent, decodeSpecEvent } from './decoders';
import type { DomainEvent } from './envelope';
import type { JobEvent, JobSubmittedData } from './job-events';
import type { OrgEvent } from './org-events';
import type { RunnerEvent } from './runner-events';
import type { SpecEvent } from './spec-events';
import { CURRENT_SCHEMA_VERSIONS } from './upcasters';

const JOB = '01940000-0000-7000-8000-000000000001';
const RUNNER = '01940000-0000-7000-8000-0000000000aa';
const AT = '2026-01-05T10:00:00.000Z';

/** One event of every type of a union, so that a type added without an example here does not compile. */
type EveryType<E extends DomainEvent> = { [T in E['type']]: Extract<E, { type: T }> };

const submittedData: JobSubmittedData = {
  jobId: JOB,
  orgId: '01940000-0000-7000-8000-0000000000c1',
  projectId: '01940000-0000-7000-8000-0000000000c2',
  spec: 'x86-large',
  specId: '01940000-0000-7000-8000-0000000000c3',
  plan: 'team',
  priority: 200,
  image: null,
  cmd: ['./bench'],
  entrypoint: null,
  env: { A: '1' },
  timeout: 60,
  filePaths: [],
  maxAttempts: 2,
  sourceIp: '192.0.2.1',
  idempotency: { key: 'build-1', requestHash: 'f'.repeat(64) },
  submittedAt: AT,
};

const JOB_EXAMPLES: EveryType<JobEvent> = {
  JobSubmitted: { type: 'JobSubmitted', schemaVersion: 2, data: submittedData },
  JobClaimed: { type: 'JobClaimed', schemaVersion: 1, data: { runnerId: RUNNER, attempt: 1, claimedAt: AT } },
  JobStarted: { type: 'JobStarted', schemaVersion: 1, data: { runnerId: RUNNER, attempt: 1, startedAt: AT, fingerprint: { cores: 8 } } },
  JobCompleted: {
    type: 'JobCompleted',
    schemaVersion: 1,
    data: { runnerId: RUNNER, attempt: 1, exitCode: 0, finishedAt: AT, output: { stdout: { bytes: 2, sha256: 'a'.repeat(64) }, stderr: null, files: [], truncated: false } },
  },
  JobFailed: {
    type: 'JobFailed',
    schemaVersion: 1,
    data: { runnerId: null, attempt: 1, failure: 'claim_timeout', exitCode: null, error: null, finishedAt: AT, output: null },
  },
  JobCanceled: { type: 'JobCanceled', schemaVersion: 1, data: { attempt: 1, runnerId: RUNNER, failure: 'job_timeout', reason: 'job timeout', canceledAt: AT } },
  JobCancelAcknowledged: { type: 'JobCancelAcknowledged', schemaVersion: 1, data: { runnerId: RUNNER, attempt: 1, acknowledgedAt: AT } },
  JobRequeued: {
    type: 'JobRequeued',
    schemaVersion: 1,
    data: { previousRunnerId: RUNNER, previousAttempt: 1, attempt: 2, reason: 'heartbeat_timeout', requeuedAt: AT },
  },
};

const ORG_EXAMPLES: EveryType<OrgEvent> = {
  OrgCreated: { type: 'OrgCreated', schemaVersion: 1, data: { orgId: 'o', slug: 'acme', name: 'Acme', plan: 'free', maxConcurrency: null } },
  OrgUpdated: { type: 'OrgUpdated', schemaVersion: 1, data: { plan: 'enterprise', maxConcurrency: 4 } },
  OrgKeyCreated: { type: 'OrgKeyCreated', schemaVersion: 1, data: { keyId: 'k', name: null, keyHash: 'a'.repeat(64) } },
  OrgKeyRevoked: { type: 'OrgKeyRevoked', schemaVersion: 1, data: { keyId: 'k' } },
  ProjectCreated: { type: 'ProjectCreated', schemaVersion: 1, data: { projectId: 'p', slug: 'web', name: 'Web' } },
};

const RUNNER_EXAMPLES: EveryType<RunnerEvent> = {
  RunnerRegistered: { type: 'RunnerRegistered', schemaVersion: 1, data: { runnerId: RUNNER, slug: 'r1', name: 'R1', specIds: ['s'], tokenHash: 'b'.repeat(64) } },
  RunnerTokenRotated: { type: 'RunnerTokenRotated', schemaVersion: 1, data: { tokenHash: 'c'.repeat(64) } },
  RunnerUpdated: { type: 'RunnerUpdated', schemaVersion: 1, data: { specIds: ['s', 't'] } },
  RunnerArchived: { type: 'RunnerArchived', schemaVersion: 1, data: {} },
  RunnerUnarchived: { type: 'RunnerUnarchived', schemaVersion: 1, data: {} },
  RunnerConnected: {
    type: 'RunnerConnected',
    schemaVersion: 1,
    data: { connectionId: 'c1', gateway: 'gw-1', agentVersion: '1.4.0', capacity: 2, fingerprint: { arch: 'x86_64' } },
  },
  RunnerDisconnected: { type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId: 'c1', reason: 'gateway_lost' } },
};

const SPEC_EXAMPLES: EveryType<SpecEvent> = {
  SpecCreated: {
    type: 'SpecCreated',
    schemaVersion: 1,
    data: { specId: 's', slug: 'x86-large', name: 'Large', architecture: 'x86_64', cpu: 8, memory: 2 ** 35, disk: 2 ** 39, network: true },
  },
};

/** A row as the log gives it back: the data through JSON, where in the stream. */
const row = (event: StoredEvent, position = 3): StoredEvent & { streamId: string; position: number } => ({
  type: event.type,
  schemaVersion: event.schemaVersion,
  data: JSON.parse(JSON.stringify(event.data)) as unknown,
  streamId: JOB,
  position,
});

/** What decoding `stored` threw. */
function refusal(decode: (stored: StoredEvent) => unknown, stored: StoredEvent): EventDecodeError {
  try {
    decode(stored);
  } catch (error) {
    if (error instanceof EventDecodeError) return error;
    throw error;
  }
  throw new Error(`${stored.type} was read`);
}

describe('decode: good rows', () => {
  it.each([
    ['job', decodeJobEvent, Object.values(JOB_EXAMPLES)],
    ['organization', decodeOrgEvent, Object.values(ORG_EXAMPLES)],
    ['runner', decodeRunnerEvent, Object.values(RUNNER_EXAMPLES)],
    ['spec', decodeSpecEvent, Object.values(SPEC_EXAMPLES)],
  ] as const)('reads every %s event type at its current version as it was written', (_, decode, examples) => {
    for (const example of examples) {
      const stored = row(example);
      const event = (decode as (stored: StoredEvent) => DomainEvent)(stored);
      expect(event).toMatchObject({ type: example.type, schemaVersion: example.schemaVersion, data: example.data });
      expect(event).toBe(stored); // nothing to upcast: the row itself, typed
    }
  });

  it('reads a version-1 JobSubmitted as version 2, with no Idempotency-Key', () => {
    const { idempotency: _, ...v1 } = submittedData;
    const event = decodeJobEvent(row({ type: 'JobSubmitted', schemaVersion: 1, data: v1 }));
    expect(event).toMatchObject({ type: 'JobSubmitted', schemaVersion: 2, data: { ...v1, idempotency: null } });
    expect(JOB_EVENTS.read(row({ type: 'JobSubmitted', schemaVersion: 1, data: v1 })).problems).toEqual([]);
  });

  it('reads the other members of a job failure, a cancel by a user and a pending cancel', () => {
    const reported = { runnerId: RUNNER, attempt: 1, failure: 'nonzero_exit', exitCode: 3, error: 'exit status 3', finishedAt: AT, output: null };
    expect(decodeJobEvent(row({ type: 'JobFailed', schemaVersion: 1, data: reported })).data).toEqual(reported);
    const canceled = { attempt: 1, runnerId: null, failure: null, reason: 'canceled by admin', canceledAt: AT };
    expect(decodeJobEvent(row({ type: 'JobCanceled', schemaVersion: 1, data: canceled })).data).toEqual(canceled);
  });

  it('reads members an update leaves out, and the null no-ops an earlier build stored, as left out', () => {
    expect(decodeOrgEvent(row({ type: 'OrgUpdated', schemaVersion: 1, data: { maxConcurrency: null } })).data).toEqual({ maxConcurrency: null });
    expect(decodeOrgEvent(row({ type: 'OrgUpdated', schemaVersion: 1, data: { plan: null } })).data).toEqual({});
    expect(decodeRunnerEvent(row({ type: 'RunnerUpdated', schemaVersion: 1, data: { name: null, specIds: ['s'] } })).data).toEqual({ specIds: ['s'] });
    expect(decodeRunnerEvent(row({ type: 'RunnerUpdated', schemaVersion: 1, data: { name: 'New' } })).data).toEqual({ name: 'New' });
  });

  it('leaves members a type does not name to the reader (the audit compares them with the machine)', () => {
    const data = { ...JOB_EXAMPLES.JobClaimed.data, note: 'x' };
    expect(decodeJobEvent(row({ type: 'JobClaimed', schemaVersion: 1, data })).data).toEqual(data);
  });

  it('checks JobSubmitted at the version the upcasters lead to', () => {
    const { event } = JOB_EVENTS.read(row({ type: 'JobSubmitted', schemaVersion: 1, data: submittedData }));
    expect(event.schemaVersion).toBe(CURRENT_SCHEMA_VERSIONS.JobSubmitted);
  });
});

describe('decode: bad rows are refused, naming the event and the field', () => {
  it('a member missing', () => {
    const { fingerprint: _, ...data } = JOB_EXAMPLES.JobStarted.data;
    const error = refusal(decodeJobEvent, row({ type: 'JobStarted', schemaVersion: 1, data }, 5));
    expect(error.message).toBe(`cannot read JobStarted (schema version 1) at position 5 of stream ${JOB}: data.fingerprint: JobStarted has no fingerprint`);
    expect(error.problems).toEqual([{ field: 'data.fingerprint', reason: 'JobStarted has no fingerprint' }]);
    expect(error.code).toBe('unreadable_event');
  });

  it('members of the wrong kind, each one named', () => {
    const data = { ...submittedData, priority: '200', env: { A: 1 }, submittedAt: '2026-01-05 10:00', idempotency: { key: 'k' } };
    const error = refusal(decodeJobEvent, row({ type: 'JobSubmitted', schemaVersion: 2, data }));
    expect(error.problems).toEqual([
      { field: 'data.priority', actual: '200', reason: 'JobSubmitted has an invalid priority' },
      { field: 'data.env', actual: { A: 1 }, reason: 'JobSubmitted has an invalid env' },
      { field: 'data.idempotency', actual: { key: 'k' }, reason: 'JobSubmitted has an invalid idempotency' },
      { field: 'data.submittedAt', actual: '2026-01-05 10:00', reason: 'JobSubmitted has an invalid submittedAt' },
    ]);
    expect(error.message).toContain('data.priority: JobSubmitted has an invalid priority; data.env:');
  });

  it('a value outside its type: a plan, a failure, an architecture, a disconnect reason, an attempt', () => {
    expect(refusal(decodeOrgEvent, row({ type: 'OrgCreated', schemaVersion: 1, data: { ...ORG_EXAMPLES.OrgCreated.data, plan: 'gold' } })).problems).toEqual([
      { field: 'data.plan', actual: 'gold', reason: 'OrgCreated has an invalid plan' },
    ]);
    expect(refusal(decodeOrgEvent, row({ type: 'OrgUpdated', schemaVersion: 1, data: { maxConcurrency: 1.5 } })).problems).toEqual([
      { field: 'data.maxConcurrency', actual: 1.5, reason: 'OrgUpdated has an invalid maxConcurrency' },
    ]);
    expect(refusal(decodeJobEvent, row({ type: 'JobFailed', schemaVersion: 1, data: { ...JOB_EXAMPLES.JobFailed.data, failure: 'job_timeout' } })).problems).toEqual([
      { field: 'data.failure', actual: 'job_timeout', reason: 'JobFailed has an invalid failure' },
    ]);
    expect(refusal(decodeSpecEvent, row({ type: 'SpecCreated', schemaVersion: 1, data: { ...SPEC_EXAMPLES.SpecCreated.data, architecture: 'mips' } })).problems).toEqual([
      { field: 'data.architecture', actual: 'mips', reason: 'SpecCreated has an invalid architecture' },
    ]);
    expect(refusal(decodeRunnerEvent, row({ type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId: 'c1', reason: 'bored' } })).problems).toEqual([
      { field: 'data.reason', actual: 'bored', reason: 'RunnerDisconnected has an invalid reason' },
    ]);
    expect(refusal(decodeJobEvent, row({ type: 'JobClaimed', schemaVersion: 1, data: { ...JOB_EXAMPLES.JobClaimed.data, attempt: 0 } })).problems).toEqual([
      { field: 'data.attempt', actual: 0, reason: 'JobClaimed has an invalid attempt' },
    ]);
    expect(refusal(decodeRunnerEvent, row({ type: 'RunnerUpdated', schemaVersion: 1, data: { specIds: 's' } })).problems).toEqual([
      { field: 'data.specIds', actual: 's', reason: 'RunnerUpdated has an invalid specIds' },
    ]);
  });

  it('an event of another union, and a type no union has', () => {
    expect(refusal(decodeJobEvent, row(ORG_EXAMPLES.OrgCreated)).problems).toEqual([
      { field: 'type', actual: 'OrgCreated', reason: '"OrgCreated" is not a job event' },
    ]);
    expect(refusal(decodeOrgEvent, row(JOB_EXAMPLES.JobClaimed)).problems).toEqual([
      { field: 'type', actual: 'JobClaimed', reason: '"JobClaimed" is not an organization event' },
    ]);
    expect(refusal(decodeRunnerEvent, row({ type: 'RunnerExploded', schemaVersion: 1, data: {} })).message).toBe(
      `cannot read RunnerExploded (schema version 1) at position 3 of stream ${JOB}: type: "RunnerExploded" is not a runner event`,
    );
  });

  it('data that is not an object', () => {
    for (const data of [null, 'x', [1], 3]) {
      expect(refusal(decodeSpecEvent, row({ type: 'SpecCreated', schemaVersion: 1, data })).problems).toEqual([
        { field: 'data', actual: data, reason: 'SpecCreated data is not an object' },
      ]);
    }
  });

  it('a schema version this build does not read', () => {
    expect(refusal(decodeJobEvent, row({ type: 'JobClaimed', schemaVersion: 2, data: JOB_EXAMPLES.JobClaimed.data })).problems).toEqual([
      { field: 'schemaVersion', actual: 2, reason: 'JobClaimed has no schema version 2 (this build reads up to 1)' },
    ]);
    expect(refusal(decodeJobEvent, row({ type: 'JobSubmitted', schemaVersion: 3, data: submittedData })).problems).toEqual([
      { field: 'schemaVersion', actual: 3, reason: 'JobSubmitted has no schema version 3 (this build reads up to 2)' },
    ]);
  });

  it('read() names every problem and still gives the event, for the audit to fold', () => {
    const { fingerprint: _, ...data } = JOB_EXAMPLES.JobStarted.data;
    const reading = JOB_EVENTS.read(row({ type: 'JobStarted', schemaVersion: 1, data: { ...data, attempt: 'one' } }));
    expect(reading.event).toMatchObject({ type: 'JobStarted', data: { attempt: 'one' } });
    expect(reading.problems.map((p) => p.field)).toEqual(['data.attempt', 'data.fingerprint']);
    expect([JOB_EVENTS, ORG_EVENTS, RUNNER_EVENTS, SPEC_EVENTS].map((union) => union.has('JobStarted'))).toEqual([true, false, false, false]);
  });
});
