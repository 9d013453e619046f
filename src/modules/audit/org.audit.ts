import { ORG_EVENTS } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import { type Org, evolveOrg } from '../orgs/org';
import type { AuditViews } from './audit-views';
import { type Divergence, ViewComparison } from './divergence';
import type { ContentFindings, StreamContentAudit } from './stream-audit';

/**
 * An organization stream: folded with `evolveOrg`, then compared with the orgs, org_keys and
 * projects views. Key hashes, key names and project names are not part of the fold, so they are
 * kept here from the events that carry them.
 */
export class OrgStreamAudit implements StreamContentAudit {
  private state: Org | null = null;
  private createdAt: string | null = null;
  private readonly divergences: Divergence[] = [];
  private broken = false;
  private readonly keys = new Map<string, { name: string | null; keyHash: string }>();
  private readonly projects = new Map<string, { slug: string; name: string }>();

  constructor(private readonly orgId: string) {}

  push(stored: EventEnvelope): void {
    if (this.broken) return;
    const { event, problems } = ORG_EVENTS.read(stored);
    if (!ORG_EVENTS.has(stored.type)) {
      this.fail({ position: stored.position, ...problems[0] });
      return;
    }
    // A member missing or of the wrong kind is named; the event is folded either way, as the job audit does.
    this.divergences.push(...problems.map((problem) => ({ position: stored.position, ...problem })));
    try {
      this.state = evolveOrg(this.state, event);
    } catch (error) {
      this.fail({ position: stored.position, reason: `the organization's fold refuses ${event.type}: ${(error as Error).message}` });
      return;
    }
    switch (event.type) {
      case 'OrgCreated':
        this.createdAt = stored.occurredAt;
        if (event.data.orgId !== this.orgId) {
          this.divergences.push({ position: stored.position, field: 'data.orgId', expected: this.orgId, actual: event.data.orgId, reason: 'the organization names another stream' });
        }
        break;
      case 'OrgKeyCreated':
        this.keys.set(event.data.keyId, { name: event.data.name, keyHash: event.data.keyHash });
        break;
      case 'ProjectCreated':
        this.projects.set(event.data.projectId, { slug: event.data.slug, name: event.data.name });
        break;
      default:
        break;
    }
  }

  finish(views: AuditViews): ContentFindings {
    const org = this.state;
    if (org === null || this.broken) return { divergences: this.divergences, pending: [] };
    const check = new ViewComparison('orgs');
    const row = views.orgs.get(this.orgId);
    if (row === undefined) check.missing('the organization has no row in the orgs view');
    else {
      check
        .value('slug', org.slug, row.slug)
        .value('name', org.name, row.name)
        .value('plan', org.plan, row.plan)
        .value('max_concurrency', org.maxConcurrency, row.max_concurrency)
        .time('created_at', this.createdAt, row.created_at);
    }
    const keys = new ViewComparison('org_keys');
    const keyRows = new Map((views.orgKeys.get(this.orgId) ?? []).map((key) => [key.id, key]));
    for (const [keyId, { revoked }] of Object.entries(org.keys)) {
      const keyRow = keyRows.get(keyId);
      const created = this.keys.get(keyId);
      if (keyRow === undefined) {
        keys.missing(`key ${keyId} has no row in the org_keys view`, `org_keys[${keyId}]`);
        continue;
      }
      keys
        .value(`[${keyId}].revoked`, revoked, keyRow.revoked_at !== null)
        .value(`[${keyId}].key_hash`, created?.keyHash ?? null, keyRow.key_hash)
        .value(`[${keyId}].name`, created?.name ?? null, keyRow.name);
    }
    for (const keyId of keyRows.keys()) {
      if (!Object.hasOwn(org.keys, keyId)) keys.missing(`key ${keyId} is in the org_keys view but was never created`, `org_keys[${keyId}]`);
    }
    const projects = new ViewComparison('projects');
    const projectRows = new Map((views.projects.get(this.orgId) ?? []).map((project) => [project.id, project]));
    for (const [projectId, project] of this.projects) {
      const projectRow = projectRows.get(projectId);
      if (projectRow === undefined) projects.missing(`project ${projectId} has no row in the projects view`, `projects[${projectId}]`);
      else projects.value(`[${projectId}].slug`, project.slug, projectRow.slug).value(`[${projectId}].name`, project.name, projectRow.name);
    }
    for (const projectId of projectRows.keys()) {
      if (!this.projects.has(projectId)) projects.missing(`project ${projectId} is in the projects view but was never created`, `projects[${projectId}]`);
    }
    return { divergences: [...this.divergences, ...check.divergences, ...keys.divergences, ...projects.divergences], pending: [] };
  }

  private fail(divergence: Divergence): void {
    this.divergences.push(divergence);
    this.broken = true;
  }
}
