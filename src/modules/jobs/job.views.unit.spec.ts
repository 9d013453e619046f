import type { EventEnvelope } from '../../events/envelope';
import type { JobEvent, JobSubmittedData } from '../../events/job-events';
import { foldBilling, foldIdempotencyKeys } from './job.views';

const J1 = '00000000-0000-7000-8000-0000000000a1';
const J2 = '00000000-0000-7000-8000-0000000000a2';
const J3 = '00000000-0000-7000-8000-0000000000a3';
const ORG = '00000000-0000-7000-8000-0000000000b1';
const OTHER_ORG = '00000000-0000-7000-8000-0000000000b2';
const RUNNER = '00000000-0000-7000-8000-0000000000c1';

const t = (minute: number) => new Date(Date.UTC(2026, 0, 5, 0, minute)).toISOString();

let position = 0;
function envelope(streamType: string, streamId: string, event: { type: string; data: unknown }): EventEnvelope {
  position++;
  return { id: `e${position}`, streamId, streamType, position, globalPosition: position, type: event.type, schemaVersion: 1, data: event.data, metadata: { correlationId: 'c', causationId: null, actor: 'system' }, occurredAt: t(0), hash: '', prevHash: '' };
}
const job = (id: string, event: Omit<JobEvent, 'schemaVersion'>) => envelope('job', id, event);

const started = (id: string, at: string, attempt = 1) => job(id, { type: 'JobStarted', data: { runnerId: RUNNER, attempt, startedAt: at, fingerprint: null } });
const completed = (id: string, at: string) => job(id, { type: 'JobCompleted', data: { runnerId: RUNNER, attempt: 1, exitCode: 0, finishedAt: at, output: null } });
const failed = (id: string, at: string) =>
  job(id, { type: 'JobFailed', data: { runnerId: RUNNER, attempt: 1, failure: 'nonzero_exit', exitCode: 2, error: 'exit status 2', finishedAt: at, output: null } });
const canceled = (id: string, at: string) => job(id, { type: 'JobCanceled', data: { attempt: 1, runnerId: RUNNER, failure: null, reason: 'by admin', canceledAt: at } });
const requeued = (id: string, at: string) =>
  job(id, { type: 'JobRequeued', data: { previousRunnerId: RUNNER, previousAttempt: 1, attempt: 2, reason: 'heartbeat_timeout', requeuedAt: at } });

describe('foldBilling', () => {
  it('inserts a job started and finished in one batch with its end (and offers the finish to a row that was there)', () => {
    expect(foldBilling([started(J1, t(1)), completed(J1, t(5))])).toEqual({
      finishes: [{ job_id: J1, finished_at: t(5) }],
      starts: [{ job_id: J1, started_at: t(1), finished_at: t(5) }],
    });
  });

  it('finishes a job whose start was in an earlier batch', () => {
    expect(foldBilling([failed(J1, t(7)), canceled(J2, t(8))])).toEqual({
      finishes: [
        { job_id: J1, finished_at: t(7) },
        { job_id: J2, finished_at: t(8) },
      ],
      starts: [],
    });
  });

  it('inserts a job started in the batch and still running without an end', () => {
    expect(foldBilling([started(J1, t(1))])).toEqual({ finishes: [], starts: [{ job_id: J1, started_at: t(1), finished_at: null }] });
  });

  it('keeps the first start of a job started again after a requeue, and its first finish', () => {
    const events = [started(J1, t(1)), requeued(J1, t(3)), started(J1, t(4), 2), completed(J1, t(9)), canceled(J1, t(10))];
    expect(foldBilling(events)).toEqual({
      finishes: [{ job_id: J1, finished_at: t(9) }],
      starts: [{ job_id: J1, started_at: t(1), finished_at: t(9) }],
    });
  });

  it('gives a row inserted by the batch only a finish that comes after its start', () => {
    // A finish before the start reaches only a row that was there before the batch.
    expect(foldBilling([canceled(J1, t(2)), started(J1, t(3)), completed(J1, t(6))])).toEqual({
      finishes: [{ job_id: J1, finished_at: t(2) }],
      starts: [{ job_id: J1, started_at: t(3), finished_at: t(6) }],
    });
  });

  it('keeps jobs apart and ignores the events that do not bill', () => {
    const events = [
      started(J1, t(1)),
      job(J2, { type: 'JobClaimed', data: { runnerId: RUNNER, attempt: 1, claimedAt: t(1) } }),
      started(J2, t(2)),
      completed(J1, t(4)),
      job(J1, { type: 'JobCancelAcknowledged', data: { runnerId: RUNNER, attempt: 1, acknowledgedAt: t(5) } }),
      envelope('runner', RUNNER, { type: 'RunnerConnected', data: {} }),
      canceled(J3, t(6)),
    ];
    expect(foldBilling(events)).toEqual({
      finishes: [
        { job_id: J1, finished_at: t(4) },
        { job_id: J3, finished_at: t(6) },
      ],
      starts: [
        { job_id: J1, started_at: t(1), finished_at: t(4) },
        { job_id: J2, started_at: t(2), finished_at: null },
      ],
    });
  });
});

describe('foldIdempotencyKeys', () => {
  const submission: Omit<JobSubmittedData, 'jobId' | 'orgId' | 'idempotency' | 'submittedAt'> = {
    projectId: '00000000-0000-7000-8000-0000000000d1',
    spec: 'x86',
    specId: '00000000-0000-7000-8000-0000000000e1',
    plan: 'team',
    priority: 200,
    image: null,
    cmd: ['true'],
    entrypoint: null,
    env: {},
    timeout: 60,
    filePaths: [],
    maxAttempts: 1,
    sourceIp: null,
  };
  // Version 2 (a version-1 submission is read with no key).
  const submitted = (jobId: string, orgId: string, key: string | null, at: string): EventEnvelope => ({
    ...job(jobId, {
      type: 'JobSubmitted',
      data: { ...submission, jobId, orgId, idempotency: key === null ? null : { key, requestHash: `hash-${jobId.slice(-2)}` }, submittedAt: at },
    }),
    schemaVersion: 2,
  });

  it('keeps the last submission of each (organization, key), in log order', () => {
    const events = [
      submitted(J1, ORG, 'build-1', t(1)),
      submitted(J2, OTHER_ORG, 'build-1', t(2)),
      submitted(J3, ORG.toUpperCase(), 'build-1', t(3)), // the same organization: uuids compare whatever their case
      submitted(J2, ORG, 'build-2', t(4)),
      submitted(J1, ORG, null, t(5)),
    ];
    expect(foldIdempotencyKeys(events)).toEqual([
      { org_id: ORG.toUpperCase(), key: 'build-1', request_hash: 'hash-a3', job_id: J3, job_ids: [J3], created_at: t(3) },
      { org_id: OTHER_ORG, key: 'build-1', request_hash: 'hash-a2', job_id: J2, job_ids: [J2], created_at: t(2) },
      { org_id: ORG, key: 'build-2', request_hash: 'hash-a2', job_id: J2, job_ids: [J2], created_at: t(4) },
    ]);
  });

  it('gathers a batch submission’s jobs under its key, in log order: same key, request hash and time', () => {
    const batched = (jobId: string, requestHash: string, at: string): EventEnvelope => {
      const envelope = submitted(jobId, ORG, 'matrix', at);
      const data = envelope.data as JobSubmittedData;
      return { ...envelope, data: { ...data, idempotency: { key: 'matrix', requestHash } } };
    };
    expect(foldIdempotencyKeys([batched(J2, 'h-batch', t(1)), batched(J1, 'h-batch', t(1)), batched(J3, 'h-batch', t(1))])).toEqual([
      { org_id: ORG, key: 'matrix', request_hash: 'h-batch', job_id: J2, job_ids: [J2, J1, J3], created_at: t(1) },
    ]);
    // The key reused after its window (a later time), even with the same body: a new request.
    expect(foldIdempotencyKeys([batched(J1, 'h-batch', t(1)), batched(J2, 'h-batch', t(1)), batched(J3, 'h-batch', t(9))])).toEqual([
      { org_id: ORG, key: 'matrix', request_hash: 'h-batch', job_id: J3, job_ids: [J3], created_at: t(9) },
    ]);
    // Another request at the same time: not the same batch.
    expect(foldIdempotencyKeys([batched(J1, 'h-one', t(1)), batched(J2, 'h-two', t(1))])).toEqual([
      { org_id: ORG, key: 'matrix', request_hash: 'h-two', job_id: J2, job_ids: [J2], created_at: t(1) },
    ]);
  });

  it('tells keys apart exactly', () => {
    const rows = foldIdempotencyKeys([submitted(J1, ORG, 'Build', t(1)), submitted(J2, ORG, 'build', t(2)), submitted(J3, ORG, 'build ', t(3))]);
    expect(rows.map((r) => r.key)).toEqual(['Build', 'build', 'build ']);
  });

  it('ignores other events and streams', () => {
    expect(foldIdempotencyKeys([started(J1, t(1)), envelope('org', ORG, { type: 'JobSubmitted', data: {} })])).toEqual([]);
  });
});
