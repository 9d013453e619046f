import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Pending jobs by spec and organization, in each organization's claim order. A claim looks at the
 * organizations with jobs pending on its runner's specs (a skip scan over `org_id`) and at the
 * first few jobs of each, so it costs in proportion to the organizations waiting, not to the jobs;
 * the index before it (spec, priority, created_at, id) made every claim read and sort all of a
 * spec's pending jobs. It serves the queue view's scan of a spec's pending jobs as that one did.
 */
export class PendingByOrg1764489600007 implements MigrationInterface {
  name = 'PendingByOrg1764489600007';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE INDEX jobs_pending_org_idx ON jobs (spec_id, org_id, priority DESC, created_at, id) WHERE status = 'pending';
      DROP INDEX jobs_pending_idx;
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE INDEX jobs_pending_idx ON jobs (spec_id, priority DESC, created_at, id) WHERE status = 'pending';
      DROP INDEX jobs_pending_org_idx;
    `);
  }
}
