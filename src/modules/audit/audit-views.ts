import type { JobState } from '../../machines/job.machine';
import type { LogPosition } from '../event-store/event-store';
import type { StreamHead } from './chain';

/** A row of the jobs view, as the audit reads it. */
export interface JobViewRow {
  id: string;
  org_id: string;
  project_id: string;
  spec_id: string;
  spec: string;
  plan: string;
  priority: number;
  status: string;
  attempt: number;
  max_attempts: number;
  runner_id: string | null;
  timeout: number;
  source_ip: string | null;
  created_at: Date;
  claimed_at: Date | null;
  started_at: Date | null;
  finished_at: Date | null;
  exit_code: number | null;
  failure: string | null;
  version: number;
  cancel_acknowledged: boolean;
  /** The folded job the jobs projection evolves further; null on rows older than that column. */
  state: JobState | null;
}

export interface BillingViewRow {
  job_id: string;
  org_id: string;
  project_id: string;
  started_at: Date;
  finished_at: Date | null;
  minutes: number | null;
}

export interface OrgViewRow {
  id: string;
  slug: string;
  name: string;
  plan: string;
  max_concurrency: number | null;
  created_at: Date;
}

export interface OrgKeyViewRow {
  id: string;
  org_id: string;
  name: string | null;
  key_hash: string;
  revoked_at: Date | null;
}

export interface ProjectViewRow {
  id: string;
  org_id: string;
  slug: string;
  name: string;
}

export interface RunnerViewRow {
  id: string;
  slug: string;
  name: string;
  token_hash: string;
  archived: boolean;
  created_at: Date;
  /** Spec ids, from runner_specs. */
  spec_ids: string[];
}

export interface SpecViewRow {
  id: string;
  slug: string;
  name: string;
  architecture: string;
  cpu: number;
  /** bigint columns arrive as strings. */
  memory: string;
  disk: string;
  network: boolean;
  created_at: Date;
}

/**
 * The rows derived from some streams, read in the same snapshot as the streams' last events, so
 * that a difference is a divergence and not a write that landed between two reads.
 */
export interface AuditViews {
  heads: Map<string, StreamHead>;
  jobs: Map<string, JobViewRow>;
  billing: Map<string, BillingViewRow>;
  /** Where the billing projector has got to in the log (null: it has not started). */
  billingCheckpoint: LogPosition | null;
  orgs: Map<string, OrgViewRow>;
  orgKeys: Map<string, OrgKeyViewRow[]>;
  projects: Map<string, ProjectViewRow[]>;
  runners: Map<string, RunnerViewRow>;
  specs: Map<string, SpecViewRow>;
}
