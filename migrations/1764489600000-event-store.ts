import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The event log. `global_position` comes from a sequence and `transaction_id` is the writing
 * transaction's xid8: readers of the whole log go in (transaction_id, global_position) order and
 * only take rows older than every transaction still running, so a slow writer holding a lower
 * position is never skipped. `streams` holds each stream's version and last hash; appends lock
 * that row, which makes writers of one stream take turns and keeps versions gapless.
 */
export class EventStore1764489600000 implements MigrationInterface {
  name = 'EventStore1764489600000';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE SEQUENCE events_global_position_seq AS bigint;

      CREATE TABLE streams (
        stream_id   uuid PRIMARY KEY,
        stream_type text NOT NULL,
        version     integer NOT NULL CHECK (version >= 0),
        last_hash   char(64) NOT NULL
      );

      CREATE TABLE events (
        global_position bigint PRIMARY KEY,
        transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
        id              uuid NOT NULL,
        stream_id       uuid NOT NULL,
        stream_type     text NOT NULL,
        stream_position integer NOT NULL CHECK (stream_position >= 1),
        type            text NOT NULL,
        schema_version  integer NOT NULL,
        data            jsonb NOT NULL,
        metadata        jsonb NOT NULL,
        occurred_at     timestamptz NOT NULL,
        hash            char(64) NOT NULL,
        prev_hash       char(64) NOT NULL,
        CONSTRAINT events_id_key UNIQUE (id),
        CONSTRAINT events_stream_position_key UNIQUE (stream_id, stream_position)
      );
      CREATE INDEX events_log_order_idx ON events (transaction_id, global_position);
      CREATE INDEX events_stream_type_idx ON events (stream_type, global_position);

      -- The log is append-only. Runway never updates or deletes an event; this refuses it from
      -- anyone else too (a superuser can still disable it, which is what the hash chain is for).
      CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
          USING ERRCODE = 'insufficient_privilege';
      END $$;
      CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
      CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      DROP TABLE events;
      DROP FUNCTION events_refuse_change();
      DROP TABLE streams;
      DROP SEQUENCE events_global_position_seq;
    `);
  }
}
