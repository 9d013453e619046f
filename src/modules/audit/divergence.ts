import { canonicalJson } from '../../events/envelope';

/**
 * One way the log and what was derived from it disagree: a broken hash link, an event the job
 * machine would not have recorded, a view row that does not match the fold. `position` names
 * the event (stream position), `field` the value (`data.exitCode`, `jobs.status`, ...).
 */
export interface Divergence {
  position?: number;
  field?: string;
  expected?: unknown;
  actual?: unknown;
  reason: string;
}

/** What one stream's audit found. */
export interface StreamReport {
  streamId: string;
  streamType: string;
  eventCount: number;
  /** Positions 1..n, every hash recomputed and linked, and the stream's head pointing at the last. */
  chainValid: boolean;
  /** The folded status (jobs only). */
  status?: string | null;
  divergences: Divergence[];
  /**
   * Differences in views kept by a projector that has not reached the stream's last event yet:
   * lag, not divergence (they do not make the stream unverified).
   */
  pending: Divergence[];
}

export const isVerified = (report: Pick<StreamReport, 'chainValid' | 'divergences'>): boolean =>
  report.chainValid && report.divergences.length === 0;

/** A view's value as JSON would carry it: times as ISO strings, bigint columns as numbers. */
export function normalize(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  return value === undefined ? null : value;
}

/** Two JSON values compared canonically (key order and `undefined` members do not count). */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(normalize(a)) === canonicalJson(normalize(b));
}

/** Two times (ISO strings or Dates, either may be null) that name the same instant. */
export function sameTime(a: string | Date | null, b: string | Date | null): boolean {
  if (a === null || b === null) return a === b;
  return new Date(a).getTime() === new Date(b).getTime();
}

/** Compares a view row's fields with the values the fold gives, adding a divergence per mismatch. */
export class ViewComparison {
  readonly divergences: Divergence[] = [];

  constructor(private readonly table: string) {}

  value(column: string, expected: unknown, actual: unknown): this {
    if (!sameJson(expected, actual)) this.differs(column, expected, actual);
    return this;
  }

  time(column: string, expected: string | null, actual: Date | string | null): this {
    if (!sameTime(expected, actual)) this.differs(column, expected, actual);
    return this;
  }

  /** Two sets of strings (order does not count). */
  set(column: string, expected: readonly string[], actual: readonly string[]): this {
    return this.value(column, [...expected].sort(), [...actual].sort());
  }

  missing(reason: string, field = this.table): this {
    this.divergences.push({ field, reason });
    return this;
  }

  private differs(column: string, expected: unknown, actual: unknown): void {
    this.divergences.push({
      field: `${this.table}.${column}`,
      expected: normalize(expected),
      actual: normalize(actual),
      reason: `the ${this.table} view does not match the log`,
    });
  }
}
