import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { NotFoundError } from '../../common/errors';
import { canReadOrg } from '../auth/principal';
import type { RequestContext } from '../http/request-context';
import { OrgsRepository } from '../orgs/orgs.repository';
import { type UsageQuery, type UsageResponse, mapUsage } from './billing.dto';
import { BillingRepository } from './billing.repository';
import { resolveUsageRange } from './usage-range';

/**
 * Billing minutes (docs/protocol.md, "The job lifecycle"): a job that ran is billed
 * ceil((finishedAt - startedAt) / 60 s), counted in the range its job finished in.
 *
 * Read from the billing view, which a projector keeps from the log: an answer trails the latest
 * events by that projector's lag (`runway_log_follower_lag_*{follower="projection:billing"}` in
 * /metrics), usually well under a second. A job that finished just now may not be counted yet.
 */
@Injectable()
export class BillingService {
  constructor(
    private readonly billing: BillingRepository,
    private readonly orgs: OrgsRepository,
    private readonly clock: Clock,
  ) {}

  async usage(orgRef: string, query: UsageQuery, ctx: RequestContext): Promise<UsageResponse> {
    // The org first: another org's key learns nothing, not even whether its range was valid.
    const org = await this.orgs.findOrg(orgRef);
    if (org === null || !canReadOrg(ctx.principal, org.id)) throw new NotFoundError('organization not found');
    const { from, to } = resolveUsageRange(query, this.clock.now());
    return mapUsage(org.id, from, to, await this.billing.usageByProject(org.id, from, to));
  }
}
