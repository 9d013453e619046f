import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { Backoff } from '../../common/backoff';
import { Clock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import { sqlLiterals } from '../../common/sql-literals';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import type { EventMetadata } from '../../events/envelope';
import { TIMEOUT_TYPES, type JobStatus, type TimeoutType, acceptsTimeout, statusesTaking } from '../../machines/job.machine';
import { Db, isDatabaseUnavailable } from '../database/db';
import { JobCommands } from '../jobs/job-commands';
import { Bus, type Subscription } from '../messaging/bus';
import type { ControlMessage, GatewayAliveMessage, HeartbeatMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';
import { RunnerSessions } from '../runners/runner-sessions';

interface InFlightRow {
  id: string;
  status: JobStatus;
  attempt: number;
  timeout: number;
  claimed_at: Date | null;
  started_at: Date | null;
}

const SYSTEM: Omit<EventMetadata, 'correlationId'> = { causationId: null, actor: 'system' };

/** The jobs a timeout may end: those in the statuses whose machine state takes one. */
const TIMED_STATUSES = sqlLiterals(statusesTaking(...TIMEOUT_TYPES));

/**
 * The liveness authority: claim, heartbeat and job timeouts. Heartbeats arrive over the bus and
 * are kept in memory (never written per beat); deadlines are derived from the jobs view (claim
 * and start times) and those heartbeats, so a restarted instance re-arms them from the log. Every
 * API instance hears every heartbeat and sweeps the same jobs: when several fire the same timeout,
 * the job machine and the expected version let exactly one append.
 */
@Injectable()
export class Liveness implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(Liveness.name);
  private readonly heartbeats = new Map<string, { attempt: number; at: number }>();
  /** When each runner last heartbeated, for the runner view's lastSeenAt. */
  private readonly runnersHeard = new Map<string, number>();
  /** When each gateway instance last said it is alive. */
  private readonly gateways = new Map<string, number>();
  /**
   * Since when this instance has watched heartbeats: its start, or the end of a database outage
   * or of a bus outage (heartbeats and gateways' alive messages come over the bus).
   */
  private listeningSince: number;
  /** The bus is disconnected: nothing is heard, and silence says nothing of the runners. */
  private busDown = false;
  private stopWatchingBus: () => void = () => undefined;
  private subscriptions: Subscription[] = [];
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  /** The sweep that follows the one under way, for callers that came after it began. */
  private nextSweep: Promise<void> | null = null;
  /** After a failed sweep (the database is down): the timer skips sweeps until then (performance.now()). */
  private retryAt = 0;
  private readonly backoff = new Backoff(500, 10_000);

  constructor(
    private readonly db: Db,
    private readonly jobs: JobCommands,
    private readonly sessions: RunnerSessions,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) private readonly config: RunwayConfig,
  ) {
    this.listeningSince = clock.now().getTime();
  }

  onApplicationBootstrap(): void {
    this.subscriptions = [
      this.bus.subscribe(this.subjects.allHeartbeats(), ({ data }) => this.heard(data as HeartbeatMessage)),
      this.bus.subscribe(this.subjects.anyGatewayAlive(), ({ data }) => this.gatewayAlive(data as GatewayAliveMessage)),
    ];
    this.stopWatchingBus = this.bus.onConnectionChange((connected) => this.busConnection(connected));
    const period = Math.max(50, Math.min(1_000, Math.floor(this.config.heartbeatIntervalMs)));
    // The timer's sweeps never queue behind one under way: the next tick comes soon enough.
    this.timer = setInterval(() => {
      if (performance.now() >= this.retryAt && this.sweeping === null) void this.startSweep();
    }, period).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.stopWatchingBus();
    await Promise.all(this.subscriptions.map((s) => s.unsubscribe()));
    await this.nextSweep;
    await this.sweeping;
  }

  heard(message: HeartbeatMessage): void {
    if (typeof message?.job !== 'string' || typeof message.attempt !== 'number' || typeof message.runner !== 'string') return;
    const now = this.clock.now().getTime();
    this.heartbeats.set(message.job, { attempt: message.attempt, at: now });
    this.runnersHeard.set(message.runner, now);
  }

  /**
   * The bus went away or came back. While it is away no heartbeat can be heard, so no attempt is
   * lost to silence and no gateway is given up for lost; once it is back, those deadlines count
   * from the reconnection, as after a database outage or a start. Claim and job timeouts, which
   * the log alone decides, go on.
   */
  busConnection(connected: boolean): void {
    this.busDown = !connected;
    this.listeningSince = Math.max(this.listeningSince, this.clock.now().getTime());
    if (connected) this.logger.log('the bus is back: heartbeat deadlines count from now');
    else this.logger.warn('the bus is disconnected: no attempt is lost to silence until it is back');
  }

  gatewayAlive(message: GatewayAliveMessage): void {
    if (typeof message?.gateway === 'string') this.gateways.set(message.gateway, this.clock.now().getTime());
  }

  /** When the runner last heartbeated, as this instance heard it. */
  lastHeard(runnerId: string): Date | null {
    const at = this.runnersHeard.get(runnerId);
    return at === undefined ? null : new Date(at);
  }

  /**
   * Fires every deadline that has passed by the call. One sweep at a time; tests call it
   * directly. A call while a sweep is under way (it read the jobs before the call, at an earlier
   * time) is answered by the next sweep after it, one for all such calls. Never rejects: a sweep
   * that fails (the database is down) is logged, and the timer waits a growing while before the
   * next; deadlines that passed meanwhile fire at the first sweep that works.
   */
  sweep(): Promise<void> {
    if (this.sweeping === null) return this.startSweep();
    this.nextSweep ??= this.sweeping.then(() => {
      this.nextSweep = null;
      // One the timer began since then began after the call too.
      return this.sweeping ?? this.startSweep();
    });
    return this.nextSweep;
  }

  private startSweep(): Promise<void> {
    this.sweeping = this.fireDue()
      .then(
        () => {
          if (this.backoff.failures > 0) this.logger.log('sweeping again: the database answers');
          this.backoff.reset();
          this.retryAt = 0;
          this.metrics.livenessSweeps.inc();
        },
        (error: unknown) => {
          const delay = this.backoff.next();
          this.retryAt = performance.now() + delay;
          // Once per outage at warn; the retries after it at debug, so a long outage does not flood the log.
          const line = `liveness sweep failed (${this.backoff.failures} in a row), next in ${delay} ms: ${(error as Error).message}`;
          if (this.backoff.failures === 1) this.logger.warn(line);
          else this.logger.debug(line);
        },
      )
      .finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async fireDue(): Promise<void> {
    const now = this.clock.now().getTime();
    const { rows } = await this.db.query<InFlightRow>(
      `SELECT id, status, attempt, timeout, claimed_at, started_at FROM jobs WHERE status IN (${TIMED_STATUSES})`,
    );
    // Back after the database was unreachable: what could not be seen meanwhile (reports,
    // starts, pushes that failed) is given a full heartbeat timeout from now, as at a start.
    if (this.backoff.failures > 0 || this.busDown) this.listeningSince = now;
    const inFlight = new Set<string>();
    for (const job of rows) {
      inFlight.add(job.id);
      const due = this.due(job, now);
      if (due !== null) await this.fire(job, due);
    }
    for (const id of this.heartbeats.keys()) if (!inFlight.has(id)) this.heartbeats.delete(id);
    await this.endLostConnections(now);
  }

  /**
   * Runners recorded as connected to a gateway that has not said it is alive for a heartbeat
   * timeout (it crashed, or was cut off) are recorded as disconnected.
   */
  private async endLostConnections(now: number): Promise<void> {
    const limit = this.config.heartbeatTimeoutMs;
    if (now - this.listeningSince <= limit) return; // not listening long enough to tell
    const { rows } = await this.db.query<{ runner_id: string; connection_id: string; gateway: string }>(
      `SELECT runner_id, connection_id, gateway FROM runner_status WHERE connected`,
    );
    for (const row of rows) {
      const alive = this.gateways.get(row.gateway);
      if (alive !== undefined && now - alive <= limit) continue;
      try {
        await this.sessions.disconnected(row.runner_id, row.connection_id, 'gateway_lost', {
          ...SYSTEM,
          correlationId: `gateway_lost:${row.connection_id}`,
        });
        this.logger.warn(`runner ${row.runner_id}: its gateway ${row.gateway} is gone; recorded as disconnected`);
        // Should the gateway still be there (cut off, not dead), it closes the socket so the runner reconnects.
        const lost: ControlMessage = { runner: row.runner_id, type: 'lost', connection: row.connection_id };
        await this.bus.publish(this.subjects.runnerControl(row.runner_id), lost);
      } catch (error) {
        if (!(error instanceof ConcurrencyError)) this.logger.error(`could not end runner ${row.runner_id}'s connection: ${(error as Error).message}`);
      }
    }
    for (const [gateway, at] of this.gateways) if (now - at > 10 * limit) this.gateways.delete(gateway);
  }

  /**
   * The timeout that has passed for `job`, if any; the job timeout before the others. Which
   * timeouts apply is the machine's to say, by the job's status.
   */
  private due(job: InFlightRow, now: number): TimeoutType | null {
    const { heartbeatTimeoutMs, claimTimeoutMs, jobTimeoutGraceMs } = this.config;
    const applies = (type: TimeoutType) => acceptsTimeout(job, type, job.attempt);
    if (applies('jobTimeout') && job.started_at !== null) {
      if (now > job.started_at.getTime() + job.timeout * 1000 + jobTimeoutGraceMs) return 'jobTimeout';
    }
    const holdSince = job.started_at ?? job.claimed_at;
    if (holdSince === null) return null; // not a state the log produces: `runway audit` reports it
    if (applies('claimTimeout') && now > holdSince.getTime() + claimTimeoutMs) return 'claimTimeout';
    const beat = this.heartbeats.get(job.id);
    // Silent since its last heartbeat of this attempt, its claim or start, or (jobs that were in
    // flight when this instance started) since this instance began listening.
    const since = Math.max(
      beat !== undefined && beat.attempt === job.attempt ? beat.at : 0,
      holdSince.getTime(),
      this.listeningSince,
    );
    return applies('heartbeatTimeout') && now > since + heartbeatTimeoutMs ? 'heartbeatTimeout' : null;
  }

  private async fire(job: InFlightRow, type: TimeoutType): Promise<void> {
    const at = this.clock.now().toISOString();
    const command = { type, attempt: job.attempt, at };
    try {
      await this.jobs.execute(job.id, command, { ...SYSTEM, correlationId: `${type}:${job.id}:${job.attempt}` });
      if (type === 'jobTimeout') this.metrics.jobTimeouts.inc();
      else this.metrics.heartbeatTimeouts.inc({ kind: type === 'claimTimeout' ? 'claim' : 'heartbeat' });
      this.logger.log(`${type} for job ${job.id} attempt ${job.attempt}`);
    } catch (error) {
      // Another instance fired first, or the job moved on since the sweep read it.
      if (error instanceof InvalidTransitionError || error instanceof ConcurrencyError) return;
      // The database went away mid-sweep: the sweep fails and backs off; this fires again later.
      if (isDatabaseUnavailable(error)) throw error;
      this.logger.error(`${type} for job ${job.id} failed: ${(error as Error).stack ?? String(error)}`);
    }
  }
}
