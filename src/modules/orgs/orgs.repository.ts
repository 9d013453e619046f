import { Injectable } from '@nestjs/common';
import type { EventEnvelope } from '../../events/envelope';
import type { Plan } from '../../events/job-events';
import type { OrgEvent } from '../../events/org-events';
import { UUID_PATTERN } from '../../common/ids';
import { Db, type Sql } from '../database/db';

export interface OrgRow {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  max_concurrency: number | null;
  created_at: Date;
  updated_at: Date;
}

export interface ProjectRow {
  id: string;
  org_id: string;
  slug: string;
  name: string;
  created_at: Date;
}

export interface KeyRow {
  id: string;
  org_id: string;
  name: string | null;
  created_at: Date;
  revoked_at: Date | null;
}

/** The organization views: orgs, their keys and projects. */
@Injectable()
export class OrgsRepository {
  constructor(private readonly db: Db) {}

  /** Applies an organization's events to the views, in the transaction that appended them. */
  async project(tx: Sql, envelopes: readonly EventEnvelope<OrgEvent>[]): Promise<void> {
    for (const envelope of envelopes) {
      const event = envelope as unknown as OrgEvent;
      const orgId = envelope.streamId;
      const at = envelope.occurredAt;
      switch (event.type) {
        case 'OrgCreated':
          await tx.query(
            `INSERT INTO orgs (id, slug, name, plan, max_concurrency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)`,
            [orgId, event.data.slug, event.data.name, event.data.plan, event.data.maxConcurrency, at],
          );
          break;
        case 'OrgUpdated':
          await tx.query(
            `UPDATE orgs SET plan = COALESCE($2, plan),
               max_concurrency = CASE WHEN $3 THEN $4::int ELSE max_concurrency END, updated_at = $5
             WHERE id = $1`,
            [orgId, event.data.plan ?? null, 'maxConcurrency' in event.data, event.data.maxConcurrency ?? null, at],
          );
          break;
        case 'OrgKeyCreated':
          await tx.query(`INSERT INTO org_keys (id, org_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)`, [
            event.data.keyId,
            orgId,
            event.data.name,
            event.data.keyHash,
            at,
          ]);
          break;
        case 'OrgKeyRevoked':
          await tx.query(`UPDATE org_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, [event.data.keyId, at]);
          break;
        case 'ProjectCreated':
          await tx.query(`INSERT INTO projects (id, org_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)`, [
            event.data.projectId,
            orgId,
            event.data.slug,
            event.data.name,
            at,
          ]);
          break;
        default: {
          const _exhaustive: never = event;
          throw new Error(`unknown org event ${(_exhaustive as { type: string }).type}`);
        }
      }
    }
  }

  /** By id or slug. */
  async findOrg(ref: string): Promise<OrgRow | null> {
    const { rows } = await this.db.query<OrgRow>(
      UUID_PATTERN.test(ref) ? `SELECT * FROM orgs WHERE id = $1` : `SELECT * FROM orgs WHERE slug = $1`,
      [ref],
    );
    return rows[0] ?? null;
  }

  async listOrgs(): Promise<OrgRow[]> {
    return (await this.db.query<OrgRow>(`SELECT * FROM orgs ORDER BY created_at, id`)).rows;
  }

  async listKeys(orgId: string): Promise<KeyRow[]> {
    return (
      await this.db.query<KeyRow>(
        `SELECT id, org_id, name, created_at, revoked_at FROM org_keys WHERE org_id = $1 ORDER BY created_at, id`,
        [orgId],
      )
    ).rows;
  }

  /** A project of the org, by id or slug. */
  async findProject(orgId: string | null, ref: string): Promise<ProjectRow | null> {
    const byId = UUID_PATTERN.test(ref);
    const { rows } = await this.db.query<ProjectRow>(
      `SELECT * FROM projects WHERE ${byId ? 'id' : 'slug'} = $1 AND ($2::uuid IS NULL OR org_id = $2)
       ORDER BY created_at LIMIT 2`,
      [ref, orgId],
    );
    // A slug is unique within an org only; the operator must name such a project by id.
    return rows.length === 1 ? rows[0] : null;
  }

  async listProjects(orgId: string): Promise<ProjectRow[]> {
    return (await this.db.query<ProjectRow>(`SELECT * FROM projects WHERE org_id = $1 ORDER BY created_at, id`, [orgId])).rows;
  }
}
