import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * An Idempotency-Key may cover a batch of jobs (POST /v1/projects/{project}/job-batches): the key's
 * row lists every job its request made, in the order given (`job_ids`; `job_id` is the first).
 * Nullable, so instances of the release before, which insert keys without it, keep working while
 * a deployment rolls: a key without `job_ids` is read as its one `job_id`.
 */
export class JobBatches1764489600006 implements MigrationInterface {
  name = 'JobBatches1764489600006';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      ALTER TABLE job_idempotency_keys ADD COLUMN job_ids uuid[];
      UPDATE job_idempotency_keys SET job_ids = ARRAY[job_id];
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`ALTER TABLE job_idempotency_keys DROP COLUMN job_ids`);
  }
}
