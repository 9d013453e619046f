import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PLAN_NAMES, planOfPriority } from '../../events/plans';
import { Db } from '../database/db';

/** Plan tiers by priority, for labels. */
export function tierOf(priority: number): string {
  return planOfPriority(priority);
}

/**
 * Runway's Prometheus metrics, on a registry of this application's own (several apps may run in
 * one test process). Names follow the seed design's OpenTelemetry names (docs/architecture.md,
 * "Prior art") with dots as underscores: runner.job.claim -> runner_job_claim_total,
 * job.queue.duration -> job_queue_duration_seconds, runner.heartbeat.timeout ->
 * runner_heartbeat_timeout_total.
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  /** runner.job.claim: jobs claimed by runners. */
  readonly claims = new Counter({ name: 'runner_job_claim_total', help: 'Jobs claimed by runners', labelNames: ['tier'], registers: [this.registry] });

  /** job.queue.duration: from submission to claim. */
  readonly queueDuration = new Histogram({
    name: 'job_queue_duration_seconds',
    help: 'Time from submission to claim',
    labelNames: ['tier'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });

  /** runner.job.update{job.status}: runner-reported state changes. */
  readonly jobUpdates = new Counter({ name: 'runner_job_update_total', help: 'Job state changes reported by runners', labelNames: ['status'], registers: [this.registry] });

  /** runner.heartbeat.timeout: attempts lost for want of heartbeats (or of `running` after a claim). */
  readonly heartbeatTimeouts = new Counter({
    name: 'runner_heartbeat_timeout_total',
    help: 'Attempts ended because the runner went silent',
    labelNames: ['kind'],
    registers: [this.registry],
  });

  /** runner.job.timeout: running jobs canceled past their timeout and grace. */
  readonly jobTimeouts = new Counter({ name: 'runner_job_timeout_total', help: 'Jobs canceled past their timeout', registers: [this.registry] });

  readonly connectedRunners = new Gauge({ name: 'runway_connected_runners', help: 'Runner sockets open on this instance', registers: [this.registry] });

  readonly parkedClaims = new Gauge({ name: 'runway_parked_claims', help: 'REST long-poll claims waiting for work on this instance', registers: [this.registry] });

  /**
   * Parked REST long-poll claims woken to look for work again, by cause: `dispatch` (a job
   * appeared on one of their specs), `sweep` (the gateway's periodic retry, for lost dispatch
   * messages). A claim that ends by its poll timeout or its client leaving is not counted.
   */
  readonly claimWakeups = new Counter({
    name: 'runway_claim_wakeups_total',
    help: 'Parked REST long-poll claims woken to look for work again, by cause',
    labelNames: ['cause'],
    registers: [this.registry],
  });

  /** Liveness sweeps that completed on this instance (each fires every deadline that had passed). */
  readonly livenessSweeps = new Counter({ name: 'runway_liveness_sweeps_total', help: 'Liveness sweeps completed on this instance', registers: [this.registry] });

  readonly rateLimited = new Counter({ name: 'runway_rate_limited_total', help: 'Requests refused by a rate limit', labelNames: ['limit'], registers: [this.registry] });

  constructor(db: Db) {
    // The event loop's delay sampled every 100 ms, not prom-client's default 10 ms: a timer a
    // hundred times a second was half a percent of a core on an idle server (bench/idle), and a
    // Prometheus scrape every few seconds gains nothing from the finer sampling.
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    const lag = async () => {
      const { rows } = await db.query<{ name: string; events: string; seconds: number | null }>(
        `SELECT c.name, count(e.global_position) AS events,
                extract(epoch FROM (now() - min(e.occurred_at)))::float8 AS seconds
           FROM checkpoints c
           LEFT JOIN events e ON (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position)
          GROUP BY c.name`,
      );
      return rows;
    };
    new Gauge({
      name: 'runway_log_follower_lag_events',
      help: 'Events committed that a log follower (projector, relay) has not handled yet',
      labelNames: ['follower'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const row of await lag()) this.set({ follower: row.name }, Number(row.events));
      },
    });
    new Gauge({
      name: 'runway_log_follower_lag_seconds',
      help: 'Age of the oldest event a log follower (projector, relay) has not handled yet; 0 when caught up',
      labelNames: ['follower'],
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const row of await lag()) this.set({ follower: row.name }, Math.max(0, row.seconds ?? 0));
      },
    });
    new Gauge({
      name: 'runway_log_gate_age_seconds',
      help: 'Age of the oldest write transaction open in Runway’s database (or prepared in it): the log readers (relay, projectors, events feed) wait behind it for what commits after it; 0 when none',
      registers: [this.registry],
      async collect() {
        // Those of other databases hold no reader back (event-store.ts, LOG_GATE); this statement has no id of its own.
        const { rows } = await db.query<{ seconds: number | null }>(
          `SELECT extract(epoch FROM (now() - min(began)))::float8 AS seconds FROM (
             SELECT xact_start AS began FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database()
             UNION ALL
             SELECT prepared FROM pg_prepared_xacts WHERE database = current_database()) open`,
        );
        this.set(Math.max(0, rows[0]?.seconds ?? 0));
      },
    });
    new Gauge({
      name: 'runway_queue_depth',
      help: 'Pending jobs per tier',
      labelNames: ['tier'],
      registers: [this.registry],
      async collect() {
        const { rows } = await db.query<{ priority: number; n: string }>(
          `SELECT priority, count(*) AS n FROM jobs WHERE status = 'pending' GROUP BY priority`,
        );
        this.reset();
        for (const tier of PLAN_NAMES) this.set({ tier }, 0);
        for (const row of rows) this.inc({ tier: tierOf(row.priority) }, Number(row.n));
      },
    });
  }
}
