import { AuditRepository } from '../modules/audit/audit.repository';
import { AuditService, type LogAuditSummary } from '../modules/audit/audit.service';
import { type Divergence, type StreamReport, isVerified } from '../modules/audit/divergence';
import type { CommandContext } from './context';

/** The `--json` report: the summary and every stream that is not plainly verified. */
export interface AuditJsonReport extends LogAuditSummary {
  divergentStreams: StreamReport[];
  /** Verified streams whose billing the projector has not reached yet. */
  pendingStreams: StreamReport[];
}

/** How often the progress line is redrawn on a terminal, ms. */
const PROGRESS_MS = 250;

/**
 * `runway audit [--json]`: every stream's chain, fold and views. Without --json, one line per
 * divergent stream as it is found, then the summary; with it, one JSON document at the end.
 * `write` takes whole lines. On a terminal (`progress.isTTY`: stderr) a progress line says how
 * far it has got (streams and events checked, of how many streams), is cleared before each line
 * `write` prints, and ends as a line with the time it took.
 */
export async function auditCommand(
  { database, store }: CommandContext,
  options: { json: boolean; batchSize?: number },
  write: (text: string) => void,
  progress: (NodeJS.WritableStream & { isTTY?: boolean }) | null = null,
): Promise<LogAuditSummary & { seconds: number }> {
  const started = performance.now();
  const audit = new AuditService(new AuditRepository(database.db, store), store);
  const divergentStreams: StreamReport[] = [];
  const pendingStreams: StreamReport[] = [];
  const tty = progress !== null && progress.isTTY === true;
  // The streams there are now, for "of how many": more may come while it runs.
  const total = tty ? Number((await database.db.query<{ n: string }>(`SELECT count(*) AS n FROM streams`)).rows[0].n) : 0;
  const seen = { streams: 0, events: 0 };
  let drawnAt = 0;
  let drawn = false;
  const clear = () => {
    if (drawn) progress?.write('\r\x1b[K');
    drawn = false;
  };
  const summary = await audit.auditLog(
    (report) => {
      seen.streams += 1;
      seen.events += report.eventCount;
      if (!isVerified(report)) {
        if (options.json) divergentStreams.push(report);
        else {
          clear();
          write(`${formatStreamReport(report)}\n`);
        }
      } else if (report.pending.length > 0 && options.json) {
        pendingStreams.push(report);
      }
      if (tty && performance.now() - drawnAt >= PROGRESS_MS) {
        drawnAt = performance.now();
        const seconds = (performance.now() - started) / 1000;
        progress.write(`\r\x1b[Kaudit: ${seen.streams} of ${Math.max(total, seen.streams)} streams, ${seen.events} events checked, ${seconds.toFixed(0)} s`);
        drawn = true;
      }
    },
    { batchSize: options.batchSize },
  );
  clear();
  const seconds = (performance.now() - started) / 1000;
  // The time on the terminal, beside the stdout summary (whose line scripts read as it is).
  if (tty) progress.write(`audit: ${summary.streams} streams, ${summary.events} events checked in ${seconds.toFixed(1)} s\n`);
  if (options.json) {
    const report: AuditJsonReport = { ...summary, divergentStreams, pendingStreams };
    write(`${JSON.stringify(report)}\n`);
  } else {
    write(`${formatSummary(summary)}\n`);
  }
  return { ...summary, seconds };
}

/** `divergent job <id> (4 events, chain broken): @3 hash: hash does not match the event (expected "…", actual "…"); …` */
export function formatStreamReport(report: StreamReport): string {
  const chain = report.chainValid ? 'chain valid' : 'chain broken';
  const count = `${report.eventCount} event${report.eventCount === 1 ? '' : 's'}`;
  return `divergent ${report.streamType} ${report.streamId} (${count}, ${chain}): ${report.divergences.map(formatDivergence).join('; ')}`;
}

export function formatSummary(summary: LogAuditSummary): string {
  const pending = summary.pending > 0 ? `, ${summary.pending} with billing not projected yet` : '';
  const verdict = summary.verified ? 'verified' : 'DIVERGENT';
  return `audit ${verdict}: ${summary.streams} streams, ${summary.events} events, ${summary.divergent} divergent${pending}`;
}

function formatDivergence(divergence: Divergence): string {
  const where = [divergence.position === undefined ? null : `@${divergence.position}`, divergence.field ?? null].filter((part) => part !== null).join(' ');
  const values =
    divergence.expected !== undefined || divergence.actual !== undefined
      ? ` (expected ${short(divergence.expected)}, actual ${short(divergence.actual)})`
      : '';
  return `${where === '' ? '' : `${where}: `}${oneLine(divergence.reason)}${values}`;
}

/** A value as JSON, cut to fit on the line. */
function short(value: unknown): string {
  const json = value === undefined ? 'nothing' : JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}…` : json;
}

const oneLine = (text: string) => text.replace(/\s+/g, ' ');
