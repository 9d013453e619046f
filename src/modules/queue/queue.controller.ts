import { Controller, Get, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { QueueQuery, QueueResponse } from './queue.dto';
import { QueueService } from './queue.service';

@ApiTags('queue')
@ApiBearerAuth()
@Controller('v1/queue')
export class QueueController {
  constructor(private readonly queue: QueueService) {}

  @Get()
  @Access('org', 'admin')
  @ApiOperation({
    summary: 'The pending jobs of a spec in the order the scheduler will claim them, with estimated starts',
    description:
      'Claim order: priority, then the organization with the fewest jobs in flight, then age, as if each job were claimed in ' +
      'turn; jobs held by their organization’s (or IP’s) in-flight limit come last. An organization key sees only its own jobs.',
  })
  @ApiOkResponse({ type: QueueResponse })
  @ApiBadRequestResponse({ description: 'no spec, or a bad limit or cursor (validation_failed)' })
  @ApiNotFoundResponse({ description: 'no such spec' })
  list(@Query() query: QueueQuery, @Ctx() ctx: RequestContext): Promise<QueueResponse> {
    return this.queue.list(query, ctx);
  }
}
