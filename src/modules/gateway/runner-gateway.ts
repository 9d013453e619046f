import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type BeforeApplicationShutdown, Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { type RawData, WebSocketServer } from 'ws';
import { Clock } from '../../common/clock';
import { KeyedTokenBuckets, TokenBucket } from '../../common/rate-limit';
import { DomainError, InvalidTransitionError, NotFoundError } from '../../common/errors';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import type { EventMetadata } from '../../events/envelope';
import { type JobState, acceptsHeartbeat } from '../../machines/job.machine';
import { Authenticator } from '../auth/authenticator';
import { Db, isDatabaseUnavailable } from '../database/db';
import type { CancelMessage, DispatchMessage } from '../jobs/job-notifier';
import { Bus, type Subscription } from '../messaging/bus';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';
import { RunnerSessions } from '../runners/runner-sessions';
import { UpgradeRouter, refuseUpgrade, refuseUpgradeFor } from '../http/upgrade-router';
import { BadMessage, type RunnerMessage, parseRunnerMessage } from './protocol';
import { RunnerConnection } from './runner-connection';
import { RunnerJobs, jobPayload } from './runner-jobs';

export const RUNNER_SOCKET_PATH = '/v1/runner/connect';

/** A gateway instance is alive; sent every quarter of the heartbeat timeout. */
export interface GatewayAliveMessage {
  gateway: string;
  runners: number;
}

/** What the gateway tells other instances about a runner's connections. */
export interface ControlMessage {
  runner: string;
  type: 'revoked' | 'replaced' | 'lost';
  /** For `replaced`: the connection that stays; for `lost`: the one recorded as gone. */
  connection?: string;
  /** For `replaced`: when the connection that stays was opened (ms since the epoch). */
  openedAt?: number;
}

/** How often waiting runners try to claim even without a dispatch message (lost-message recovery). */
const SWEEP_MS = 5_000;
/**
 * How long a held job's state is trusted for heartbeats before it is read again: a cancel or a
 * timeout decided elsewhere reaches the runner as a pushed cancel, so this only bounds how long a
 * runner whose cancel was lost is still acknowledged (well inside the heartbeat timeout).
 */
const HELD_STATE_MAX_AGE_MS = 15_000;
const PING_MS = 30_000;
/** How long a runner has to answer the close handshake at shutdown. */
const CLOSE_GRACE_MS = 2_000;

/**
 * The runner gateway: one WebSocket per runner at /v1/runner/connect. Authenticates and rate
 * limits on upgrade, decides every runner message with the job machine (through RunnerJobs),
 * pushes jobs the moment one is claimed for a waiting runner, and pushes cancels wherever the
 * runner is connected. Talks to the API role over the bus only.
 */
@Injectable()
export class RunnerGateway implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RunnerGateway.name);
  /** This gateway instance, as RunnerConnected events and alive messages name it. */
  readonly instance = randomUUID();
  private readonly wss: WebSocketServer;
  private readonly connections = new Map<string, RunnerConnection>();
  /** Connection attempts per runner. */
  private readonly connectLimiter: KeyedTokenBuckets;
  /** Claims that found nothing per runner: past the limit a `ready` waits instead of claiming at once. */
  private readonly idleClaims: KeyedTokenBuckets;
  private readonly subscriptions: Subscription[] = [];
  private readonly workWaiters = new Set<{ specs: ReadonlySet<string>; wake: (cause?: 'dispatch' | 'sweep') => void }>();
  /** Connections whose runner asked for work and has none yet, in the order they asked. */
  private readonly waiting = new Set<RunnerConnection>();
  /** Dispatch passes under way, by spec; `again` when another dispatch came during one. */
  private readonly passes = new Map<string, { again: boolean }>();
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly upgrades: UpgradeRouter,
    private readonly authenticator: Authenticator,
    private readonly runnerJobs: RunnerJobs,
    private readonly sessions: RunnerSessions,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) private readonly config: RunwayConfig,
  ) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: config.maxMessageBytes, perMessageDeflate: false });
    const now = () => this.clock.now().getTime();
    this.connectLimiter = new KeyedTokenBuckets(config.rateLimits.runnerConnects, now);
    this.idleClaims = new KeyedTokenBuckets(config.rateLimits.idleClaims, now);
  }

  onApplicationBootstrap(): void {
    this.upgrades.register(RUNNER_SOCKET_PATH, this.onUpgrade);
    this.subscriptions.push(
      this.bus.subscribe(this.subjects.anyDispatch(), ({ data }) => this.onDispatch(data as DispatchMessage)),
      this.bus.subscribe(this.subjects.anyRunnerCancel(), ({ data }) => this.onCancel(data as CancelMessage)),
      this.bus.subscribe(this.subjects.anyRunnerControl(), ({ data }) => this.onControl(data as ControlMessage)),
    );
    const alive = () =>
      void this.bus
        .publish(this.subjects.gatewayAlive(this.instance), { gateway: this.instance, runners: this.connections.size } satisfies GatewayAliveMessage)
        .catch(() => undefined);
    alive();
    this.timers = [
      setInterval(alive, Math.max(100, Math.floor(this.config.heartbeatTimeoutMs / 4))).unref(),
      setInterval(() => this.sweep(), SWEEP_MS).unref(),
      setInterval(() => this.ping(), PING_MS).unref(),
    ];
  }

  /**
   * Before the HTTP server closes (it waits for every open connection, upgraded ones too): tell
   * runners the server is going away, so they reconnect elsewhere, and give them a moment.
   */
  async beforeApplicationShutdown(): Promise<void> {
    this.upgrades.unregister(RUNNER_SOCKET_PATH);
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(this.subscriptions.map((s) => s.unsubscribe()));
    const connections = [...this.connections.values()];
    const closed = connections.map(
      ({ socket }) => new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.close(1001, 'server shutting down');
        setTimeout(() => {
          socket.terminate();
          resolve();
        }, CLOSE_GRACE_MS).unref();
      }),
    );
    await Promise.all(closed);
    // What the closes queued (recording the disconnects) runs while the database is still open.
    await Promise.all(connections.map((connection) => connection.drained()));
    this.wss.close();
  }

  /** Runners connected here now. */
  get connected(): number {
    return this.connections.size;
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
        wake: (cause?: 'dispatch' | 'sweep') => {
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

  // --- upgrade ---------------------------------------------------------------------------

  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    void this.upgrade(request, socket, head).catch((error: unknown) => {
      this.logger.error(`upgrade failed: ${(error as Error).stack ?? String(error)}`);
      refuseUpgrade(socket, 500, 'internal_error', 'the server could not take the connection');
    });
  };

  private async upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let runnerId: string;
    try {
      const principal = await this.authenticator.authenticate(request.headers.authorization, request.socket.remoteAddress ?? 'unknown');
      if (principal.kind !== 'runner') return refuseUpgrade(socket, 403, 'forbidden', 'only runner tokens may connect here');
      runnerId = principal.runnerId;
    } catch (error) {
      if (error instanceof DomainError) return refuseUpgradeFor(socket, error);
      throw error;
    }
    if (!this.connectLimiter.take(runnerId)) {
      this.metrics.rateLimited.inc({ limit: 'runner_connect' });
      const retryAfter = this.connectLimiter.retryAfterSeconds(runnerId);
      return refuseUpgrade(socket, 429, 'rate_limited', 'too many connection attempts; back off and retry', retryAfter);
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      const rate = this.config.socketMessagesPerSecond;
      const now = () => this.clock.now().getTime();
      const connection = new RunnerConnection(ws, runnerId, new TokenBucket(rate, rate * 2, now), now());
      this.attach(connection);
    });
  }

  private attach(connection: RunnerConnection): void {
    const previous = this.connections.get(connection.runnerId);
    previous?.socket.close(4000, 'replaced by a newer connection of this runner');
    this.connections.set(connection.runnerId, connection);
    this.metrics.connectedRunners.set(this.connections.size);
    void this.bus
      .publish(this.subjects.runnerControl(connection.runnerId), {
        runner: connection.runnerId,
        type: 'replaced',
        connection: connection.id,
        openedAt: connection.openedAt,
      } satisfies ControlMessage)
      .catch((error: unknown) => this.logger.warn(`could not announce connection: ${(error as Error).message}`));

    const { socket } = connection;
    socket.on('pong', () => (connection.alive = true));
    socket.on('message', (data: RawData, isBinary: boolean) => this.onFrame(connection, data, isBinary));
    socket.on('error', (error) => this.logger.debug(`runner ${connection.runnerId} socket error: ${error.message}`));
    socket.on('close', () => {
      this.setWaiting(connection, false);
      connection.cancelDeferredClaim();
      if (this.connections.get(connection.runnerId) === connection) this.connections.delete(connection.runnerId);
      this.metrics.connectedRunners.set(this.connections.size);
      // After the frames already queued, so a `completed` sent just before closing still counts.
      if (connection.hello !== null) {
        connection.enqueue(() =>
          this.sessions
            .disconnected(connection.runnerId, connection.id, 'closed', this.metadata(connection))
            .catch((error: unknown) => this.logger.warn(`could not record runner ${connection.runnerId} leaving: ${(error as Error).message}`)),
        );
      }
    });
  }

  // --- frames ----------------------------------------------------------------------------

  /**
   * Every frame takes a token of the socket's bucket; a frame that moves a job on (a `ready`
   * that got a job, a first `running`, a report) gives it back once handled, so the limit falls
   * on frames that achieve nothing (floods of heartbeats, repeats, refused messages) and never
   * on a runner working through short jobs.
   */
  private onFrame(connection: RunnerConnection, data: RawData, isBinary: boolean): void {
    if (!connection.messages.take()) {
      this.metrics.rateLimited.inc({ limit: 'socket_messages' });
      connection.send({ type: 'error', code: 'rate_limited', message: 'too many messages; slow down' });
      return;
    }
    let message: RunnerMessage;
    try {
      if (isBinary) throw new BadMessage('frames are JSON text');
      message = parseRunnerMessage(rawText(data));
    } catch (error) {
      const bad = error as BadMessage;
      connection.send({ type: 'error', code: 'bad_message', message: bad.message, ...(bad.job ? { job: bad.job } : {}) });
      return;
    }
    connection.enqueue(() => this.handle(connection, message));
  }

  private async handle(connection: RunnerConnection, message: RunnerMessage): Promise<void> {
    const job = 'job' in message ? message.job : undefined;
    try {
      if (message.type === 'hello') return await this.hello(connection, message);
      if (connection.hello === null) throw new BadMessage('send hello first');
      const metadata = this.metadata(connection);
      switch (message.type) {
        case 'ready':
          // Never refused: a runner asking for its next job is what the service is for.
          this.setWaiting(connection, true);
          if ((await this.claimOnReady(connection)) === 'pushed') connection.messages.refund();
          return;
        case 'running': {
          const before = connection.held.get(message.job)?.state.status;
          const state = await this.runnerJobs.running(connection.runnerId, message.job, message.attempt, connection.hello.fingerprint, metadata);
          if (before !== 'running') connection.messages.refund();
          connection.hold(state, this.now());
          return this.ack(connection, message);
        }
        case 'heartbeat':
          await this.heartbeat(connection, message.job, message.attempt);
          return this.ack(connection, message);
        case 'completed':
          await this.runnerJobs.completed(connection.runnerId, message.job, message.attempt, message.exitCode, message, metadata);
          connection.held.delete(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        case 'failed':
          await this.runnerJobs.failed(connection.runnerId, message.job, message.attempt, message.error, message.exitCode, message, metadata);
          connection.held.delete(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        case 'canceled':
          await this.runnerJobs.canceled(connection.runnerId, message.job, message.attempt, metadata);
          connection.held.delete(message.job);
          connection.messages.refund();
          return this.ack(connection, message);
        default: {
          const _exhaustive: never = message;
          throw new BadMessage(`unhandled message ${(_exhaustive as RunnerMessage).type}`);
        }
      }
    } catch (error) {
      if (message.type === 'hello') {
        // Not recorded as connected: the runner says hello again on a new connection.
        connection.hello = null;
        if (isDatabaseUnavailable(error)) {
          connection.socket.close(1013, 'the database is not available; reconnect shortly');
          return;
        }
      }
      await this.refuseMessage(connection, error, job);
    }
  }

  private async hello(connection: RunnerConnection, message: Extract<RunnerMessage, { type: 'hello' }>): Promise<void> {
    connection.hello = { version: message.version, capacity: message.capacity, fingerprint: message.fingerprint };
    connection.specs = new Set(await this.specsOf(connection.runnerId));
    await this.sessions.connected(
      connection.runnerId,
      {
        connectionId: connection.id,
        gateway: this.instance,
        agentVersion: message.version,
        capacity: message.capacity,
        fingerprint: message.fingerprint,
      },
      this.metadata(connection),
    );
    const { rows } = await this.db.query<{ id: string; attempt: number; status: string }>(
      `SELECT id, attempt, status FROM jobs
        WHERE runner_id = $1 AND (status IN ('claimed', 'running') OR (status = 'canceled' AND NOT cancel_acknowledged))`,
      [connection.runnerId],
    );
    // What the runner says it still holds. Jobs assigned to it that it does not hold (they died
    // with a restart) are lost before it is welcomed, so it is free for work from its first
    // `ready` and they need not wait out the heartbeat timeout. A runner that does not say (an
    // older agent) keeps the earlier rule: claimed jobs are pushed again, running ones wait for
    // its `running`.
    const holds = message.jobs === undefined ? null : new Set(message.jobs.map(({ job, attempt }) => `${job}:${attempt}`));
    const kept = [];
    for (const row of rows) {
      if (row.status !== 'canceled' && holds !== null && !holds.has(`${row.id}:${row.attempt}`)) await this.lose(connection, row);
      else kept.push(row);
    }
    connection.send({
      type: 'welcome',
      runner: connection.runnerId,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      heartbeatTimeoutMs: this.config.heartbeatTimeoutMs,
      // The largest frame this server takes: a runner sizes its reports to fit.
      maxMessageBytes: this.config.maxMessageBytes,
    });
    for (const row of kept) {
      if (row.status === 'canceled') {
        // A cancel the runner has not acknowledged yet, e.g. sent while it was away.
        connection.send({ type: 'cancel', job: row.id, attempt: row.attempt, reason: 'canceled' });
      } else if (row.status === 'claimed') {
        // Claimed for it, but the push may have been lost with the last connection: push it again.
        this.push(connection, await this.runnerJobs.load(row.id));
      }
    }
  }

  /** The runner does not hold a job assigned to it: its attempt is lost (requeued or failed, as the machine says). */
  private async lose(connection: RunnerConnection, row: { id: string; attempt: number }): Promise<void> {
    const state = await this.runnerJobs.lost(connection.runnerId, row.id, row.attempt, this.metadata(connection));
    if (state !== null) this.logger.log(`runner ${connection.runnerId} no longer holds job ${row.id} attempt ${row.attempt}: ${state.status === 'pending' ? 'requeued' : 'failed'} (runner_lost)`);
  }

  private async heartbeat(connection: RunnerConnection, jobId: string, attempt: number): Promise<void> {
    const now = this.now();
    const held = connection.fresh(jobId, now, HELD_STATE_MAX_AGE_MS);
    if (held === null || !acceptsHeartbeat(held, connection.runnerId, attempt)) {
      // Not held, held too long, or refused: read it again before refusing (the held state may be
      // behind), and let the machine say why.
      let state: JobState;
      try {
        state = await this.runnerJobs.load(jobId);
      } catch (error) {
        // The database is down: a heartbeat the state last read accepts still counts, however old
        // that state, so an outage does not time out the healthy jobs it outlasts.
        const stale = connection.held.get(jobId)?.state;
        if (!isDatabaseUnavailable(error) || stale === undefined || !acceptsHeartbeat(stale, connection.runnerId, attempt)) throw error;
        state = stale;
      }
      connection.hold(state, now);
      this.runnerJobs.checkHeartbeat(state, connection.runnerId, attempt);
    }
    await this.bus.publish(this.subjects.heartbeat(connection.runnerId), { runner: connection.runnerId, job: jobId, attempt });
  }

  private ack(connection: RunnerConnection, message: Extract<RunnerMessage, { job: string }>): void {
    connection.send({ type: 'ack', job: message.job, attempt: message.attempt, of: message.type });
  }

  /** A refused message gets `error` (or `cancel` for a canceled job); the socket stays open. */
  private async refuseMessage(connection: RunnerConnection, error: unknown, job: string | undefined): Promise<void> {
    if (error instanceof BadMessage) {
      connection.send({ type: 'error', code: 'bad_message', message: error.message, ...(job ? { job } : {}) });
    } else if (error instanceof InvalidTransitionError && job !== undefined) {
      const state = await this.runnerJobs.load(job).catch(() => null);
      if (state?.status === 'canceled' && state.runnerId === connection.runnerId && !state.cancelAcknowledged) {
        connection.send({ type: 'cancel', job, attempt: state.attempt, reason: 'canceled' });
      } else {
        connection.send({ type: 'error', code: 'invalid_transition', message: error.message, job });
      }
    } else if (error instanceof NotFoundError) {
      connection.send({ type: 'error', code: 'not_found', message: error.message, ...(job ? { job } : {}) });
    } else if (error instanceof DomainError) {
      connection.send({ type: 'error', code: error.code, message: error.message, ...(job ? { job } : {}) });
    } else {
      this.logger.error(`runner ${connection.runnerId}: ${(error as Error).stack ?? String(error)}`);
      connection.send({ type: 'error', code: 'internal_error', message: 'the server could not handle this message', ...(job ? { job } : {}) });
    }
  }

  // --- dispatch --------------------------------------------------------------------------

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
        if (!this.waiting.has(connection) || connection.socket.readyState !== connection.socket.OPEN) return outcome;
        if (connection.unsure && (await this.pushUnheld(connection))) return 'pushed';
        const claim = await this.runnerJobs.claim(connection.runnerId, connection.hello?.capacity ?? 1, this.metadata(connection));
        if (claim.job !== null) {
          this.setWaiting(connection, false);
          this.push(connection, claim.job);
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
    const { rows } = await this.db.query<{ id: string }>(`SELECT id FROM jobs WHERE runner_id = $1 AND status = 'claimed'`, [connection.runnerId]);
    connection.unsure = false;
    let pushed = false;
    for (const { id } of rows) {
      if (connection.held.has(id)) continue;
      this.push(connection, await this.runnerJobs.load(id));
      pushed = true;
    }
    if (pushed) this.setWaiting(connection, false);
    return pushed;
  }

  /** Sends the runner a job claimed for it, held so its heartbeats are checked without a read. */
  private push(connection: RunnerConnection, job: JobState): void {
    connection.hold(job, this.now());
    connection.send({ type: 'job', job: jobPayload(job) });
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

  private onCancel(message: CancelMessage): void {
    const connection = this.connections.get(message.runner);
    if (connection === undefined) return;
    connection.held.delete(message.job);
    connection.send({ type: 'cancel', job: message.job, attempt: message.attempt, reason: message.reason });
  }

  private onControl(message: ControlMessage): void {
    const connection = this.connections.get(message.runner);
    if (connection === undefined) return;
    if (message.type === 'revoked') connection.socket.close(1008, 'the runner token was revoked');
    else if (message.type === 'replaced' && message.connection !== connection.id && connection.openedAt <= (message.openedAt ?? Infinity)) {
      // Only an older connection gives way: a late message must not close a newer one.
      connection.socket.close(4000, 'replaced by a newer connection of this runner');
    } else if (message.type === 'lost' && message.connection === connection.id) {
      // This gateway went unheard long enough to be given up for lost: reconnect and say hello again.
      connection.socket.close(4001, 'the connection was recorded as lost; reconnect');
    }
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

  /** Drops sockets whose peer vanished without closing (no pong since the last ping). */
  private ping(): void {
    for (const connection of this.connections.values()) {
      if (!connection.alive) {
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }

  async specsOf(runnerId: string): Promise<string[]> {
    const { rows } = await this.db.query<{ slug: string }>(
      `SELECT s.slug FROM runner_specs rs JOIN specs s ON s.id = rs.spec_id WHERE rs.runner_id = $1`,
      [runnerId],
    );
    return rows.map((r) => r.slug);
  }

  private metadata(connection: RunnerConnection): EventMetadata {
    return { correlationId: connection.id, causationId: null, actor: `runner:${connection.runnerId}` };
  }

  private now(): number {
    return this.clock.now().getTime();
  }
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
