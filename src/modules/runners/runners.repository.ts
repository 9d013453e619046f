import { Injectable } from '@nestjs/common';
import { UUID_PATTERN } from '../../common/ids';
import type { EventEnvelope } from '../../events/envelope';
import type { RunnerEvent } from '../../events/runner-events';
import { Db, type Sql } from '../database/db';

export interface RunnerRow {
  id: string;
  slug: string;
  name: string;
  archived: boolean;
  created_at: Date;
  updated_at: Date;
  specs: string[];
  current_job: string | null;
}

const SELECT_RUNNERS = `
  SELECT r.id, r.slug, r.name, r.archived, r.created_at, r.updated_at,
         COALESCE((SELECT array_agg(s.slug ORDER BY s.slug) FROM runner_specs rs JOIN specs s ON s.id = rs.spec_id
                    WHERE rs.runner_id = r.id), '{}') AS specs,
         (SELECT j.id FROM jobs j WHERE j.runner_id = r.id AND j.status IN ('claimed', 'running')
           ORDER BY j.claimed_at DESC LIMIT 1) AS current_job
    FROM runners r`;

/** The runner views: runners and the specs each serves. */
@Injectable()
export class RunnersRepository {
  constructor(private readonly db: Db) {}

  async project(tx: Sql, envelopes: readonly EventEnvelope<RunnerEvent>[]): Promise<void> {
    for (const envelope of envelopes) {
      const event = envelope as unknown as RunnerEvent;
      const id = envelope.streamId;
      const at = envelope.occurredAt;
      switch (event.type) {
        case 'RunnerRegistered':
          await tx.query(
            `INSERT INTO runners (id, slug, name, token_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
            [id, event.data.slug, event.data.name, event.data.tokenHash, at],
          );
          await this.setSpecs(tx, id, event.data.specIds);
          break;
        case 'RunnerTokenRotated':
          await tx.query(`UPDATE runners SET token_hash = $2, updated_at = $3 WHERE id = $1`, [id, event.data.tokenHash, at]);
          break;
        case 'RunnerUpdated':
          await tx.query(`UPDATE runners SET name = COALESCE($2, name), updated_at = $3 WHERE id = $1`, [
            id,
            event.data.name ?? null,
            at,
          ]);
          if (event.data.specIds !== undefined) await this.setSpecs(tx, id, event.data.specIds);
          break;
        case 'RunnerArchived':
        case 'RunnerUnarchived':
          await tx.query(`UPDATE runners SET archived = $2, updated_at = $3 WHERE id = $1`, [
            id,
            event.type === 'RunnerArchived',
            at,
          ]);
          break;
        default: {
          const _exhaustive: never = event;
          throw new Error(`unknown runner event ${(_exhaustive as { type: string }).type}`);
        }
      }
    }
  }

  private async setSpecs(tx: Sql, runnerId: string, specIds: readonly string[]): Promise<void> {
    await tx.query(`DELETE FROM runner_specs WHERE runner_id = $1`, [runnerId]);
    await tx.query(`INSERT INTO runner_specs (runner_id, spec_id) SELECT $1, unnest($2::uuid[])`, [runnerId, specIds]);
  }

  /** By id or slug. */
  async find(ref: string): Promise<RunnerRow | null> {
    const column = UUID_PATTERN.test(ref) ? 'id' : 'slug';
    return (await this.db.query<RunnerRow>(`${SELECT_RUNNERS} WHERE r.${column} = $1`, [ref])).rows[0] ?? null;
  }

  async list(): Promise<RunnerRow[]> {
    return (await this.db.query<RunnerRow>(`${SELECT_RUNNERS} ORDER BY r.slug`)).rows;
  }
}
