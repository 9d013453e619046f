import { Controller, Get, Param } from '@nestjs/common';
import { ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { JobAuditDto, mapJobAudit } from './audit.dto';
import { AuditService } from './audit.service';

@ApiTags('jobs')
@ApiBearerAuth()
@Controller('v1')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get('jobs/:job/audit')
  @Access('org', 'admin')
  @ApiOkResponse({ type: JobAuditDto, description: 'the events replayed through the job machine, the hash chain checked, the views compared' })
  @ApiNotFoundResponse({ description: 'no such job, or one of another organization' })
  async get(@Param('job') id: string, @Ctx() ctx: RequestContext): Promise<JobAuditDto> {
    return mapJobAudit(await this.audit.auditJobFor(id, ctx.principal));
  }
}
