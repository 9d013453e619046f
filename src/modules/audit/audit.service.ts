import { Injectable } from '@nestjs/common';
import { NotFoundError } from '../../common/errors';
import { UUID_PATTERN } from '../../common/ids';
import { canReadOrg, type Principal } from '../auth/principal';
import { EventStore } from '../event-store/event-store';
import { JOB_STREAM } from '../jobs/job.views';
import { ORG_STREAM } from '../orgs/org';
import { RUNNER_STREAM } from '../runners/runner';
import { SPEC_STREAM } from '../specs/specs';
import { AuditRepository, STREAMS_START, type StreamCursor } from './audit.repository';
import { type Divergence, type StreamReport, isVerified } from './divergence';
import { JobStreamAudit } from './job.audit';
import { OrgStreamAudit } from './org.audit';
import { RunnerStreamAudit } from './runner.audit';
import { SpecStreamAudit } from './spec.audit';
import { type ContentAuditFactory, StreamAudit } from './stream-audit';

/** The audit of one job (docs/protocol.md, "Jobs", `GET /v1/jobs/{job}/audit`). */
export interface JobAudit {
  /** The chain is valid and nothing diverges. */
  verified: boolean;
  /** The status the events fold to (null: no events). */
  status: string | null;
  eventCount: number;
  chainValid: boolean;
  divergences: Divergence[];
  /** Billing differences the billing projector has not caught up with yet: lag, not divergence. */
  pending: Divergence[];
}

/** What auditing the whole log found. */
export interface LogAuditSummary {
  verified: boolean;
  streams: number;
  events: number;
  /** Streams (and view rows without a stream) that diverge or whose chain is broken. */
  divergent: number;
  /** Verified streams with billing not projected yet. */
  pending: number;
}

/** How each stream type is folded and compared with its views. */
const CONTENT_AUDITS: Readonly<Record<string, ContentAuditFactory>> = {
  [JOB_STREAM]: (id) => new JobStreamAudit(id),
  [ORG_STREAM]: (id) => new OrgStreamAudit(id),
  [RUNNER_STREAM]: (id) => new RunnerStreamAudit(id),
  [SPEC_STREAM]: (id) => new SpecStreamAudit(id),
};

const DEFAULT_BATCH = 1_000;

/**
 * Checks the log against itself and against what was derived from it: every stream's hash chain,
 * every job event against the job machine, every fold against the views.
 */
@Injectable()
export class AuditService {
  constructor(
    private readonly repository: AuditRepository,
    private readonly store: EventStore,
  ) {}

  /** `auditJob` for a caller: an org key sees its own jobs, the operator every job; others 404. */
  async auditJobFor(ref: string, principal: Principal): Promise<JobAudit> {
    const owner = UUID_PATTERN.test(ref) ? await this.repository.ownerOfJob(ref) : null;
    if (owner === null || !canReadOrg(principal, owner)) throw new NotFoundError('job not found');
    const audit = await this.auditJob(ref);
    if (audit === null) throw new NotFoundError('job not found');
    return audit;
  }

  /**
   * A job's stored events, as stored: the hash chain checked, replayed through the job machine,
   * the fold compared with the jobs and job_billing views. Null if there is no such job.
   */
  async auditJob(jobId: string): Promise<JobAudit | null> {
    const report = await this.repository.snapshot(async (tx) => {
      const events = await this.store.readStream(jobId, 0, tx);
      const isJob = events.some((e) => e.streamType === JOB_STREAM) || (await this.repository.jobRowExists(tx, jobId));
      if (!isJob) return null;
      const audit = new StreamAudit(jobId, JOB_STREAM, CONTENT_AUDITS);
      for (const event of events) audit.push(event);
      if (events.length > 0) audit.lastAt(await this.repository.logPositionOf(tx, events[events.length - 1].id));
      return audit.finish(await this.repository.views(tx, [{ id: jobId, type: JOB_STREAM }]));
    });
    if (report === null) return null;
    return {
      verified: isVerified(report),
      status: report.status ?? null,
      eventCount: report.eventCount,
      chainValid: report.chainValid,
      divergences: report.divergences,
      pending: report.pending,
    };
  }

  /**
   * Every stream of the log, one after the other, in batches of `batchSize` events: only one
   * stream's fold and one batch are held at a time. Each batch is read in a snapshot of its own,
   * with the views of the streams it ends. `onReport` gets every stream's report as it is done,
   * then those of view rows and stream heads that have no events.
   */
  async auditLog(
    onReport: (report: StreamReport) => void | Promise<void>,
    options: { batchSize?: number } = {},
  ): Promise<LogAuditSummary> {
    const batchSize = options.batchSize ?? DEFAULT_BATCH;
    const summary: LogAuditSummary = { verified: true, streams: 0, events: 0, divergent: 0, pending: 0 };
    const report = async (stream: StreamReport) => {
      summary.streams += 1;
      summary.events += stream.eventCount;
      if (!isVerified(stream)) summary.divergent += 1;
      else if (stream.pending.length > 0) summary.pending += 1;
      await onReport(stream);
    };

    let cursor: StreamCursor = STREAMS_START;
    let current: StreamAudit | null = null;
    for (let done = false; !done; ) {
      const reports = await this.repository.snapshot(async (tx) => {
        const batch = await this.repository.eventsAfter(tx, cursor, batchSize);
        const ended: StreamAudit[] = [];
        for (const { envelope, transactionId } of batch) {
          if (current !== null && current.streamId !== envelope.streamId) {
            ended.push(current);
            current = null;
          }
          current ??= new StreamAudit(envelope.streamId, envelope.streamType, CONTENT_AUDITS);
          current.push(envelope, transactionId);
        }
        if (batch.length < batchSize) {
          // The end of the log in this snapshot: the last stream is whole.
          if (current !== null) ended.push(current);
          current = null;
          done = true;
        } else {
          const last = batch[batch.length - 1].envelope;
          cursor = { streamId: last.streamId, position: last.position };
        }
        const views = await this.repository.views(tx, ended.map((audit) => ({ id: audit.streamId, type: audit.streamType })));
        return ended.map((audit) => audit.finish(views));
      });
      for (const stream of reports) await report(stream);
    }

    for (const stream of await this.withoutEvents()) await report(stream);
    summary.verified = summary.divergent === 0;
    return summary;
  }

  /** Stream heads with no events, and view rows with no stream: each a divergent "stream" of 0 events. */
  private async withoutEvents(): Promise<StreamReport[]> {
    const { heads, orphans } = await this.repository.snapshot(async (tx) => ({
      heads: await this.repository.headsWithoutEvents(tx),
      orphans: await this.repository.orphanRows(tx),
    }));
    const reports = new Map<string, StreamReport>();
    const reportOf = (streamId: string, streamType: string) => {
      let found = reports.get(streamId);
      if (found === undefined) {
        found = { streamId, streamType, eventCount: 0, chainValid: true, divergences: [], pending: [] };
        reports.set(streamId, found);
      }
      return found;
    };
    for (const head of heads) {
      const stream = reportOf(head.streamId, head.streamType);
      stream.chainValid = false;
      stream.divergences.push({
        field: 'streams.version',
        expected: 0,
        actual: head.version,
        reason: `the stream's head says it has ${head.version} events; the log has none`,
      });
    }
    for (const orphan of orphans) {
      reportOf(orphan.id, orphan.streamType).divergences.push({ field: orphan.table, reason: `a row of the ${orphan.table} view with no stream in the log` });
    }
    return [...reports.values()];
  }
}
