import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConcurrencyError, InvalidTransitionError } from '../../common/errors';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import type { EventMetadata } from '../../events/envelope';
import type { JobCommand } from '../../machines/job.machine';
import { Db } from '../database/db';
import { JobCommands } from '../jobs/job-commands';
import { Bus, type Subscription } from '../messaging/bus';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';

/** A heartbeat as the gateway forwards it on `<prefix>.heartbeats.<runner>`. */
export interface HeartbeatMessage {
  runner: string;
  job: string;
  attempt: number;
}

interface InFlightRow {
  id: string;
  status: 'claimed' | 'running';
  attempt: number;
  timeout: number;
  claimed_at: Date;
  started_at: Date | null;
}

const SYSTEM: Omit<EventMetadata, 'correlationId'> = { causationId: null, actor: 'system' };

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
  private readonly startedAt: number;
  private subscription: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly jobs: JobCommands,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) private readonly config: RunwayConfig,
  ) {
    this.startedAt = clock.now().getTime();
  }

  onApplicationBootstrap(): void {
    this.subscription = this.bus.subscribe(this.subjects.allHeartbeats(), ({ data }) => this.heard(data as HeartbeatMessage));
    const period = Math.max(50, Math.min(1_000, Math.floor(this.config.heartbeatIntervalMs)));
    this.timer = setInterval(() => void this.sweep(), period).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.subscription?.unsubscribe();
    await this.sweeping;
  }

  heard(message: HeartbeatMessage): void {
    if (typeof message?.job !== 'string' || typeof message.attempt !== 'number') return;
    this.heartbeats.set(message.job, { attempt: message.attempt, at: this.clock.now().getTime() });
  }

  /** Fires every deadline that has passed. One sweep at a time; tests call it directly. */
  sweep(): Promise<void> {
    this.sweeping ??= this.fireDue().finally(() => (this.sweeping = null));
    return this.sweeping;
  }

  private async fireDue(): Promise<void> {
    const now = this.clock.now().getTime();
    const { rows } = await this.db.query<InFlightRow>(
      `SELECT id, status, attempt, timeout, claimed_at, started_at FROM jobs WHERE status IN ('claimed', 'running')`,
    );
    const inFlight = new Set<string>();
    for (const job of rows) {
      inFlight.add(job.id);
      const due = this.due(job, now);
      if (due !== null) await this.fire(job, due);
    }
    for (const id of this.heartbeats.keys()) if (!inFlight.has(id)) this.heartbeats.delete(id);
  }

  /** The timeout that has passed for `job`, if any; the job timeout before the others. */
  private due(job: InFlightRow, now: number): JobCommand['type'] | null {
    const { heartbeatTimeoutMs, claimTimeoutMs, jobTimeoutGraceMs } = this.config;
    if (job.status === 'running' && job.started_at !== null) {
      if (now > job.started_at.getTime() + job.timeout * 1000 + jobTimeoutGraceMs) return 'jobTimeout';
    }
    if (job.status === 'claimed' && now > job.claimed_at.getTime() + claimTimeoutMs) return 'claimTimeout';
    const beat = this.heartbeats.get(job.id);
    // Silent since its last heartbeat of this attempt, its claim or start, or (jobs that were in
    // flight when this instance started) since this instance began listening.
    const since = Math.max(
      beat !== undefined && beat.attempt === job.attempt ? beat.at : 0,
      (job.started_at ?? job.claimed_at).getTime(),
      this.startedAt,
    );
    return now > since + heartbeatTimeoutMs ? 'heartbeatTimeout' : null;
  }

  private async fire(job: InFlightRow, type: JobCommand['type']): Promise<void> {
    const at = this.clock.now().toISOString();
    const command = { type, attempt: job.attempt, at } as JobCommand;
    try {
      await this.jobs.execute(job.id, command, { ...SYSTEM, correlationId: `${type}:${job.id}:${job.attempt}` });
      if (type === 'jobTimeout') this.metrics.jobTimeouts.inc();
      else this.metrics.heartbeatTimeouts.inc({ kind: type === 'claimTimeout' ? 'claim' : 'heartbeat' });
      this.logger.log(`${type} for job ${job.id} attempt ${job.attempt}`);
    } catch (error) {
      // Another instance fired first, or the job moved on since the sweep read it.
      if (error instanceof InvalidTransitionError || error instanceof ConcurrencyError) return;
      this.logger.error(`${type} for job ${job.id} failed: ${(error as Error).stack ?? String(error)}`);
    }
  }
}
