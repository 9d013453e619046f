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

/**
 * `runway audit [--json]`: every stream's chain, fold and views. Without --json, one line per
 * divergent stream as it is found, then the summary; with it, one JSON document at the end.
 * `write` takes whole lines.
 */
export async function auditCommand(
  { database, store }: CommandContext,
  options: { json: boolean; batchSize?: number },
  write: (text: string) => void,
): Promise<LogAuditSummary> {
  const audit = new AuditService(new AuditRepository(database.db, store), store);
  const divergentStreams: StreamReport[] = [];
  const pendingStreams: StreamReport[] = [];
  const summary = await audit.auditLog(
    (report) => {
      if (!isVerified(report)) {
        if (options.json) divergentStreams.push(report);
        else write(`${formatStreamReport(report)}\n`);
      } else if (report.pending.length > 0 && options.json) {
        pendingStreams.push(report);
      }
    },
    { batchSize: options.batchSize },
  );
  if (options.json) {
    const report: AuditJsonReport = { ...summary, divergentStreams, pendingStreams };
    write(`${JSON.stringify(report)}\n`);
  } else {
    write(`${formatSummary(summary)}\n`);
  }
  return summary;
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
