import { ConflictError, NotFoundError, invalidField } from '../../common/errors';
import { PLAN_PRIORITY, type Plan } from '../../events/job-events';
import type { OrgEvent } from '../../events/org-events';

/** An organization's state, folded from its stream. */
export interface Org {
  orgId: string;
  slug: string;
  name: string;
  plan: Plan;
  maxConcurrency: number | null;
  keys: Record<string, { revoked: boolean }>;
  projectSlugs: string[];
}

export const ORG_STREAM = 'org';

export function evolveOrg(state: Org | null, event: OrgEvent): Org {
  if (event.type === 'OrgCreated') {
    const { orgId, slug, name, plan, maxConcurrency } = event.data;
    return { orgId, slug, name, plan, maxConcurrency, keys: {}, projectSlugs: [] };
  }
  if (state === null) throw new Error(`${event.type} before OrgCreated`);
  switch (event.type) {
    case 'OrgUpdated':
      return { ...state, ...event.data };
    case 'OrgKeyCreated':
      return { ...state, keys: { ...state.keys, [event.data.keyId]: { revoked: false } } };
    case 'OrgKeyRevoked':
      return { ...state, keys: { ...state.keys, [event.data.keyId]: { revoked: true } } };
    case 'ProjectCreated':
      return { ...state, projectSlugs: [...state.projectSlugs, event.data.slug] };
    default: {
      const _exhaustive: never = event;
      return _exhaustive;
    }
  }
}

export function requireOrg(state: Org | null): Org {
  if (state === null) throw new NotFoundError('organization not found');
  return state;
}

/** What an update asks for: a member left out keeps its value; `maxConcurrency: null` lifts the limit. */
export interface OrgUpdate {
  plan?: Plan | null;
  maxConcurrency?: number | null;
}

/**
 * Appends only what the fold, the orgs view and the audit all read the same way: a plan that is
 * one of the plans (never null: the view keeps a plan, the fold would take the null), a limit that
 * is a whole number from 1, or null for none. Nothing that changes nothing is appended.
 */
export function decideUpdateOrg(state: Org | null, change: OrgUpdate): OrgEvent[] {
  const org = requireOrg(state);
  const data: { plan?: Plan; maxConcurrency?: number | null } = {};
  if (change.plan !== undefined) {
    if (!isPlan(change.plan)) throw invalidField('plan', `plan must be one of ${Object.keys(PLAN_PRIORITY).join(', ')}`);
    if (change.plan !== org.plan) data.plan = change.plan;
  }
  if (change.maxConcurrency !== undefined) {
    if (change.maxConcurrency !== null && !isLimit(change.maxConcurrency)) {
      throw invalidField('maxConcurrency', 'maxConcurrency must be a whole number from 1 to 2147483647, or null for no limit');
    }
    if (change.maxConcurrency !== org.maxConcurrency) data.maxConcurrency = change.maxConcurrency;
  }
  return Object.keys(data).length === 0 ? [] : [{ type: 'OrgUpdated', schemaVersion: 1, data }];
}

/** A new organization (the stream must be empty), with values its fold and view agree on. */
export function decideCreateOrg(state: Org | null, org: { orgId: string; slug: string; name: string; plan: Plan; maxConcurrency: number | null }): OrgEvent[] {
  if (state !== null) throw new ConflictError('this organization already exists');
  if (!isPlan(org.plan)) throw invalidField('plan', `plan must be one of ${Object.keys(PLAN_PRIORITY).join(', ')}`);
  if (typeof org.slug !== 'string') throw invalidField('slug', 'slug must be a string');
  if (typeof org.name !== 'string') throw invalidField('name', 'name must be a string');
  if (org.maxConcurrency !== null && !isLimit(org.maxConcurrency)) {
    throw invalidField('maxConcurrency', 'maxConcurrency must be a whole number from 1 to 2147483647, or null for no limit');
  }
  const { orgId, slug, name, plan, maxConcurrency } = org;
  return [{ type: 'OrgCreated', schemaVersion: 1, data: { orgId, slug, name, plan, maxConcurrency } }];
}

/** A key (`name` null: unnamed) for an organization that exists. */
export function decideCreateKey(state: Org | null, key: { keyId: string; name: string | null; keyHash: string }): OrgEvent[] {
  const org = requireOrg(state);
  if (Object.hasOwn(org.keys, key.keyId)) throw new ConflictError('this key already exists');
  if (key.name !== null && typeof key.name !== 'string') throw invalidField('name', 'name must be a string');
  return [{ type: 'OrgKeyCreated', schemaVersion: 1, data: { keyId: key.keyId, name: key.name, keyHash: key.keyHash } }];
}

const isPlan = (plan: unknown): plan is Plan => typeof plan === 'string' && Object.hasOwn(PLAN_PRIORITY, plan);
/** What the view's integer column holds. */
const isLimit = (limit: unknown): limit is number => Number.isSafeInteger(limit) && (limit as number) >= 1 && (limit as number) <= 2_147_483_647;

export function decideRevokeKey(state: Org | null, keyId: string): OrgEvent[] {
  const org = requireOrg(state);
  const key = org.keys[keyId];
  if (key === undefined) throw new NotFoundError('key not found');
  return key.revoked ? [] : [{ type: 'OrgKeyRevoked', schemaVersion: 1, data: { keyId } }];
}

export function decideCreateProject(state: Org | null, project: { projectId: string; slug: string; name: string }): OrgEvent[] {
  const org = requireOrg(state);
  if (typeof project.slug !== 'string') throw invalidField('slug', 'slug must be a string');
  if (typeof project.name !== 'string') throw invalidField('name', 'name must be a string');
  if (org.projectSlugs.includes(project.slug)) {
    throw new ConflictError(`a project with slug "${project.slug}" already exists in this organization`);
  }
  const { projectId, slug, name } = project;
  return [{ type: 'ProjectCreated', schemaVersion: 1, data: { projectId, slug, name } }];
}
