import { SPEC_EVENTS } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import type { SpecCreated } from '../../events/spec-events';
import type { AuditViews } from './audit-views';
import { type Divergence, ViewComparison } from './divergence';
import type { ContentFindings, StreamContentAudit } from './stream-audit';

/** A spec stream: one SpecCreated (specs never change), compared with the specs view. */
export class SpecStreamAudit implements StreamContentAudit {
  private created: { data: SpecCreated['data']; occurredAt: string } | null = null;
  private readonly divergences: Divergence[] = [];

  constructor(private readonly specId: string) {}

  push(stored: EventEnvelope): void {
    const { event, problems } = SPEC_EVENTS.read(stored);
    if (!SPEC_EVENTS.has(stored.type) || problems.some((problem) => problem.field === 'data')) {
      // Not a spec event, or no data to read a spec from.
      this.divergences.push({ position: stored.position, ...problems[0] });
    } else if (this.created !== null) {
      this.divergences.push({ position: stored.position, field: 'type', actual: event.type, reason: 'a spec is created once' });
    } else {
      // A member missing or of the wrong kind is named, and the view compared with what is there.
      this.divergences.push(...problems.map((problem) => ({ position: stored.position, ...problem })));
      this.created = { data: event.data, occurredAt: stored.occurredAt };
      if (this.created.data.specId !== this.specId) {
        this.divergences.push({ position: stored.position, field: 'data.specId', expected: this.specId, actual: this.created.data.specId, reason: 'the spec names another stream' });
      }
    }
  }

  finish(views: AuditViews): ContentFindings {
    if (this.created === null) return { divergences: [...this.divergences, { reason: 'the spec stream has no SpecCreated' }], pending: [] };
    const { data, occurredAt } = this.created;
    const check = new ViewComparison('specs');
    const row = views.specs.get(this.specId);
    if (row === undefined) check.missing('the spec has no row in the specs view');
    else {
      check
        .value('slug', data.slug, row.slug)
        .value('name', data.name, row.name)
        .value('architecture', data.architecture, row.architecture)
        .value('cpu', data.cpu, row.cpu)
        .value('memory', data.memory, Number(row.memory))
        .value('disk', data.disk, Number(row.disk))
        .value('network', data.network, row.network)
        .time('created_at', occurredAt, row.created_at);
    }
    return { divergences: [...this.divergences, ...check.divergences], pending: [] };
  }
}
