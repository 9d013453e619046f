import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Views for people, kept by projectors that follow the log (each with a checkpoint), and the
 * folded state of each job, so the jobs view can be rebuilt event by event. Rows of `jobs` from
 * before this migration have no state; the projection folds their stream when it needs one.
 */
export class Projections1764489600004 implements MigrationInterface {
  name = 'Projections1764489600004';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE jobs ADD COLUMN state jsonb;

      -- Where each runner is: connected or not, where, what it last said of its machine.
      CREATE TABLE runner_status (
        runner_id     uuid PRIMARY KEY,
        connected     boolean NOT NULL DEFAULT false,
        connection_id uuid,
        gateway       text,
        connected_at  timestamptz,
        last_seen_at  timestamptz,
        fingerprint   jsonb
      );

      -- Billing minutes: one row per job that ran, ceil((finished - started) / 60 s).
      CREATE TABLE job_billing (
        job_id      uuid PRIMARY KEY,
        org_id      uuid NOT NULL,
        project_id  uuid NOT NULL,
        started_at  timestamptz NOT NULL,
        finished_at timestamptz,
        minutes     integer
      );
      CREATE INDEX job_billing_org_finished_idx ON job_billing (org_id, finished_at);
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      DROP TABLE job_billing, runner_status;
      ALTER TABLE jobs DROP COLUMN state;
    `);
  }
}
