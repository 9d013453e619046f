import type { EventEnvelope } from '../../events/envelope';
import type { QueryResultRows, Sql } from '../database/db';
import { compareLogPositions } from '../event-store/checkpoints';
import { JobOwners, UnknownJobOwnerError } from './job-owners';

/** The first events of job streams, answering the one query JobOwners makes; counts the queries. */
class FirstEvents implements Sql {
  queries = 0;
  constructor(private readonly first: Record<string, unknown>) {}

  async query<T>(_text: string, params: readonly unknown[] = []): Promise<QueryResultRows<T>> {
    this.queries++;
    const data = this.first[params[0] as string];
    return { rows: (data === undefined ? [] : [{ data }]) as T[], rowCount: data === undefined ? 0 : 1 };
  }
}

const event = (streamId: string, type: string, data: unknown = {}): EventEnvelope =>
  ({ id: `${streamId}-${type}`, streamId, streamType: 'job', position: 2, type, data }) as EventEnvelope;

describe('JobOwners', () => {
  const owner = (n: number) => ({ orgId: `org-${n}`, projectId: `project-${n}` });

  it('reads a job owner once, then answers from memory', async () => {
    const sql = new FirstEvents({ j1: { jobId: 'j1', ...owner(1) } });
    const owners = new JobOwners();
    expect(await owners.of(event('j1', 'JobClaimed'), sql)).toEqual(owner(1));
    expect(await owners.of(event('j1', 'JobStarted'), sql)).toEqual(owner(1));
    expect(sql.queries).toBe(1);
  });

  it('takes the owner from a JobSubmitted event without a query', async () => {
    const sql = new FirstEvents({});
    const owners = new JobOwners();
    await owners.of(event('j1', 'JobSubmitted', { jobId: 'j1', ...owner(1) }), sql);
    expect(await owners.of(event('j1', 'JobClaimed'), sql)).toEqual(owner(1));
    expect(sql.queries).toBe(0);
  });

  it('forgets the least recently used job first', async () => {
    const sql = new FirstEvents({ j1: owner(1), j2: owner(2), j3: owner(3) });
    const owners = new JobOwners(2);
    await owners.of(event('j1', 'JobClaimed'), sql);
    await owners.of(event('j2', 'JobClaimed'), sql);
    await owners.of(event('j1', 'JobStarted'), sql); // j1 is now the most recent
    await owners.of(event('j3', 'JobClaimed'), sql); // evicts j2
    expect(owners.size).toBe(2);
    expect(sql.queries).toBe(3);
    await owners.of(event('j1', 'JobCompleted'), sql);
    expect(sql.queries).toBe(3);
    await owners.of(event('j2', 'JobCompleted'), sql);
    expect(sql.queries).toBe(4);
  });

  it('finds a job by id for the events feed: null for no such job, which is not remembered', async () => {
    const first: Record<string, unknown> = {};
    const sql = new FirstEvents(first);
    const owners = new JobOwners();
    expect(await owners.find('j1', sql)).toBeNull();
    expect(await owners.find('bad', new FirstEvents({ bad: { orgId: 'o', projectId: null } }))).toBeNull();
    first.j1 = owner(1); // the job is submitted after all
    expect(await owners.find('j1', sql)).toEqual(owner(1));
    expect(await owners.find('j1', sql)).toEqual(owner(1));
    expect(sql.queries).toBe(2);
    expect(await owners.of(event('j1', 'JobStarted'), sql)).toEqual(owner(1));
    expect(sql.queries).toBe(2);
  });

  it('refuses a job without a JobSubmitted that names org and project', async () => {
    const owners = new JobOwners();
    await expect(owners.of(event('missing', 'JobClaimed'), new FirstEvents({}))).rejects.toBeInstanceOf(UnknownJobOwnerError);
    await expect(owners.of(event('bad', 'JobClaimed'), new FirstEvents({ bad: { orgId: 1 } }))).rejects.toBeInstanceOf(UnknownJobOwnerError);
  });
});

describe('compareLogPositions', () => {
  it('orders by transaction id, then global position, beyond 2^53', () => {
    const big = (t: string, g: number) => ({ transactionId: t, globalPosition: g });
    expect(compareLogPositions(big('9007199254740993', 1), big('9007199254740992', 9))).toBeGreaterThan(0);
    expect(compareLogPositions(big('10', 5), big('10', 7))).toBeLessThan(0);
    expect(compareLogPositions(big('10', 7), big('10', 7))).toBe(0);
    expect(compareLogPositions(big('0', 0), big('1', 0))).toBeLessThan(0);
  });
});
