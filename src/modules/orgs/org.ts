import { ConflictError, NotFoundError } from '../../common/errors';
import type { Plan } from '../../events/job-events';
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

export function decideRevokeKey(state: Org | null, keyId: string): OrgEvent[] {
  const org = requireOrg(state);
  const key = org.keys[keyId];
  if (key === undefined) throw new NotFoundError('key not found');
  return key.revoked ? [] : [{ type: 'OrgKeyRevoked', schemaVersion: 1, data: { keyId } }];
}

export function decideCreateProject(state: Org | null, project: { projectId: string; slug: string; name: string }): OrgEvent[] {
  const org = requireOrg(state);
  if (org.projectSlugs.includes(project.slug)) {
    throw new ConflictError(`a project with slug "${project.slug}" already exists in this organization`);
  }
  return [{ type: 'ProjectCreated', schemaVersion: 1, data: project }];
}
