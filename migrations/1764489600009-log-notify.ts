import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Every statement that appends to the log notifies `runway_log` (PostgreSQL delivers it at
 * commit, to the listeners of this database only, once per transaction however many statements
 * sent it), so the log's readers in every process (the relay, the projectors, the events feed)
 * are woken by a commit instead of polling for one. The payload is empty: a reader reads the log
 * from its own position, whatever woke it.
 */
export class LogNotify1764489600009 implements MigrationInterface {
  name = 'LogNotify1764489600009';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('runway_log', '');
        RETURN NULL;
      END $$;
      CREATE TRIGGER events_notify AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      DROP TRIGGER events_notify ON events;
      DROP FUNCTION events_notify();
    `);
  }
}
