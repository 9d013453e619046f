import type { Sql } from '../database/db';
import type { LogPosition } from './event-store';

/** Orders two log positions as the log does: by transaction id, then by global position. */
export function compareLogPositions(a: LogPosition, b: LogPosition): number {
  const ta = BigInt(a.transactionId);
  const tb = BigInt(b.transactionId);
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.globalPosition - b.globalPosition;
}

/** Where the reader `name` has got to in the log, or null if it has not saved a position yet. */
export async function loadCheckpoint(sql: Sql, name: string): Promise<LogPosition | null> {
  const result = await sql.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM checkpoints WHERE name = $1`,
    [name],
  );
  const row = result.rows[0];
  return row ? { transactionId: row.transaction_id, globalPosition: Number(row.global_position) } : null;
}

/**
 * Saves the reader's position. Only ever moves it forward: a writer that fell behind (a relay
 * that lost leadership mid-batch) cannot pull it back.
 */
export async function saveCheckpoint(sql: Sql, name: string, position: LogPosition, at: Date): Promise<void> {
  await sql.query(
    `INSERT INTO checkpoints (name, transaction_id, global_position, updated_at) VALUES ($1, $2::xid8, $3, $4)
     ON CONFLICT (name) DO UPDATE
       SET transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position, updated_at = EXCLUDED.updated_at
       WHERE (checkpoints.transaction_id, checkpoints.global_position) < (EXCLUDED.transaction_id, EXCLUDED.global_position)`,
    [name, position.transactionId, position.globalPosition, at.toISOString()],
  );
}

/** The log position of the event with id `eventId`, or null if this log has no such event. */
export async function logPositionOfEvent(sql: Sql, eventId: string): Promise<LogPosition | null> {
  const result = await sql.query<{ transaction_id: string; global_position: string }>(
    `SELECT transaction_id::text AS transaction_id, global_position FROM events WHERE id = $1`,
    [eventId],
  );
  const row = result.rows[0];
  return row ? { transactionId: row.transaction_id, globalPosition: Number(row.global_position) } : null;
}
