import type { Plan } from './job-events';

/** An organization was created (operator). */
export interface OrgCreated {
  type: 'OrgCreated';
  schemaVersion: 1;
  data: { orgId: string; slug: string; name: string; plan: Plan; maxConcurrency: number | null };
}

/** An organization's plan or concurrency limit changed (operator). */
export interface OrgUpdated {
  type: 'OrgUpdated';
  schemaVersion: 1;
  data: { plan?: Plan; maxConcurrency?: number | null };
}

/** An API key was issued; only its SHA-256 is kept. */
export interface OrgKeyCreated {
  type: 'OrgKeyCreated';
  schemaVersion: 1;
  data: { keyId: string; name: string | null; keyHash: string };
}

/** An API key was revoked and stops working at once. */
export interface OrgKeyRevoked {
  type: 'OrgKeyRevoked';
  schemaVersion: 1;
  data: { keyId: string };
}

/** A project was created in the organization. */
export interface ProjectCreated {
  type: 'ProjectCreated';
  schemaVersion: 1;
  data: { projectId: string; slug: string; name: string };
}

export type OrgEvent = OrgCreated | OrgUpdated | OrgKeyCreated | OrgKeyRevoked | ProjectCreated;
