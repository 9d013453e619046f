import { RUNNER_EVENTS } from '../../events/decoders';
import type { EventEnvelope } from '../../events/envelope';
import { type Runner, evolveRunner } from '../runners/runner';
import type { AuditViews } from './audit-views';
import { type Divergence, ViewComparison } from './divergence';
import type { ContentFindings, StreamContentAudit } from './stream-audit';

/**
 * A runner stream: folded with `evolveRunner`, then compared with the runners and runner_specs
 * views. The token's hash is not part of the fold (it only matters to authentication), so the
 * latest one is kept here: a view holding another hash would let another token in.
 */
export class RunnerStreamAudit implements StreamContentAudit {
  private state: Runner | null = null;
  private tokenHash: string | null = null;
  private createdAt: string | null = null;
  private readonly divergences: Divergence[] = [];
  private broken = false;

  constructor(private readonly runnerId: string) {}

  push(stored: EventEnvelope): void {
    if (this.broken) return;
    const { event, problems } = RUNNER_EVENTS.read(stored);
    if (!RUNNER_EVENTS.has(stored.type)) {
      this.fail({ position: stored.position, ...problems[0] });
      return;
    }
    // A member missing or of the wrong kind is named; the event is folded either way, as the job audit does.
    this.divergences.push(...problems.map((problem) => ({ position: stored.position, ...problem })));
    try {
      this.state = evolveRunner(this.state, event);
    } catch (error) {
      this.fail({ position: stored.position, reason: `the runner's fold refuses ${event.type}: ${(error as Error).message}` });
      return;
    }
    if (event.type === 'RunnerRegistered') {
      this.createdAt = stored.occurredAt;
      this.tokenHash = event.data.tokenHash;
      if (event.data.runnerId !== this.runnerId) {
        this.divergences.push({ position: stored.position, field: 'data.runnerId', expected: this.runnerId, actual: event.data.runnerId, reason: 'the runner names another stream' });
      }
    } else if (event.type === 'RunnerTokenRotated') {
      this.tokenHash = event.data.tokenHash;
    }
  }

  finish(views: AuditViews): ContentFindings {
    const runner = this.state;
    if (runner === null || this.broken) return { divergences: this.divergences, pending: [] };
    const check = new ViewComparison('runners');
    const row = views.runners.get(this.runnerId);
    if (row === undefined) check.missing('the runner has no row in the runners view');
    else {
      check
        .value('slug', runner.slug, row.slug)
        .value('name', runner.name, row.name)
        .value('archived', runner.archived, row.archived)
        .value('token_hash', this.tokenHash, row.token_hash)
        .time('created_at', this.createdAt, row.created_at)
        .set('specs', runner.specIds, row.spec_ids);
    }
    return { divergences: [...this.divergences, ...check.divergences], pending: [] };
  }

  private fail(divergence: Divergence): void {
    this.divergences.push(divergence);
    this.broken = true;
  }
}
