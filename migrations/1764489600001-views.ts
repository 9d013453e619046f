import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Views kept inline with the log: written in the same transaction as the events they derive
 * from, because requests read them at once (credentials, slugs, the queue that claiming reads).
 * Every row here can be rebuilt from the events.
 */
export class Views1764489600001 implements MigrationInterface {
  name = 'Views1764489600001';

  async up(db: QueryRunner): Promise<void> {
    await db.query(`
      CREATE TABLE orgs (
        id              uuid PRIMARY KEY,
        slug            text NOT NULL,
        name            text NOT NULL,
        plan            text NOT NULL CHECK (plan IN ('enterprise', 'team', 'free', 'unclaimed')),
        max_concurrency integer CHECK (max_concurrency > 0),
        created_at      timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        CONSTRAINT orgs_slug_key UNIQUE (slug)
      );

      CREATE TABLE org_keys (
        id         uuid PRIMARY KEY,
        org_id     uuid NOT NULL REFERENCES orgs (id),
        name       text,
        key_hash   char(64) NOT NULL,
        created_at timestamptz NOT NULL,
        revoked_at timestamptz,
        CONSTRAINT org_keys_key_hash_key UNIQUE (key_hash)
      );
      CREATE INDEX org_keys_org_idx ON org_keys (org_id);

      CREATE TABLE projects (
        id         uuid PRIMARY KEY,
        org_id     uuid NOT NULL REFERENCES orgs (id),
        slug       text NOT NULL,
        name       text NOT NULL,
        created_at timestamptz NOT NULL,
        CONSTRAINT projects_org_slug_key UNIQUE (org_id, slug)
      );

      CREATE TABLE specs (
        id           uuid PRIMARY KEY,
        slug         text NOT NULL,
        name         text NOT NULL,
        architecture text NOT NULL CHECK (architecture IN ('x86_64', 'aarch64', 'riscv64')),
        cpu          integer NOT NULL,
        memory       bigint NOT NULL,
        disk         bigint NOT NULL,
        network      boolean NOT NULL,
        created_at   timestamptz NOT NULL,
        CONSTRAINT specs_slug_key UNIQUE (slug)
      );

      CREATE TABLE runners (
        id           uuid PRIMARY KEY,
        slug         text NOT NULL,
        name         text NOT NULL,
        token_hash   char(64) NOT NULL,
        archived     boolean NOT NULL DEFAULT false,
        created_at   timestamptz NOT NULL,
        updated_at   timestamptz NOT NULL,
        CONSTRAINT runners_slug_key UNIQUE (slug),
        CONSTRAINT runners_token_hash_key UNIQUE (token_hash)
      );

      CREATE TABLE runner_specs (
        runner_id uuid NOT NULL REFERENCES runners (id) ON DELETE CASCADE,
        spec_id   uuid NOT NULL REFERENCES specs (id),
        PRIMARY KEY (runner_id, spec_id)
      );
      CREATE INDEX runner_specs_spec_idx ON runner_specs (spec_id);

      CREATE TABLE jobs (
        id            uuid PRIMARY KEY,
        org_id        uuid NOT NULL REFERENCES orgs (id),
        project_id    uuid NOT NULL REFERENCES projects (id),
        spec_id       uuid NOT NULL REFERENCES specs (id),
        spec          text NOT NULL,
        plan          text NOT NULL,
        priority      integer NOT NULL,
        status        text NOT NULL CHECK (status IN ('pending', 'claimed', 'running', 'completed', 'failed', 'canceled')),
        attempt       integer NOT NULL,
        max_attempts  integer NOT NULL,
        runner_id     uuid,
        timeout       integer NOT NULL,
        source_ip     text,
        created_at    timestamptz NOT NULL,
        claimed_at    timestamptz,
        started_at    timestamptz,
        finished_at   timestamptz,
        exit_code     integer,
        failure       text,
        version       integer NOT NULL
      );
      -- The queue in claim order: tier first, then age (fair share between orgs is computed on top).
      CREATE INDEX jobs_pending_idx ON jobs (spec_id, priority DESC, created_at, id) WHERE status = 'pending';
      CREATE INDEX jobs_in_flight_org_idx ON jobs (org_id) WHERE status IN ('claimed', 'running');
      CREATE INDEX jobs_project_idx ON jobs (project_id, id DESC);
      CREATE INDEX jobs_project_status_idx ON jobs (project_id, status, id DESC);

      -- Idempotency-Key of job submissions, 24 h. Derived from JobSubmitted.
      CREATE TABLE job_idempotency_keys (
        org_id       uuid NOT NULL,
        key          text NOT NULL,
        request_hash char(64) NOT NULL,
        job_id       uuid NOT NULL,
        created_at   timestamptz NOT NULL,
        PRIMARY KEY (org_id, key)
      );
    `);
  }

  async down(db: QueryRunner): Promise<void> {
    await db.query(`
      DROP TABLE job_idempotency_keys, jobs, runner_specs, runners, specs, projects, org_keys, orgs;
    `);
  }
}
