import type { WebSocket } from 'ws';
import { ManualClock } from '../../common/clock';
import { UnavailableError } from '../../common/errors';
import { TokenBucket } from '../../common/rate-limit';
import { loadConfig } from '../../config/config';
import type { JobState } from '../../machines/job.machine';
import type { Db } from '../database/db';
import { LocalBus } from '../messaging/local-bus';
import type { DispatchMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';
import type { ClaimOutcome } from '../scheduling/scheduler';
import { Dispatcher } from './dispatcher';
import type { GatewayRepository } from './gateway.repository';
import type { ServerMessage } from './protocol';
import { RunnerConnection } from './runner-connection';
import type { RunnerJobs } from './runner-jobs';

const SWEEP_MS = 5_000;

/** A job as far as pushing it goes: its id and attempt. */
const job = (id: string): JobState => ({ jobId: id, attempt: 1, spec: 'x86' }) as JobState;

/** What the dispatcher asks of the scheduler, scripted: each claim takes the next answer (nothing once they run out). */
class ScriptedClaims {
  readonly asked: string[] = [];
  readonly answers: (ClaimOutcome | Error | Promise<ClaimOutcome>)[] = [];
  claimedUnseen: string[] = [];

  readonly runnerJobs = {
    claim: async (runnerId: string): Promise<ClaimOutcome> => {
      this.asked.push(runnerId);
      const answer = this.answers.shift() ?? { job: null, reason: 'nothing' };
      if (answer instanceof Error) throw answer;
      return await answer;
    },
    load: async (id: string): Promise<JobState> => job(id),
  } as Partial<RunnerJobs> as RunnerJobs;

  readonly repository = { claimedFor: async () => this.claimedUnseen } as Partial<GatewayRepository> as GatewayRepository;
}

/** A runner's connection on a socket that records the frames sent to it. */
function connection(runnerId: string, specs: string[], clock: ManualClock): { connection: RunnerConnection; sent: ServerMessage[] } {
  const sent: ServerMessage[] = [];
  const socket = { OPEN: 1, readyState: 1, send: (text: string) => sent.push(JSON.parse(text) as ServerMessage) } as Partial<WebSocket> as WebSocket;
  const now = () => clock.now().getTime();
  const made = new RunnerConnection(socket, runnerId, new TokenBucket(10, 20, now), now());
  made.hello = { version: 'test', capacity: 1, fingerprint: {} };
  made.specs = new Set(specs);
  return { connection: made, sent };
}

/** Lets the bus deliver and every claim started so far finish (the scripted ones answer at once). */
const settle = () => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));

describe('Dispatcher', () => {
  let bus: LocalBus;
  let subjects: Subjects;
  let clock: ManualClock;
  let metrics: Metrics;
  let claims: ScriptedClaims;
  let dispatcher: Dispatcher;

  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask'] });
    bus = new LocalBus();
    subjects = new Subjects('runway');
    clock = new ManualClock();
    metrics = new Metrics({} as Db);
    claims = new ScriptedClaims();
    dispatcher = new Dispatcher(claims.runnerJobs, claims.repository, bus, subjects, clock, metrics, loadConfig({}));
    dispatcher.onApplicationBootstrap();
  });

  afterEach(async () => {
    await dispatcher.beforeApplicationShutdown();
    await bus.close();
    jest.useRealTimers();
  });

  const dispatch = (spec: string) => bus.publish(subjects.dispatch(spec), { spec } satisfies DispatchMessage);
  const wakeups = async (cause: string) => (await metrics.claimWakeups.get()).values.find((value) => value.labels.cause === cause)?.value ?? 0;

  it('a ready claims at once and pushes the job it gets; one that gets nothing waits', async () => {
    const a = connection('a', ['x86'], clock);
    const b = connection('b', ['x86'], clock);
    claims.answers.push({ job: job('j1') });
    expect(await dispatcher.ready(a.connection)).toBe('pushed');
    expect(a.sent).toEqual([expect.objectContaining({ type: 'job', job: expect.objectContaining({ id: 'j1', attempt: 1 }) })]);
    expect(a.connection.holds('j1')).toBe(true);
    expect(await dispatcher.ready(b.connection)).toBe('waiting');
    expect(b.sent).toEqual([]);
    expect(claims.asked).toEqual(['a', 'b']);
  });

  it('a dispatch serves the runners waiting on its spec, the longest waiting first, until a claim finds nothing', async () => {
    const a = connection('a', ['x86'], clock);
    const b = connection('b', ['arm'], clock);
    const c = connection('c', ['x86'], clock);
    const d = connection('d', ['x86'], clock);
    for (const runner of [a, b, c, d]) await dispatcher.ready(runner.connection);
    claims.asked.length = 0;

    claims.answers.push({ job: job('j1') });
    await dispatch('x86');
    await settle();
    // a gets the job, c finds nothing: d is not asked, nor is b (another spec).
    expect(claims.asked).toEqual(['a', 'c']);
    expect(a.sent.map((frame) => frame.type)).toEqual(['job']);
    expect([b.sent, c.sent, d.sent]).toEqual([[], [], []]);

    // a waits no more; c, which found nothing, still waits ahead of d: asked first, and alone.
    claims.asked.length = 0;
    await dispatch('x86');
    await settle();
    expect(claims.asked).toEqual(['c']);
  });

  it('a runner that is full says nothing about the spec: the pass goes on to the next', async () => {
    const a = connection('a', ['x86'], clock);
    const b = connection('b', ['x86'], clock);
    for (const runner of [a, b]) await dispatcher.ready(runner.connection);
    claims.asked.length = 0;
    claims.answers.push({ job: null, reason: 'runner_full' }, { job: job('j2') });
    await dispatch('x86');
    await settle();
    expect(claims.asked).toEqual(['a', 'b']);
    expect(b.sent.map((frame) => frame.type)).toEqual(['job']);
  });

  it('a dispatch during a pass makes the pass go round once more', async () => {
    const a = connection('a', ['x86'], clock);
    await dispatcher.ready(a.connection);
    claims.asked.length = 0;
    let answer: (outcome: ClaimOutcome) => void = () => undefined;
    claims.answers.push(new Promise<ClaimOutcome>((resolve) => (answer = resolve)));
    await dispatch('x86');
    await settle();
    expect(claims.asked).toEqual(['a']);
    // Work came on the spec while a's claim was under way: it may have been missed, so a is asked again.
    await dispatch('x86');
    await settle();
    expect(claims.asked).toEqual(['a']);
    answer({ job: null, reason: 'nothing' });
    await settle();
    expect(claims.asked).toEqual(['a', 'a']);
  });

  it('a runner that left is not served', async () => {
    const a = connection('a', ['x86'], clock);
    await dispatcher.ready(a.connection);
    dispatcher.leave(a.connection);
    claims.asked.length = 0;
    await dispatch('x86');
    await settle();
    expect(claims.asked).toEqual([]);
  });

  it('waitForWork parks a long-poll until a dispatch on one of its specs wakes it, counted as a dispatch wake-up', async () => {
    let woken = false;
    const waiting = dispatcher.waitForWork(new Set(['x86']), new AbortController().signal).then(() => (woken = true));
    expect(dispatcher.parkedClaims).toBe(1);
    await dispatch('arm');
    await settle();
    expect(woken).toBe(false);
    await dispatch('x86');
    await waiting;
    expect(dispatcher.parkedClaims).toBe(0);
    expect(await wakeups('dispatch')).toBe(1);
  });

  it('waitForWork ends when its signal aborts, without counting a wake-up', async () => {
    const stop = new AbortController();
    const waiting = dispatcher.waitForWork(new Set(['x86']), stop.signal);
    stop.abort();
    await waiting;
    expect(dispatcher.parkedClaims).toBe(0);
    expect(await wakeups('dispatch')).toBe(0);
    expect(await wakeups('sweep')).toBe(0);
    await dispatcher.waitForWork(new Set(['x86']), stop.signal);
    expect(dispatcher.parkedClaims).toBe(0);
  });

  it('the sweep wakes every long-poll and tries the waiting runners again', async () => {
    const a = connection('a', ['x86'], clock);
    await dispatcher.ready(a.connection);
    const waiting = dispatcher.waitForWork(new Set(['arm']), new AbortController().signal);
    claims.asked.length = 0;
    claims.answers.push({ job: job('j3') });
    jest.advanceTimersByTime(SWEEP_MS);
    await waiting;
    await settle();
    expect(await wakeups('sweep')).toBe(1);
    expect(claims.asked).toEqual(['a']);
    expect(a.sent.map((frame) => frame.type)).toEqual(['job']);
  });

  it('after a claim whose answer was lost, the sweep pushes the job claimed for the runner that it was never sent', async () => {
    const a = connection('a', ['x86'], clock);
    claims.answers.push(new UnavailableError('the database is not available'));
    expect(await dispatcher.ready(a.connection)).toBe('waiting');
    expect(a.connection.unsure).toBe(true);
    claims.claimedUnseen = ['j4'];
    claims.asked.length = 0;
    jest.advanceTimersByTime(SWEEP_MS);
    await settle();
    expect(a.sent).toEqual([expect.objectContaining({ type: 'job', job: expect.objectContaining({ id: 'j4' }) })]);
    expect(a.connection.unsure).toBe(false);
    // Pushed from what was claimed: no new claim for it.
    expect(claims.asked).toEqual([]);
  });
});
