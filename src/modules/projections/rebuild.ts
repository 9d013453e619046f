import type { Clock } from '../../common/clock';
import type { Db, Sql } from '../database/db';
import { saveCheckpoint } from '../event-store/checkpoints';
import { type EventStore, LOG_START, type LogPosition } from '../event-store/event-store';
import type { Projection } from './projection';
import { ASYNC_PROJECTIONS, checkpointName } from './registry';

/** How the rebuilt copy of one table compares with the live one. */
export interface TableReport {
  table: string;
  liveRows: number;
  rebuiltRows: number;
  /** Rows in one and not in the other (counting duplicates), both ways. */
  onlyLive: number;
  onlyRebuilt: number;
}

export interface RebuildReport {
  events: number;
  seconds: number;
  tables: TableReport[];
  /** Whether the rebuilt views replaced the live ones. */
  swapped: boolean;
  equal: boolean;
}

const SCHEMA = 'runway_rebuild';
const BATCH = 5_000;

/**
 * Replays the whole log into fresh copies of every view's tables (a schema of their own, with the
 * same columns, checks and indexes), compares them with the live views row by row, and, unless
 * asked only to check, swaps them in. The last stretch of the log, the comparison and the swap
 * happen in one transaction that holds back appends (an EXCLUSIVE lock on `streams`) and every
 * projector (their checkpoint rows), so nothing is lost or applied twice.
 */
export class ProjectionRebuilder {
  constructor(
    private readonly db: Db,
    private readonly store: EventStore,
    private readonly projections: readonly Projection[],
    private readonly clock: Clock,
  ) {}

  private get tables(): string[] {
    return this.projections.flatMap((p) => [...p.tables]);
  }

  async rebuild(options: { swap: boolean }): Promise<RebuildReport> {
    const started = performance.now();
    await this.createSchema();
    try {
      let { position, events } = await this.replay(LOG_START, this.db);
      return await this.db.transaction(async (tx) => {
        await tx.query('LOCK TABLE streams IN EXCLUSIVE MODE');
        await tx.query(`SELECT 1 FROM checkpoints WHERE name = ANY($1) ORDER BY name FOR UPDATE`, [
          ASYNC_PROJECTIONS.map(checkpointName),
        ]);
        // No append can start now; those that committed before the lock are read to the end.
        const tail = await this.replayToEnd(position, tx);
        position = tail.position;
        events += tail.events;
        const tables = await this.compare(tx);
        const equal = tables.every((t) => t.onlyLive === 0 && t.onlyRebuilt === 0);
        if (options.swap) await this.swap(tx, position);
        return { events, seconds: (performance.now() - started) / 1000, tables, swapped: options.swap, equal };
      });
    } finally {
      await this.db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    }
  }

  private async createSchema(): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
      await tx.query(`CREATE SCHEMA ${SCHEMA}`);
      // LIKE copies columns, defaults, checks and indexes, not foreign keys (they would point at the live tables).
      for (const table of this.tables) await tx.query(`CREATE TABLE ${SCHEMA}.${table} (LIKE public.${table} INCLUDING ALL)`);
    });
  }

  /** Applies every batch of the log after `from` to the rebuilt tables, each in a transaction of its own. */
  private async replay(from: LogPosition, sql: Db): Promise<{ position: LogPosition; events: number }> {
    let position = from;
    let events = 0;
    for (;;) {
      const batch = await this.store.readAll(position, BATCH, sql);
      if (batch.events.length === 0) return { position, events };
      await sql.transaction((tx) => this.applyToRebuild(tx, batch.events));
      position = batch.last;
      events += batch.events.length;
    }
  }

  /**
   * Inside the locked transaction: the rest of the log. No append is in flight once the lock is
   * held, so every event there is is committed and read without the gap-safe gate (which would
   * wait for unrelated transactions, such as a projector blocked on this one).
   */
  private async replayToEnd(from: LogPosition, tx: Sql): Promise<{ position: LogPosition; events: number }> {
    let position = from;
    let events = 0;
    for (;;) {
      const batch = await this.store.readAll(position, BATCH, tx, { appendsExcluded: true });
      if (batch.events.length === 0) return { position, events };
      await this.applyToRebuild(tx, batch.events);
      position = batch.last;
      events += batch.events.length;
    }
  }

  private async applyToRebuild(tx: Sql, events: Parameters<Projection['apply']>[1]): Promise<void> {
    // Custom plans here: the pool's generic ones (data-source.ts) would be made while the copies
    // are small and, with no ANALYZE of them until the rebuild ends, kept as they grow: a
    // generic plan of a projection's `id = ANY($1)` went on scanning a whole table (256.9 s for
    // a rebuild of 1,000,001 events, against 74.8 s).
    await tx.query(`SET LOCAL search_path TO ${SCHEMA}, public; SET LOCAL plan_cache_mode TO auto`);
    for (const projection of this.projections) await projection.apply(tx, events);
    await tx.query(`SET LOCAL search_path TO public`);
  }

  private async compare(tx: Sql): Promise<TableReport[]> {
    const reports: TableReport[] = [];
    for (const table of this.tables) {
      const { rows } = await tx.query<Record<keyof Omit<TableReport, 'table'>, string>>(
        `SELECT (SELECT count(*) FROM public.${table}) AS "liveRows",
                (SELECT count(*) FROM ${SCHEMA}.${table}) AS "rebuiltRows",
                (SELECT count(*) FROM (SELECT * FROM public.${table} EXCEPT ALL SELECT * FROM ${SCHEMA}.${table}) d) AS "onlyLive",
                (SELECT count(*) FROM (SELECT * FROM ${SCHEMA}.${table} EXCEPT ALL SELECT * FROM public.${table}) d) AS "onlyRebuilt"`,
      );
      const r = rows[0];
      reports.push({
        table,
        liveRows: Number(r.liveRows),
        rebuiltRows: Number(r.rebuiltRows),
        onlyLive: Number(r.onlyLive),
        onlyRebuilt: Number(r.onlyRebuilt),
      });
    }
    return reports;
  }

  /** Replaces the live rows with the rebuilt ones and moves the projectors' checkpoints to the end. */
  private async swap(tx: Sql, position: LogPosition): Promise<void> {
    await tx.query(`TRUNCATE ${this.tables.map((t) => `public.${t}`).join(', ')}`);
    for (const table of this.tables) await tx.query(`INSERT INTO public.${table} SELECT * FROM ${SCHEMA}.${table}`);
    for (const projection of ASYNC_PROJECTIONS) {
      if (!this.projections.includes(projection)) continue;
      await tx.query(`DELETE FROM checkpoints WHERE name = $1`, [checkpointName(projection)]);
      if (position !== LOG_START) await saveCheckpoint(tx, checkpointName(projection), position, this.clock.now());
    }
  }
}
