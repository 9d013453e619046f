import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * What the runner gateway needs: whether a canceled job's runner has acknowledged the cancel
 * (so the cancel is redelivered on reconnect until it has), and the output runners send back.
 * Output content lives outside the event rows: events keep each part's size and SHA-256, and
 * the content is stored once per digest.
 */
export class Gateway1764489600003 implements MigrationInterface {
  name = 'Gateway1764489600003';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE jobs ADD COLUMN cancel_acknowledged boolean NOT NULL DEFAULT false;
      CREATE INDEX jobs_unacknowledged_cancel_idx ON jobs (runner_id)
        WHERE status = 'canceled' AND NOT cancel_acknowledged AND runner_id IS NOT NULL;
      CREATE INDEX jobs_runner_in_flight_idx ON jobs (runner_id) WHERE status IN ('claimed', 'running');

      CREATE TABLE blobs (
        sha256  char(64) PRIMARY KEY,
        bytes   integer NOT NULL,
        content bytea NOT NULL
      );

      -- One row per part (stdout, stderr, each file) of an attempt's output.
      CREATE TABLE job_outputs (
        job_id  uuid NOT NULL,
        attempt integer NOT NULL,
        kind    text NOT NULL CHECK (kind IN ('stdout', 'stderr', 'file')),
        path    text NOT NULL DEFAULT '',
        sha256  char(64) NOT NULL REFERENCES blobs (sha256),
        PRIMARY KEY (job_id, attempt, kind, path)
      );
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      DROP TABLE job_outputs, blobs;
      DROP INDEX jobs_runner_in_flight_idx;
      DROP INDEX jobs_unacknowledged_cancel_idx;
      ALTER TABLE jobs DROP COLUMN cancel_acknowledged;
    `);
  }
}
