import type { Plan } from '../../events/job-events';
import { PLAN_PRIORITY } from '../../events/job-events';
import { type PendingJob, type Placed, orderQueue } from './queue-order';
import { type SpecLoad, describeQueue, limitGroup } from './queue-view';

const now = new Date('2026-05-01T12:00:00.000Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000).toISOString();

const job = (id: string, orgId: string, plan: Plan, extra: Partial<PendingJob> = {}): PendingJob => ({
  id,
  orgId,
  priority: PLAN_PRIORITY[plan],
  orgPlan: plan,
  maxConcurrency: null,
  sourceIp: '10.0.0.1',
  ...extra,
});

const load = (extra: Partial<SpecLoad> = {}): SpecLoad => ({
  runners: 1,
  connected: 1,
  busyElapsedMs: [],
  meanRunMs: 90_000,
  inFlightElapsedMs: new Map(),
  ...extra,
});

const inOrder = (...jobs: PendingJob[]): Placed<PendingJob>[] => jobs.map((j, i) => ({ job: j, position: i + 1, heldBy: null }));

describe('describeQueue', () => {
  describe('eta', () => {
    it('is null without run history on the spec, or without a runner', () => {
      const placed = inOrder(job('a', 'o', 'team'));
      expect(describeQueue(placed, load({ meanRunMs: null }), now)[0].eta).toBeNull();
      expect(describeQueue(placed, load({ runners: 0, connected: 0 }), now)[0].eta).toBeNull();
    });

    it('deals the jobs ahead to the runners in rounds of the mean run time', () => {
      const placed = inOrder(job('a', 'o', 'team'), job('b', 'o', 'team'), job('c', 'o', 'team'));
      expect(describeQueue(placed, load(), now).map((i) => i.eta)).toEqual([at(0), at(90), at(180)]);
      const two = describeQueue(inOrder(...['a', 'b', 'c', 'd', 'e'].map((id) => job(id, 'o', 'team'))), load({ runners: 2, connected: 2 }), now);
      expect(two.map((i) => i.eta)).toEqual([at(0), at(0), at(90), at(90), at(180)]);
    });

    it('counts the busy runners’ jobs first, less the time they have already run', () => {
      const placed = inOrder(job('a', 'o', 'team'), job('b', 'o', 'team'));
      // One runner, 30 s into a job of a spec that takes 90 s on average.
      expect(describeQueue(placed, load({ busyElapsedMs: [30_000] }), now).map((i) => i.eta)).toEqual([at(60), at(150)]);
      // Two runners, one busy (just claimed), one free: the first job starts now, the second after a round.
      expect(describeQueue(placed, load({ runners: 2, connected: 2, busyElapsedMs: [0] }), now).map((i) => i.eta)).toEqual([at(0), at(90)]);
      // A second runner that is registered but not connected starts nothing.
      expect(describeQueue(placed, load({ runners: 2, connected: 1, busyElapsedMs: [0] }), now).map((i) => i.eta)).toEqual([at(90), at(180)]);
      // A job running past the mean counts as about to end, not as negative time.
      expect(describeQueue(placed, load({ busyElapsedMs: [500_000] }), now).map((i) => i.eta)).toEqual([at(0), at(90)]);
    });

    it('starts a job held by its limit no earlier than one of its org’s jobs ends, and lets it hold the slot in turn', () => {
      const free = (id: string) => job(id, 'free', 'free');
      const placed = orderQueue([free('f1'), free('f2'), job('t', 'team', 'team')], { byOrg: new Map([['free', 1]]), byIp: new Map() });
      expect(placed.map((p) => p.job.id)).toEqual(['t', 'f1', 'f2']);
      // Two runners, one of them 20 s into the free org's job.
      const items = describeQueue(placed, load({ runners: 2, connected: 2, busyElapsedMs: [20_000], inFlightElapsedMs: new Map([[limitGroup('org', 'free'), [20_000]]]) }), now);
      // t: a runner is free, now. f1: after a round less the 10 s it has run on average (+80 s),
      // which is after its org's job ends (+70 s). f2: when f1 ends (+80 s + 90 s).
      expect(items.map((i) => i.eta)).toEqual([at(0), at(80), at(170)]);
    });
  });

  describe('waitingFor', () => {
    const placed = (): Placed<PendingJob>[] => {
      const ordered = orderQueue(
        [job('e', 'ent', 'enterprise'), job('t1', 'team', 'team'), job('t2', 'team', 'team'), job('f1', 'free', 'free'), job('f2', 'free', 'free')],
        { byOrg: new Map(), byIp: new Map() },
      );
      expect(ordered.map((p) => p.job.id)).toEqual(['e', 't1', 't2', 'f1', 'f2']);
      return ordered;
    };

    it('says no_runner first when no runner of the spec is connected', () => {
      expect(describeQueue(placed(), load({ connected: 0 }), now).map((i) => i.waitingFor)).toEqual(Array(5).fill({ reason: 'no_runner' }));
    });

    it('then org_limit, then higher_priority with the jobs of higher tiers ahead, then runner_busy with all ahead', () => {
      expect(describeQueue(placed(), load(), now).map((i) => i.waitingFor)).toEqual([
        { reason: 'runner_busy', ahead: 0 },
        { reason: 'higher_priority', ahead: 1 },
        { reason: 'higher_priority', ahead: 1 },
        { reason: 'higher_priority', ahead: 3 },
        { reason: 'org_limit', scope: 'org', inFlight: 0, limit: 1, queuedAhead: 1 },
      ]);
      const items = describeQueue(inOrder(job('a', 'o', 'team'), job('b', 'o', 'team')), load(), now);
      expect(items.map((i) => [i.position, i.ahead, i.waitingFor])).toEqual([
        [1, 0, { reason: 'runner_busy', ahead: 0 }],
        [2, 1, { reason: 'runner_busy', ahead: 1 }],
      ]);
    });
  });
});
