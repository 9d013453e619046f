import type { MigrationInterface, QueryRunner } from 'typeorm';

/** The recent runs of a spec, which the queue's ETA averages, without scanning all its jobs. */
export class QueueHistory1764489600005 implements MigrationInterface {
  name = 'QueueHistory1764489600005';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE INDEX jobs_spec_finished_runs_idx ON jobs (spec_id, finished_at DESC)
        WHERE started_at IS NOT NULL AND finished_at IS NOT NULL;
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`DROP INDEX jobs_spec_finished_runs_idx`);
  }
}
