import { once } from 'node:events';
import { ConsoleLogger, type LogLevel, Logger } from '@nestjs/common';
import type { EventEnvelope } from '../events/envelope';
import type { Db } from '../modules/database/db';
import { compareLogPositions } from '../modules/event-store/checkpoints';
import { type EventStore, LOG_START, type LogPosition } from '../modules/event-store/event-store';
import { JOB_STREAM } from '../modules/jobs/job.views';
import { ORG_STREAM } from '../modules/orgs/org';
import type { CommandContext } from './context';

/** A bad `--from`, `--to` or filter: the command exits 2 with this message. */
export class ExportError extends Error {}

const BATCH = 1_000;
/** How often the progress line is redrawn on a terminal, ms. */
const PROGRESS_MS = 250;

/** Where an export starts or ends: at an event (its global position), or at a time. */
export type ExportBound = { position: number } | { time: Date };

/** What to export: the stretch of the log, and which of its events. */
export interface ExportRange {
  /** After this event (0: from the start), or from this time on (events that occurred at or after it). */
  from: ExportBound;
  /** Through this event, or before this time; null: to the end of the log (as far as the gate lets a reader go). */
  to: ExportBound | null;
  /** Only events of this organization: its own stream (projects and keys included) and its jobs'. */
  orgId?: string;
  /** Only events of this project: its jobs', and its ProjectCreated. */
  projectId?: string;
  /** Only this job's events. */
  jobId?: string;
  /** Only events of these types. */
  types?: ReadonlySet<string>;
}

/**
 * A `--from` or `--to`: a global position (a whole number, 0 or more), or a time (ISO 8601: a
 * date, or a date and time; without a zone, UTC).
 */
export function parseBound(flag: '--from' | '--to', value: string | undefined): ExportBound | null {
  if (value === undefined) return null;
  const text = value.trim();
  if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) return { position: Number(text) };
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(text)) {
    const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(text) || text.length === 10 ? text : `${text}Z`;
    const time = new Date(zoned.replace(' ', 'T'));
    if (!Number.isNaN(time.getTime())) return { time };
  }
  throw new ExportError(
    `${flag} must be a global position (a whole number, 0 or more) or a time (ISO 8601: 2026-12-01, 2026-12-01T10:00:00Z) (got "${value}")`,
  );
}

/** What an export wrote, and how much of the log it went through to find it. */
export interface ExportReport {
  written: number;
  scanned: number;
  seconds: number;
}

/**
 * `runway events export`: the log as NDJSON, one envelope per line exactly as EventStore returns
 * it, in log order, over `range` (by default all of it). Read and written a batch at a time,
 * waiting for `out` to drain, so memory stays flat whatever the log's size; the filters are
 * applied to each batch as it is read (the log is scanned from the first event the range can
 * hold to the last). Like every reader of the log it takes only events committed before the
 * oldest transaction still writing Runway's database, so a run ends at a point with nothing
 * missing before it: resume with `--from` the last line's globalPosition. On a terminal
 * (`progress.isTTY`) a progress line is kept up to date, and a summary ends it.
 */
export async function exportRange(
  { store, database }: CommandContext,
  range: ExportRange,
  out: NodeJS.WritableStream,
  batchSize = BATCH,
  progress: (NodeJS.WritableStream & { isTTY?: boolean }) | null = null,
): Promise<ExportReport> {
  const db = database.db;
  const started = performance.now();
  const start = await startOf(store, db, range.from);
  const end = await endOf(store, db, range.to);
  const report: ExportReport = { written: 0, scanned: 0, seconds: 0 };
  const tty = progress !== null && progress.isTTY === true;
  let drawnAt = 0;
  const draw = (final: boolean) => {
    report.seconds = (performance.now() - started) / 1000;
    if (!tty) return;
    const rate = report.seconds > 0 ? Math.round(report.scanned / report.seconds) : 0;
    const line = `runway: ${final ? 'exported' : 'exporting:'} ${report.written} event(s), ${report.scanned} scanned, ${rate}/s`;
    progress.write(`\r${line}${final ? ` in ${report.seconds.toFixed(1)} s\n` : ''}`);
  };
  if (start === null || end === 'none') {
    draw(true);
    return report;
  }
  // stdout reports a reader that went away (EPIPE) as an 'error' event, after the write.
  let failed: Error | null = null;
  const onError = (error: Error) => (failed ??= error);
  out.on('error', onError);
  try {
    let position = start;
    for (;;) {
      const batch = await store.readAll(position, batchSize);
      let events = batch.events;
      let last = events.length;
      if (end !== null) {
        // Past the end: log order is (transaction id, global position).
        last = batch.positions.findIndex((p) => compareLogPositions(p, end) > 0);
        if (last === -1) last = events.length;
        events = events.slice(0, last);
      }
      report.scanned += events.length;
      const kept = await filtered(db, range, events);
      if (kept.length > 0) {
        const chunk = kept.map((event) => `${JSON.stringify(event)}\n`).join('');
        const flowing = out.write(chunk) || (await drained(out));
        report.written += kept.length;
        if (!flowing && failed === null) break; // closed under us
      }
      if (failed !== null) {
        // Whoever read the export went away (`| head`): that ends it. Any other error is one.
        if ((failed as NodeJS.ErrnoException).code === 'EPIPE') break;
        throw failed;
      }
      if (last < batch.events.length || batch.events.length < batchSize) break;
      position = batch.last;
      if (tty && performance.now() - drawnAt >= PROGRESS_MS) {
        drawnAt = performance.now();
        draw(false);
      }
    }
  } finally {
    out.off('error', onError);
  }
  draw(true);
  return report;
}

/** The log position to read after, or null when nothing can be in range (a time past every event). */
async function startOf(store: EventStore, db: Db, from: ExportBound): Promise<LogPosition | null> {
  if ('position' in from) {
    if (from.position === 0) return LOG_START;
    const found = await store.positionOf(from.position);
    if (found === null) throw new ExportError(`--from ${from.position}: no event has that global position`);
    return found;
  }
  // The first event in log order that occurred at or after the time; the export reads after the
  // one before it. (Times follow log order only roughly, so later events are still filtered.)
  const first = await db.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM events
      WHERE occurred_at >= $1 ORDER BY events.transaction_id, events.global_position LIMIT 1`,
    [from.time.toISOString()],
  );
  if (first.rows[0] === undefined) return null;
  const before = await db.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM events
      WHERE (transaction_id, global_position) < ($1::xid8, $2::bigint)
      ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1`,
    [first.rows[0].transaction_id, first.rows[0].global_position],
  );
  const row = before.rows[0];
  return row === undefined ? LOG_START : { transactionId: row.transaction_id, globalPosition: Number(row.global_position) };
}

/** The last log position in range (inclusive); null: no end; 'none': nothing is before a time. */
async function endOf(store: EventStore, db: Db, to: ExportBound | null): Promise<LogPosition | null | 'none'> {
  if (to === null) return null;
  if ('position' in to) {
    const found = await store.positionOf(to.position);
    if (found === null) throw new ExportError(`--to ${to.position}: no event has that global position`);
    return found;
  }
  const { rows } = await db.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM events
      WHERE occurred_at < $1 ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1`,
    [to.time.toISOString()],
  );
  const row = rows[0];
  return row === undefined ? 'none' : { transactionId: row.transaction_id, globalPosition: Number(row.global_position) };
}

/** The events of `events` that `range`'s filters keep, in order. */
async function filtered(db: Db, range: ExportRange, events: EventEnvelope[]): Promise<EventEnvelope[]> {
  const from = range.from;
  const to = range.to;
  let kept = events.filter(
    (e) =>
      (range.types === undefined || range.types.has(e.type)) &&
      (range.jobId === undefined || e.streamId === range.jobId) &&
      (!('time' in from) || Date.parse(e.occurredAt) >= from.time.getTime()) &&
      (to === null || !('time' in to) || Date.parse(e.occurredAt) < to.time.getTime()),
  );
  if (range.orgId === undefined && range.projectId === undefined) return kept;
  // Jobs' owners from the jobs view (their first event, JobSubmitted, names them too).
  const jobIds = [...new Set(kept.filter((e) => e.streamType === JOB_STREAM).map((e) => e.streamId))];
  const owners = new Map<string, { org_id: string; project_id: string }>();
  if (jobIds.length > 0) {
    const { rows } = await db.query<{ id: string; org_id: string; project_id: string }>(`SELECT id, org_id, project_id FROM jobs WHERE id = ANY($1::uuid[])`, [jobIds]);
    for (const row of rows) owners.set(row.id, row);
  }
  kept = kept.filter((e) => {
    if (e.streamType === JOB_STREAM) {
      const owner = owners.get(e.streamId);
      return owner !== undefined && (range.orgId === undefined || owner.org_id === range.orgId) && (range.projectId === undefined || owner.project_id === range.projectId);
    }
    if (e.streamType === ORG_STREAM) {
      if (range.orgId !== undefined && e.streamId !== range.orgId) return false;
      if (range.projectId !== undefined) return e.type === 'ProjectCreated' && (e.data as { projectId?: string }).projectId === range.projectId;
      return true;
    }
    return false;
  });
  return kept;
}

/** An organization named by id or slug, and a project by id (or by slug within that organization). */
export async function resolveOwners(db: Db, org: string | undefined, project: string | undefined): Promise<{ orgId?: string; projectId?: string }> {
  const resolved: { orgId?: string; projectId?: string } = {};
  if (org !== undefined) {
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM orgs WHERE id::text = $1 OR slug = $1`, [org.trim().toLowerCase()]);
    if (rows[0] === undefined) throw new ExportError(`--org ${org}: no such organization (an id or a slug)`);
    resolved.orgId = rows[0].id;
  }
  if (project !== undefined) {
    const { rows } = await db.query<{ id: string }>(
      `SELECT id FROM projects WHERE (id::text = $1 OR (slug = $1 AND org_id::text = $2))`,
      [project.trim().toLowerCase(), resolved.orgId ?? ''],
    );
    if (rows[0] === undefined) {
      throw new ExportError(`--project ${project}: no such project (an id, or a slug with --org)`);
    }
    resolved.projectId = rows[0].id;
  }
  return resolved;
}

/** Waits until `out` takes more (true); false if it closed or failed first. */
async function drained(out: NodeJS.WritableStream): Promise<boolean> {
  const stop = new AbortController();
  try {
    const which = await Promise.race([
      once(out, 'drain', { signal: stop.signal }).then(() => 'drain'),
      once(out, 'close', { signal: stop.signal }).then(() => 'close'),
    ]);
    return which === 'drain';
  } catch {
    return false; // an 'error' event: `onError` has it
  } finally {
    stop.abort();
  }
}

/** Nest's console logger, every level on stderr: stdout carries the export (or a JSON report) alone. */
class StderrLogger extends ConsoleLogger {
  protected override printMessages(
    messages: unknown[],
    context?: string,
    logLevel?: LogLevel,
    _stream?: 'stdout' | 'stderr',
    errorStack?: unknown,
    params?: Record<string, unknown>,
  ): void {
    super.printMessages(messages, context, logLevel, 'stderr', errorStack, params);
  }
}

/** Sends Runway's log lines to stderr, at `levels`. */
export function logToStderr(levels: LogLevel[]): void {
  Logger.overrideLogger(new StderrLogger({ logLevels: levels }));
}
