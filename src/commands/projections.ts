import { ProjectionRebuilder, type RebuildReport } from '../modules/projections/rebuild';
import { ALL_PROJECTIONS } from '../modules/projections/registry';
import type { CommandContext } from './context';

/** `runway projections rebuild [--check]`: replays the log into fresh views, compares, swaps. */
export async function rebuildProjections({ database, store, clock }: CommandContext, check: boolean): Promise<RebuildReport> {
  return new ProjectionRebuilder(database.db, store, ALL_PROJECTIONS, clock).rebuild({ swap: !check });
}

export function formatRebuildReport(report: RebuildReport): string {
  const header = ['table', 'live rows', 'rebuilt rows', 'only live', 'only rebuilt'];
  const rows = report.tables.map((t) => [t.table, t.liveRows, t.rebuiltRows, t.onlyLive, t.onlyRebuilt].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const verdict = report.equal
    ? 'the rebuilt views equal the live ones'
    : 'the rebuilt views DIFFER from the live ones (rows only on one side above)';
  return [
    `replayed ${report.events} events in ${report.seconds.toFixed(1)} s (${Math.round(report.events / Math.max(report.seconds, 0.001))} events/s)`,
    line(header),
    ...rows.map(line),
    verdict,
    report.swapped ? 'the rebuilt views are now live' : 'nothing was changed (--check)',
  ].join('\n');
}
