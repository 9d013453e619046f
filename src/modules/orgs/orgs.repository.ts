import { Injectable } from '@nestjs/common';
import type { Plan } from '../../events/job-events';
import { UUID_PATTERN } from '../../common/ids';
import { Db } from '../database/db';

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

  /**
   * A project with what a submission needs of its organization now (its plan), in one read;
   * null as `findProject` says.
   */
  async findProjectForSubmission(orgId: string, ref: string): Promise<{ project_id: string; plan: Plan } | null> {
    const byId = UUID_PATTERN.test(ref);
    const { rows } = await this.db.query<{ project_id: string; plan: Plan }>(
      `SELECT p.id AS project_id, o.plan FROM projects p JOIN orgs o ON o.id = p.org_id
        WHERE p.${byId ? 'id' : 'slug'} = $1 AND p.org_id = $2
        ORDER BY p.created_at LIMIT 2`,
      [ref, orgId],
    );
    return rows.length === 1 ? rows[0] : null;
  }

  async listProjects(orgId: string): Promise<ProjectRow[]> {
    return (await this.db.query<ProjectRow>(`SELECT * FROM projects WHERE org_id = $1 ORDER BY created_at, id`, [orgId])).rows;
  }
}
