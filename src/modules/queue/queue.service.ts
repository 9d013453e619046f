import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { Coalescer } from '../../common/coalescer';
import { NotFoundError, ValidationError } from '../../common/errors';
import type { RequestContext } from '../http/request-context';
import { SpecsService } from '../specs/specs';
import { type QueueQuery, type QueueResponse, mapQueueInfo, mapQueueItem } from './queue.dto';
import { type QueuedJob, QueueRepository } from './queue.repository';
import { orderQueue } from './queue-order';
import { type QueueInfo, type QueueItem, describeQueue } from './queue-view';

const DEFAULT_LIMIT = 100;

/** The queues of the specs: claim order, estimated starts and what each job waits for. */
@Injectable()
export class QueueService {
  /**
   * A spec's queue is read whole (every pending job of the spec) and ordered here, which costs in
   * proportion to the queue's length. Requests that want the same spec's queue at the same time
   * (submissions answering with their job's place, a busy API) share one computation, started
   * after each of them asked: what a request committed before it asks is in its answer.
   */
  private readonly queues = new Coalescer<string, readonly QueueItem<QueuedJob>[]>((specId) => this.compute(specId));

  constructor(
    private readonly repository: QueueRepository,
    private readonly specs: SpecsService,
    private readonly clock: Clock,
  ) {}

  /** The spec's pending jobs in the order the scheduler will claim them (shared between callers: read only). */
  ofSpec(specId: string): Promise<readonly QueueItem<QueuedJob>[]> {
    return this.queues.get(specId);
  }

  private async compute(specId: string): Promise<QueueItem<QueuedJob>[]> {
    const now = this.clock.now();
    const { jobs, inFlight, load } = await this.repository.snapshot(specId, now);
    return describeQueue(orderQueue(jobs, inFlight), load, now);
  }

  /** Where a pending job stands in its spec's queue; null once it is no longer pending. */
  async forJob(job: { id: string; spec_id: string }): Promise<QueueInfo | null> {
    const item = (await this.ofSpec(job.spec_id)).find((i) => i.job.id === job.id);
    return item === undefined ? null : mapQueueInfo(item);
  }

  /**
   * `GET /v1/queue`: the operator sees every job; an org key sees its own jobs only, whose
   * `position` and `ahead` count the others' without naming them.
   */
  async list(query: QueueQuery, ctx: RequestContext): Promise<QueueResponse> {
    const spec = await this.specs.find(query.spec);
    if (spec === null) throw new NotFoundError(`spec "${query.spec}" not found`);
    const after = query.cursor === undefined ? 0 : decodeCursor(query.cursor);
    const limit = query.limit ?? DEFAULT_LIMIT;
    const queue = await this.ofSpec(spec.id);
    const { principal } = ctx;
    const visible = principal.kind === 'admin' ? queue : queue.filter((i) => principal.kind === 'org' && i.job.orgId === principal.orgId);
    const rest = visible.filter((i) => i.position > after);
    const page = rest.slice(0, limit);
    return {
      spec: spec.slug,
      total: queue.length,
      items: page.map(mapQueueItem),
      nextCursor: rest.length > limit ? encodeCursor(page[page.length - 1].position) : null,
    };
  }
}

// A cursor is the position a page ended at: the queue moves between pages, so a later page
// starts after that place in the queue as it is then.
function encodeCursor(position: number): string {
  return Buffer.from(`after:${position}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): number {
  const match = /^after:([1-9][0-9]{0,8})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (match === null) throw new ValidationError('cursor is not one this server gave out', [{ field: 'cursor', message: 'invalid' }]);
  return Number(match[1]);
}
