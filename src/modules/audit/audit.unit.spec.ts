import fc from 'fast-check';
import type { StoredEvent } from '../../events/decode';
import { type EventEnvelope, GENESIS_HASH, hashEvent } from '../../events/envelope';
import type { JobEvent, JobSubmittedData } from '../../events/job-events';
import { type JobCommand, type JobState, decide, fold } from '../../machines/job.machine';
import { verifyChain } from '../event-store/event-store';
import { ChainVerifier } from './chain';
import type { AuditViews } from './audit-views';
import { JobReplay } from './job.audit';
import { OrgStreamAudit } from './org.audit';
import { RunnerStreamAudit } from './runner.audit';
import { SpecStreamAudit } from './spec.audit';

const JOB_ID = '01940000-0000-7000-8000-000000000001';
const RUNNER = '01940000-0000-7000-8000-0000000000aa';
const OTHER_RUNNER = '01940000-0000-7000-8000-0000000000bb';

const job = (maxAttempts: number): Omit<JobSubmittedData, 'submittedAt'> => ({
  jobId: JOB_ID,
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
  maxAttempts,
  sourceIp: '192.0.2.1',
  idempotency: null,
});

const at = (step: number) => new Date(Date.UTC(2026, 0, 1) + step * 1000).toISOString();

/** Stored envelopes for `events` (whatever their shape), hashed and linked as EventStore.append does. */
function stored(events: readonly StoredEvent[]): EventEnvelope[] {
  let prevHash = GENESIS_HASH;
  return events.map((event, i) => {
    const unhashed = {
      id: `01940000-0000-7000-8000-${String(i).padStart(12, '0')}`,
      streamId: JOB_ID,
      streamType: 'job',
      position: i + 1,
      globalPosition: 100 + i,
      type: event.type,
      schemaVersion: event.schemaVersion,
      data: JSON.parse(JSON.stringify(event.data)),
      metadata: { correlationId: 'c', causationId: null, actor: 'system' as const },
      occurredAt: at(i),
      prevHash,
    };
    prevHash = hashEvent(unhashed);
    return { ...unhashed, hash: prevHash };
  });
}

/** The events the machine records for `commands` (each must be accepted). */
function run(...commands: JobCommand[]): JobEvent[] {
  const events: JobEvent[] = [];
  for (const command of commands) events.push(...decide(fold(events), command));
  return events;
}

function replay(envelopes: readonly EventEnvelope[]): JobReplay {
  const replayed = new JobReplay(JOB_ID);
  for (const envelope of envelopes) replayed.push(envelope);
  return replayed;
}

const lifecycle = () =>
  run(
    { type: 'submit', at: at(0), job: job(2) },
    { type: 'claim', at: at(1), runnerId: RUNNER },
    { type: 'claimTimeout', at: at(2), attempt: 1 },
    { type: 'claim', at: at(3), runnerId: RUNNER },
    { type: 'start', at: at(4), runnerId: RUNNER, attempt: 2, fingerprint: { cores: 4 } },
    { type: 'jobTimeout', at: at(200), attempt: 2 },
    { type: 'acknowledgeCancel', at: at(201), runnerId: RUNNER, attempt: 2 },
  );

describe('JobReplay', () => {
  it('verifies what the machine recorded, and expects billing like the projection', () => {
    const replayed = replay(stored(lifecycle()));
    expect(replayed.divergences).toEqual([]);
    expect(replayed.state).toMatchObject({ status: 'canceled', failure: 'job_timeout', attempt: 2, cancelAcknowledged: true, version: 7 });
    expect(replayed.billing).toEqual({ startedAt: at(4), finishedAt: at(200) });
  });

  it('reads a version-1 JobSubmitted as version 2 (upcast before the replay)', () => {
    const [submitted, ...rest] = lifecycle();
    const { idempotency: _, ...v1data } = (submitted as Extract<JobEvent, { type: 'JobSubmitted' }>).data;
    const v1: StoredEvent = { ...submitted, schemaVersion: 1, data: v1data };
    expect(replay(stored([v1, ...rest])).divergences).toEqual([]);
  });

  it('names an event from a runner that does not hold the job', () => {
    const events = run(
      { type: 'submit', at: at(0), job: job(1) },
      { type: 'claim', at: at(1), runnerId: RUNNER },
      { type: 'start', at: at(2), runnerId: RUNNER, attempt: 1 },
    );
    const bogus: JobEvent = {
      type: 'JobCompleted',
      schemaVersion: 1,
      data: { runnerId: OTHER_RUNNER, attempt: 1, exitCode: 0, finishedAt: at(3), output: null },
    };
    const divergences = replay(stored([...events, bogus])).divergences;
    expect(divergences).toEqual([expect.objectContaining({ position: 4, reason: expect.stringContaining('refuses the complete') })]);
  });

  it('names a value the machine would not have recorded, a missing member, and an extra one', () => {
    const events: StoredEvent[] = lifecycle();
    // A member the machine derives (not one the command carries), that later events do not depend on.
    const requeued = events[2] as Extract<JobEvent, { type: 'JobRequeued' }>;
    events[2] = { ...requeued, data: { ...requeued.data, previousRunnerId: OTHER_RUNNER } };
    const started = events[4] as Extract<JobEvent, { type: 'JobStarted' }>;
    const { fingerprint: _, ...withoutFingerprint } = started.data;
    events[4] = { ...started, data: withoutFingerprint };
    const acknowledged = events[6] as Extract<JobEvent, { type: 'JobCancelAcknowledged' }>;
    events[6] = { ...acknowledged, data: { ...acknowledged.data, note: 'x' } };
    const divergences = replay(stored(events)).divergences;
    expect(divergences).toEqual([
      expect.objectContaining({ position: 3, field: 'data.previousRunnerId', expected: RUNNER, actual: OTHER_RUNNER }),
      expect.objectContaining({ position: 5, field: 'data.fingerprint', reason: 'JobStarted has no fingerprint' }),
      expect.objectContaining({ position: 7, field: 'data.note', expected: null, actual: 'x' }),
    ]);
  });

  it('names a requeue the machine would have made a failure (no attempts left), and a stream that does not start with a submission', () => {
    const events = run({ type: 'submit', at: at(0), job: job(1) }, { type: 'claim', at: at(1), runnerId: RUNNER });
    const requeued: JobEvent = {
      type: 'JobRequeued',
      schemaVersion: 1,
      data: { previousRunnerId: RUNNER, previousAttempt: 1, attempt: 2, reason: 'claim_timeout', requeuedAt: at(2) },
    };
    expect(replay(stored([...events, requeued])).divergences).toEqual([
      expect.objectContaining({ position: 3, field: 'type', expected: 'JobFailed', actual: 'JobRequeued' }),
    ]);
    // Refused by the machine, and then by the fold, which stops there.
    const headless = replay(stored(events.slice(1)));
    expect(headless.divergences).toEqual([
      expect.objectContaining({ position: 1, reason: expect.stringContaining('not submitted') }),
      expect.objectContaining({ position: 1, reason: expect.stringContaining('JobClaimed before JobSubmitted') }),
    ]);
    expect(headless.broken).toBe(true);
  });

  it('holds for every stream the machine can record (property)', () => {
    const command = fc.oneof(
      fc.constant('claim'),
      fc.constant('start'),
      fc.constant('complete'),
      fc.constant('fail'),
      fc.constant('cancel'),
      fc.constant('claimTimeout'),
      fc.constant('heartbeatTimeout'),
      fc.constant('jobTimeout'),
      fc.constant('acknowledgeCancel'),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(command, { maxLength: 25 }), fc.option(fc.integer({ min: 0, max: 3 })), (maxAttempts, drafts, exitCode) => {
        const events = run({ type: 'submit', at: at(0), job: job(maxAttempts) });
        drafts.forEach((type, i) => {
          const state = fold(events) as JobState;
          const runnerId = state.runnerId ?? RUNNER;
          const { attempt } = state;
          const time = at(i + 1);
          const next: JobCommand =
            type === 'claim' ? { type, at: time, runnerId }
            : type === 'start' ? { type, at: time, runnerId, attempt, fingerprint: { i } }
            : type === 'complete' ? { type, at: time, runnerId, attempt, exitCode: 0 }
            : type === 'fail' ? { type, at: time, runnerId, attempt, error: 'boom', exitCode }
            : type === 'cancel' ? { type, at: time, reason: 'user' }
            : type === 'acknowledgeCancel' ? { type, at: time, runnerId, attempt }
            : { type, at: time, attempt };
          try {
            events.push(...decide(state, next));
          } catch {
            // refused: nothing recorded
          }
        });
        const replayed = replay(stored(events));
        expect(replayed.divergences).toEqual([]);
        expect(replayed.state).toEqual(fold(events));
      }),
      { numRuns: 300 },
    );
  });
});

describe('ChainVerifier', () => {
  it('agrees with verifyChain, and names every event changed on its own', () => {
    const events = stored(lifecycle());
    const verify = (list: EventEnvelope[]) => {
      const chain = new ChainVerifier();
      list.forEach((e) => chain.push(e));
      return chain;
    };
    expect(verify(events).breaks).toEqual([]);
    expect(verifyChain(events)).toEqual({ valid: true, eventCount: 7 });

    const tampered = events.map((e) => ({ ...e }));
    tampered[2] = { ...tampered[2], data: { ...(tampered[2].data as object), attempt: 9 } };
    tampered[5] = { ...tampered[5], occurredAt: at(999) };
    const chain = verify(tampered);
    expect(chain.breaks.map((b) => [b.position, b.reason])).toEqual([
      [3, 'hash does not match the event'],
      [6, 'hash does not match the event'],
    ]);
    expect(verifyChain(tampered)).toMatchObject({ valid: false, brokenAt: 3, reason: 'hash does not match the event' });

    const gap = [...events.slice(0, 3), ...events.slice(4)];
    expect(verify(gap).breaks.map((b) => [b.position, b.reason])).toEqual([[5, 'expected position 4']]);
    expect(verifyChain(gap)).toMatchObject({ valid: false, brokenAt: 5, reason: 'expected position 4' });

    const relinked = events.map((e) => ({ ...e }));
    relinked[1] = { ...relinked[1], prevHash: 'f'.repeat(64) };
    expect(verify(relinked).breaks.map((b) => [b.position, b.field])).toEqual([[2, 'prevHash']]);
  });

  it('sees events cut off the end through the stream head', () => {
    const events = stored(lifecycle());
    const chain = new ChainVerifier();
    events.slice(0, 5).forEach((e) => chain.push(e));
    chain.end('job', { streamType: 'job', version: 7, lastHash: events[6].hash });
    expect(chain.breaks).toEqual([expect.objectContaining({ field: 'streams.version', expected: 5, actual: 7 })]);
  });
});

describe('organization, runner and spec audits read with their union', () => {
  const noViews: AuditViews = {
    heads: new Map(),
    jobs: new Map(),
    billing: new Map(),
    billingCheckpoint: null,
    orgs: new Map(),
    orgKeys: new Map(),
    projects: new Map(),
    runners: new Map(),
    specs: new Map(),
  };
  const ORG = '01940000-0000-7000-8000-0000000000c1';

  it('names a member missing or of the wrong kind, and reads on', () => {
    const org = new OrgStreamAudit(ORG);
    stored([
      { type: 'OrgCreated', schemaVersion: 1, data: { orgId: ORG, name: 'Acme', plan: 'team', maxConcurrency: null } },
      { type: 'OrgUpdated', schemaVersion: 1, data: { plan: 'gold' } },
      { type: 'ProjectCreated', schemaVersion: 1, data: { projectId: 'p', slug: 'web', name: 'Web' } },
    ]).forEach((event) => org.push(event));
    const { divergences } = org.finish(noViews);
    expect(divergences.filter((d) => d.field?.startsWith('data.'))).toEqual([
      { position: 1, field: 'data.slug', reason: 'OrgCreated has no slug' },
      { position: 2, field: 'data.plan', actual: 'gold', reason: 'OrgUpdated has an invalid plan' },
    ]);
    expect(divergences).toContainEqual(expect.objectContaining({ reason: 'project p has no row in the projects view' }));

    const runner = new RunnerStreamAudit(RUNNER);
    stored([
      { type: 'RunnerRegistered', schemaVersion: 1, data: { runnerId: RUNNER, slug: 'r1', name: 'R1', specIds: ['s'], tokenHash: 'h' } },
      { type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId: 'c1', reason: 'bored' } },
    ]).forEach((event) => runner.push(event));
    expect(runner.finish(noViews).divergences).toContainEqual({ position: 2, field: 'data.reason', actual: 'bored', reason: 'RunnerDisconnected has an invalid reason' });
  });

  it('stops at an event of another union', () => {
    const runner = new RunnerStreamAudit(RUNNER);
    stored([{ type: 'OrgKeyRevoked', schemaVersion: 1, data: { keyId: 'k' } }]).forEach((event) => runner.push(event));
    expect(runner.finish(noViews).divergences).toEqual([{ position: 1, field: 'type', actual: 'OrgKeyRevoked', reason: '"OrgKeyRevoked" is not a runner event' }]);
  });

  it('reads no spec from a SpecCreated without data', () => {
    const spec = new SpecStreamAudit('s');
    stored([{ type: 'SpecCreated', schemaVersion: 1, data: null }]).forEach((event) => spec.push(event));
    expect(spec.finish(noViews).divergences).toEqual([
      { position: 1, field: 'data', actual: null, reason: 'SpecCreated data is not an object' },
      { reason: 'the spec stream has no SpecCreated' },
    ]);
  });
});
