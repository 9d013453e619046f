import type { EventEnvelope } from '../../events/envelope';
import type { JobEvent } from '../../events/job-events';
import type { RunnerEvent } from '../../events/runner-events';
import { type RunnerStatusRow, foldRunnerStatus, foldRunners, runnersIn } from './runner.views';

const R1 = '00000000-0000-7000-8000-000000000001';
const R2 = '00000000-0000-7000-8000-000000000002';
const JOB = '00000000-0000-7000-8000-0000000000aa';
const C0 = '00000000-0000-4000-8000-0000000000c0';
const C1 = '00000000-0000-4000-8000-0000000000c1';
const C2 = '00000000-0000-4000-8000-0000000000c2';
const S1 = '00000000-0000-7000-8000-0000000000e1';
const S2 = '00000000-0000-7000-8000-0000000000e2';

const t = (second: number) => new Date(Date.UTC(2026, 0, 5, 0, 0, second)).toISOString();

let position = 0;
function envelope(streamType: string, streamId: string, event: { type: string; data: unknown }, at: string): EventEnvelope {
  position++;
  return { id: `e${position}`, streamId, streamType, position, globalPosition: position, type: event.type, schemaVersion: 1, data: event.data, metadata: { correlationId: 'c', causationId: null, actor: 'system' }, occurredAt: at, hash: '', prevHash: '' };
}
const runner = (id: string, event: Omit<RunnerEvent, 'schemaVersion'>, at: string) => envelope('runner', id, event, at);
const job = (event: Omit<JobEvent, 'schemaVersion'>, at: string) => envelope('job', JOB, event, at);

const registered = (id: string, at: string, specIds = [S1]) =>
  runner(id, { type: 'RunnerRegistered', data: { runnerId: id, slug: `slug-${id.slice(-1)}`, name: 'Runner', specIds, tokenHash: 'a'.repeat(64) } }, at);
const connected = (id: string, connectionId: string, at: string, fingerprint: Record<string, unknown> = { cores: 8 }) =>
  runner(id, { type: 'RunnerConnected', data: { connectionId, gateway: `gw-${connectionId.slice(-2)}`, agentVersion: '1.0.0', capacity: 1, fingerprint } }, at);
const disconnected = (id: string, connectionId: string, at: string, reason: 'closed' | 'gateway_lost' = 'closed') =>
  runner(id, { type: 'RunnerDisconnected', data: { connectionId, reason } }, at);
const claimed = (runnerId: string, at: string) => job({ type: 'JobClaimed', data: { runnerId, attempt: 1, claimedAt: at } }, at);

/** A status row as the view holds it before the batch (times as PostgreSQL prints them in JSON). */
const row = (runnerId: string, fields: Partial<RunnerStatusRow> = {}): RunnerStatusRow => ({
  runner_id: runnerId,
  connected: false,
  connection_id: null,
  gateway: null,
  connected_at: null,
  last_seen_at: null,
  fingerprint: null,
  ...fields,
});
const online = (runnerId: string, connectionId: string) =>
  row(runnerId, { connected: true, connection_id: connectionId, gateway: 'gw-old', connected_at: '2026-01-04T00:00:00+00:00', last_seen_at: '2026-01-04T00:10:00+00:00', fingerprint: '{"cores": 4}' });

describe('foldRunnerStatus', () => {
  it('creates the row of a runner registered in the batch and connects it', () => {
    expect(foldRunnerStatus([], [registered(R1, t(0)), connected(R1, C1, t(1), { cores: 8, cpuModel: 'EPYC' })])).toEqual([
      row(R1, { connected: true, connection_id: C1, gateway: 'gw-c1', connected_at: t(1), last_seen_at: t(1), fingerprint: '{"cores":8,"cpuModel":"EPYC"}' }),
    ]);
  });

  it('leaves a row that is there alone when the runner is registered again, and writes nothing', () => {
    expect(foldRunnerStatus([online(R1, C0)], [registered(R1, t(0))])).toEqual([]);
  });

  it('ignores connections and job events of a runner without a row', () => {
    expect(foldRunnerStatus([], [connected(R1, C1, t(1)), claimed(R1, t(2)), disconnected(R1, C1, t(3))])).toEqual([]);
  });

  it('follows a disconnect, a reconnect and a late disconnect of the old connection within one batch', () => {
    const events = [
      disconnected(R1, C0, t(1)), // the connection the row holds: applies
      connected(R1, C1, t(2)),
      disconnected(R1, C0, t(3), 'gateway_lost'), // the old connection again: the row holds C1 now
      claimed(R1, t(4)),
    ];
    expect(foldRunnerStatus([online(R1, C0)], events)).toEqual([
      row(R1, { connected: true, connection_id: C1, gateway: 'gw-c1', connected_at: t(2), last_seen_at: t(4), fingerprint: '{"cores":8}' }),
    ]);
  });

  it('connects, disconnects and reconnects within one batch, each disconnect matched against the connection held then', () => {
    const events = [
      registered(R1, t(0)),
      connected(R1, C1, t(1)),
      disconnected(R1, C1, t(2)),
      connected(R1, C2, t(3)),
      disconnected(R1, C1, t(4)), // C1 again, after C2 took over: nothing
    ];
    expect(foldRunnerStatus([], events)).toEqual([
      row(R1, { connected: true, connection_id: C2, gateway: 'gw-c2', connected_at: t(3), last_seen_at: t(3), fingerprint: '{"cores":8}' }),
    ]);
  });

  it('ends a batch disconnected when the last disconnect matches; only a closed connection counts as seen', () => {
    const closed = foldRunnerStatus([online(R1, C0)], [connected(R1, C1, t(1)), claimed(R1, t(2)), disconnected(R1, C1, t(3))]);
    expect(closed).toEqual([row(R1, { connected_at: t(1), last_seen_at: t(3), fingerprint: '{"cores":8}' })]);
    const lost = foldRunnerStatus([online(R1, C0)], [connected(R1, C1, t(1)), claimed(R1, t(2)), disconnected(R1, C1, t(3), 'gateway_lost')]);
    expect(lost).toEqual([row(R1, { connected_at: t(1), last_seen_at: t(2), fingerprint: '{"cores":8}' })]);
  });

  it('does not apply a second disconnect of the same connection', () => {
    const events = [disconnected(R1, C0, t(1), 'gateway_lost'), disconnected(R1, C0, t(2))];
    expect(foldRunnerStatus([online(R1, C0)], events)).toEqual([
      row(R1, { connected_at: '2026-01-04T00:00:00+00:00', last_seen_at: '2026-01-04T00:10:00+00:00', fingerprint: '{"cores": 4}' }),
    ]);
  });

  it('writes nothing for a disconnect of a connection the row does not hold', () => {
    expect(foldRunnerStatus([online(R1, C0)], [disconnected(R1, C1, t(1))])).toEqual([]);
    expect(foldRunnerStatus([row(R1)], [disconnected(R1, C1, t(1))])).toEqual([]);
  });

  it('matches ids whatever their case, as PostgreSQL compares uuids', () => {
    const events = [disconnected(R1.toUpperCase(), C0.toUpperCase(), t(1)), claimed(R1.toUpperCase(), t(2))];
    expect(foldRunnerStatus([online(R1, C0)], events)).toEqual([
      row(R1, { connected_at: '2026-01-04T00:00:00+00:00', last_seen_at: t(2), fingerprint: '{"cores": 4}' }),
    ]);
  });

  it('counts as seen only the job events the runner caused itself', () => {
    const before = [online(R1, C0), online(R2, C0)];
    const events = [
      claimed(R1, t(1)),
      job({ type: 'JobStarted', data: { runnerId: R1, attempt: 1, startedAt: t(2), fingerprint: null } }, t(2)),
      job({ type: 'JobFailed', data: { runnerId: R1, attempt: 1, failure: 'heartbeat_timeout', exitCode: null, error: null, finishedAt: t(3), output: null } }, t(3)),
      job({ type: 'JobCanceled', data: { attempt: 1, runnerId: R2, failure: null, reason: 'by admin', canceledAt: t(4) } }, t(4)),
      job({ type: 'JobRequeued', data: { previousRunnerId: R2, previousAttempt: 1, attempt: 2, reason: 'claim_timeout', requeuedAt: t(5) } }, t(5)),
      job({ type: 'JobCancelAcknowledged', data: { runnerId: R2, attempt: 1, acknowledgedAt: t(6) } }, t(6)),
      job({ type: 'JobFailed', data: { runnerId: R2, attempt: 2, failure: 'nonzero_exit', exitCode: 1, error: 'exit status 1', finishedAt: t(7), output: null } }, t(7)),
    ];
    const after = foldRunnerStatus(before, events);
    expect(after.map((r) => [r.runner_id, r.last_seen_at])).toEqual([
      [R1, t(2)],
      [R2, t(7)],
    ]);
    expect(after.every((r) => r.connected && r.connection_id === C0)).toBe(true);
  });

  it('does not change the rows it was given', () => {
    const before = [online(R1, C0)];
    foldRunnerStatus(before, [disconnected(R1, C0, t(1))]);
    expect(before).toEqual([online(R1, C0)]);
  });
});

describe('runnersIn', () => {
  it('names the runner streams and the runners job events name, once each', () => {
    const events = [registered(R1, t(0)), claimed(R2, t(1)), connected(R1, C1, t(2)), claimed(R2.toUpperCase(), t(3)), job({ type: 'JobRequeued', data: { previousRunnerId: R1, previousAttempt: 1, attempt: 2, reason: 'claim_timeout', requeuedAt: t(4) } }, t(4))];
    expect(runnersIn(events)).toEqual([R1, R2]);
    expect(runnersIn([envelope('org', R1, { type: 'OrgCreated', data: {} }, t(0))])).toEqual([]);
  });
});

describe('foldRunners', () => {
  it('inserts a runner registered in the batch with what the rest of the batch changed', () => {
    const events = [
      registered(R1, t(0), [S1]),
      runner(R1, { type: 'RunnerTokenRotated', data: { tokenHash: 'b'.repeat(64) } }, t(1)),
      runner(R1, { type: 'RunnerUpdated', data: { name: 'Renamed', specIds: [S1, S2] } }, t(2)),
      connected(R1, C1, t(3)),
      runner(R1, { type: 'RunnerArchived', data: {} }, t(4)),
      disconnected(R1, C1, t(5)),
    ];
    expect(foldRunners(events)).toEqual({
      inserts: [{ id: R1, slug: 'slug-1', name: 'Renamed', token_hash: 'b'.repeat(64), archived: true, created_at: t(0), updated_at: t(4) }],
      updates: [],
      specs: [{ runnerId: R1, specIds: [S1, S2] }],
    });
  });

  it('updates a runner registered before the batch, column by column, and replaces its specs with the last list', () => {
    const events = [
      runner(R1, { type: 'RunnerArchived', data: {} }, t(1)),
      runner(R1, { type: 'RunnerUpdated', data: { specIds: [S2] } }, t(2)),
      runner(R2, { type: 'RunnerUpdated', data: { name: 'Two' } }, t(3)),
      runner(R1, { type: 'RunnerUnarchived', data: {} }, t(4)),
      runner(R1, { type: 'RunnerUpdated', data: { specIds: [] } }, t(5)),
    ];
    expect(foldRunners(events)).toEqual({
      inserts: [],
      updates: [
        { id: R1, token_hash: null, name: null, archived: false, updated_at: t(5) },
        { id: R2, token_hash: null, name: 'Two', archived: null, updated_at: t(3) },
      ],
      specs: [{ runnerId: R1, specIds: [] }],
    });
  });

  it('writes nothing for connections, or for other streams', () => {
    expect(foldRunners([connected(R1, C1, t(1)), disconnected(R1, C1, t(2)), claimed(R1, t(3))])).toEqual({ inserts: [], updates: [], specs: [] });
  });
});
