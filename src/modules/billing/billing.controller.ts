import { Controller, Get, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { UsageQuery, UsageResponse } from './billing.dto';
import { BillingService } from './billing.service';

@ApiTags('billing')
@ApiBearerAuth()
@Controller('v1/orgs')
export class BillingController {
  constructor(private readonly billing: BillingService) {}

  @Get(':org/usage')
  @Access('org', 'admin')
  @ApiOperation({
    summary: 'Billed minutes of the jobs that finished in [from, to), in all and per project',
    description: 'Kept by the billing projector: trails the log by its lag (runway_log_follower_lag_seconds{follower="projection:billing"}).',
  })
  @ApiOkResponse({ type: UsageResponse })
  @ApiNotFoundResponse({ description: 'no such organization, or another organization than the key’s' })
  usage(@Param('org') org: string, @Query() query: UsageQuery, @Ctx() ctx: RequestContext): Promise<UsageResponse> {
    return this.billing.usage(org, query, ctx);
  }
}
