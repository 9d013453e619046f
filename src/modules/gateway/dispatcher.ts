import { type BeforeApplicationShutdown, Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { KeyedTokenBuckets } from '../../common/rate-limit';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { isDatabaseUnavailable } from '../database/db';
import { Bus, type Subscription } from '../messaging/bus';
import type { DispatchMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';
import { GatewayRepository } from './gateway.repository';
import type { RunnerConnection } from './runner-connection';
import { RunnerJobs } from './runner-jobs';

/** How often waiting runners try to claim even without a dispatch message (lost-message recovery). */
const SWEEP_MS = 5_000;

/** What woke a REST long-poll claim: a dispatch message for one of its specs, or the sweep. */
type WakeCause = 'dispatch' | 'sweep';

/**
 * Hands work to the runners waiting on this instance: the socket runners that said `ready` and
 * have no job yet (claimed for and pushed one at a time, the longest waiting first), and the REST
 * long-poll claims (woken to claim for themselves). Dispatch messages start a pass over a spec's
 * waiting runners; a periodic sweep recovers from lost ones.
 */
@Injectable()
export class Dispatcher implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(Dispatcher.name);
  /** Claims that found nothing per runner: past the limit a `ready` waits instead of claiming at once. */
  private readonly idleClaims: KeyedTokenBuckets;
  private readonly workWaiters = new Set<{ specs: ReadonlySet<string>; wake: (cause?: WakeCause) => void }>();
  /** Connections whose runner asked for work and has none yet, in the order they asked. */
  private readonly waiting = new Set<RunnerConnection>();
  /** Dispatch passes under way, by spec; `again` when another dispatch came during one. */
  private readonly passes = new Map<string, { again: boolean }>();
  private subscription: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly runnerJobs: RunnerJobs,
    private readonly repository: GatewayRepository,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) config: RunwayConfig,
  ) {
    this.idleClaims = new KeyedTokenBuckets(config.rateLimits.idleClaims, () => this.now());
  }

  onApplicationBootstrap(): void {
    this.subscription = this.bus.subscribe(this.subjects.anyDispatch(), ({ data }) => this.onDispatch(data as DispatchMessage));
    this.timer = setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.subscription?.unsubscribe();
  }

  /**
   * Resolves when work may have appeared on one of `specs` (a dispatch message or a sweep), or
   * when `signal` aborts. For runners that long-poll over REST.
   */
  waitForWork(specs: ReadonlySet<string>, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const waiter = {
        specs,
        /** Without a cause: the signal aborted (the poll timed out, the client left, a job was found). */
        wake: (cause?: WakeCause) => {
          if (!this.workWaiters.delete(waiter)) return;
          if (cause !== undefined) this.metrics.claimWakeups.inc({ cause });
          this.metrics.parkedClaims.set(this.workWaiters.size);
          signal.removeEventListener('abort', aborted);
          resolve();
        },
      };
      const aborted = () => waiter.wake();
      if (signal.aborted) return resolve();
      this.workWaiters.add(waiter);
      this.metrics.parkedClaims.set(this.workWaiters.size);
      signal.addEventListener('abort', aborted, { once: true });
    });
  }

  /** REST long-poll claims waiting for work here now. */
  get parkedClaims(): number {
    return this.workWaiters.size;
  }

  /**
   * The runner on `connection` asked for work (`ready`): it waits, at the back, and claims at
   * once unless its recent claims found nothing too often. Never refused.
   */
  ready(connection: RunnerConnection): Promise<'pushed' | 'waiting'> {
    this.setWaiting(connection, true);
    return this.claimOnReady(connection);
  }

  /** The runner on `connection` waits for work no more (its socket closed). */
  leave(connection: RunnerConnection): void {
    this.setWaiting(connection, false);
  }

  /**
   * Claims for a waiting runner and pushes the job; one claim at a time per connection. Resolves
   * to whether the runner got a job, or, when it did not, why: `nothing` claimable on its specs
   * now, its capacity is full, or it is not waiting (any more) or already claiming.
   */
  private async dispatchTo(connection: RunnerConnection): Promise<'pushed' | 'nothing' | 'runner_full' | 'busy'> {
    if (connection.claiming) {
      connection.claimAgain = true;
      return 'busy';
    }
    connection.claiming = true;
    try {
      let outcome: 'nothing' | 'runner_full' | 'busy' = 'busy';
      do {
        connection.claimAgain = false;
        if (!this.waiting.has(connection) || !connection.open) return outcome;
        if (connection.unsure && (await this.pushUnheld(connection))) return 'pushed';
        const claim = await this.runnerJobs.claim(connection.runnerId, connection.hello?.capacity ?? 1, connection.metadata);
        if (claim.job !== null) {
          this.setWaiting(connection, false);
          connection.push(claim.job, this.now());
          return 'pushed';
        }
        outcome = claim.reason;
      } while (connection.claimAgain);
      return outcome;
    } catch (error) {
      // Waiting runners stay waiting: the sweep tries again once the database answers. The claim
      // may have committed although its answer was lost (a connection dropped during COMMIT):
      // the next try looks for a job claimed for this runner that it was never sent.
      if (isDatabaseUnavailable(error)) {
        connection.unsure = true;
        this.logger.debug(`claim for runner ${connection.runnerId} failed: ${(error as Error).message}`);
      } else this.logger.error(`claim for runner ${connection.runnerId} failed: ${(error as Error).stack ?? String(error)}`);
      return 'busy';
    } finally {
      connection.claiming = false;
    }
  }

  /**
   * The claim a `ready` makes at once, unless this runner's recent claims found nothing too
   * often (a runner asking in a loop): then it stays waiting, is served by the next dispatch
   * like any waiting runner, and claims on its own again once its limit lets it.
   */
  private async claimOnReady(connection: RunnerConnection): Promise<'pushed' | 'waiting'> {
    const runnerId = connection.runnerId;
    if (!this.idleClaims.has(runnerId)) {
      this.metrics.rateLimited.inc({ limit: 'idle_claims' });
      connection.deferClaim(Math.max(1, this.idleClaims.retryAfterSeconds(runnerId)) * 1000, () => {
        if (this.waiting.has(connection)) void this.claimOnReady(connection);
      });
      return 'waiting';
    }
    const outcome = await this.dispatchTo(connection);
    if (outcome === 'nothing') this.idleClaims.take(runnerId);
    return outcome === 'pushed' ? 'pushed' : 'waiting';
  }

  /**
   * After a claim whose outcome is unknown: pushes the jobs claimed for this runner that this
   * connection was never sent. True if there was one (the runner then waits no more).
   */
  private async pushUnheld(connection: RunnerConnection): Promise<boolean> {
    const claimed = await this.repository.claimedFor(connection.runnerId);
    connection.unsure = false;
    let pushed = false;
    for (const id of claimed) {
      if (connection.holds(id)) continue;
      connection.push(await this.runnerJobs.load(id), this.now());
      pushed = true;
    }
    if (pushed) this.setWaiting(connection, false);
    return pushed;
  }

  private setWaiting(connection: RunnerConnection, waiting: boolean): void {
    // Re-adding moves a runner that asks again to the back: the longest waiting is served first.
    this.waiting.delete(connection);
    if (waiting) this.waiting.add(connection);
  }

  /**
   * Work may have appeared on `spec`: hand it to this gateway's waiting runners of that spec, the
   * longest waiting first, one claim after another, until a claim finds nothing (then there is
   * nothing claimable on the spec for anyone waiting here). One pass per spec at a time; a
   * dispatch that comes during a pass makes it go round once more. Waking every waiting runner
   * instead would have them all race for the one new job, and all but one roll back.
   */
  private dispatchSpec(spec: string): void {
    const pass = this.passes.get(spec);
    if (pass !== undefined) {
      pass.again = true;
      return;
    }
    const state = { again: false };
    this.passes.set(spec, state);
    void this.pass(spec, state).finally(() => this.passes.delete(spec));
  }

  private async pass(spec: string, state: { again: boolean }): Promise<void> {
    do {
      state.again = false;
      const tried = new Set<RunnerConnection>();
      for (;;) {
        const next = this.nextWaiting(spec, tried);
        if (next === undefined) break;
        tried.add(next);
        const outcome = await this.dispatchTo(next);
        // A full runner (it asked for work at its capacity) or one claiming on its own says
        // nothing about the spec: go on to the next.
        if (outcome === 'nothing') break;
      }
    } while (state.again);
  }

  private nextWaiting(spec: string, tried: ReadonlySet<RunnerConnection>): RunnerConnection | undefined {
    for (const connection of this.waiting) {
      if (!connection.claiming && !tried.has(connection) && connection.specs.has(spec)) return connection;
    }
    return undefined;
  }

  private onDispatch(message: DispatchMessage): void {
    this.dispatchSpec(message.spec);
    for (const waiter of [...this.workWaiters]) if (waiter.specs.has(message.spec)) waiter.wake('dispatch');
  }

  /** Recovery for lost dispatch messages: waiting runners try again now and then. */
  private sweep(): void {
    const specs = new Set<string>();
    for (const connection of this.waiting) for (const spec of connection.specs) specs.add(spec);
    for (const spec of specs) this.dispatchSpec(spec);
    // A pass stops at the first runner that finds nothing; one whose last claim may have
    // committed unseen is looked at on its own.
    for (const connection of this.waiting) if (connection.unsure) void this.dispatchTo(connection);
    for (const waiter of [...this.workWaiters]) waiter.wake('sweep');
  }

  private now(): number {
    return this.clock.now().getTime();
  }
}
