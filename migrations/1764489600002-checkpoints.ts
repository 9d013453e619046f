import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Where each reader of the whole log (the JetStream relay, later the projectors) has got to: the
 * log position of the last event it has handled, in the log order (transaction_id,
 * global_position) that `EventStore.readAll` resumes after.
 */
export class Checkpoints1764489600002 implements MigrationInterface {
  name = 'Checkpoints1764489600002';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE TABLE checkpoints (
        name            text PRIMARY KEY,
        transaction_id  xid8 NOT NULL,
        global_position bigint NOT NULL,
        updated_at      timestamptz NOT NULL
      );
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`DROP TABLE checkpoints;`);
  }
}
