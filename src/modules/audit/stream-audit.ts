import type { EventEnvelope } from '../../events/envelope';
import type { LogPosition } from '../event-store/event-store';
import type { AuditViews } from './audit-views';
import { ChainVerifier } from './chain';
import type { Divergence, StreamReport } from './divergence';

/** What folding one stream and comparing it with its views found. */
export interface ContentFindings {
  status?: string | null;
  divergences: Divergence[];
  pending: Divergence[];
}

/** The audit of one kind of stream: its fold, and how the fold must show in the views. */
export interface StreamContentAudit {
  /** The stream's next event, as stored (it is decoded here; hashes are checked on the stored form). */
  push(event: EventEnvelope): void;
  /** `last`: the log position of the stream's last event (for views kept by projectors). */
  finish(views: AuditViews, last: LogPosition | null): ContentFindings;
}

export type ContentAuditFactory = (streamId: string) => StreamContentAudit;

/** A stream type this audit does not know: nothing to fold it with. */
class UnknownStreamAudit implements StreamContentAudit {
  constructor(private readonly streamType: string) {}
  push(): void {}
  finish(): ContentFindings {
    return { divergences: [{ reason: `unknown stream type "${this.streamType}": no fold to check it with` }], pending: [] };
  }
}

/**
 * One stream's audit, fed its events in stream order: the hash chain, every event's stream type,
 * and the stream type's own content audit.
 */
export class StreamAudit {
  private readonly chain = new ChainVerifier();
  private readonly content: StreamContentAudit;
  private readonly mixed: Divergence[] = [];
  private count = 0;
  private last: LogPosition | null = null;

  constructor(
    readonly streamId: string,
    readonly streamType: string,
    factories: Readonly<Record<string, ContentAuditFactory>>,
  ) {
    const factory = Object.hasOwn(factories, streamType) ? factories[streamType] : undefined;
    this.content = factory ? factory(streamId) : new UnknownStreamAudit(streamType);
  }

  /** `transactionId`: the xid8 of the event's transaction, where the caller knows it. */
  push(event: EventEnvelope, transactionId?: string): void {
    this.count++;
    this.chain.push(event);
    if (event.streamType !== this.streamType) {
      this.mixed.push({
        position: event.position,
        field: 'streamType',
        expected: this.streamType,
        actual: event.streamType,
        reason: 'an event of another stream type in this stream',
      });
    }
    this.content.push(event);
    if (transactionId !== undefined) this.last = { transactionId, globalPosition: event.globalPosition };
  }

  /** Sets the log position of the last event when the events were read without it. */
  lastAt(position: LogPosition | null): void {
    this.last = position;
  }

  get eventCount(): number {
    return this.count;
  }

  finish(views: AuditViews): StreamReport {
    this.chain.end(this.streamType, views.heads.get(this.streamId) ?? null);
    const content = this.content.finish(views, this.last);
    return {
      streamId: this.streamId,
      streamType: this.streamType,
      eventCount: this.count,
      chainValid: this.chain.valid,
      ...('status' in content ? { status: content.status } : {}),
      divergences: [...this.chain.breaks, ...this.mixed, ...content.divergences].sort(byPosition),
      pending: content.pending,
    };
  }
}

/** Event divergences in stream order first, then those about the stream as a whole. */
function byPosition(a: Divergence, b: Divergence): number {
  return (a.position ?? Number.MAX_SAFE_INTEGER) - (b.position ?? Number.MAX_SAFE_INTEGER);
}
