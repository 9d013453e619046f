import { Body, Controller, Get, Headers, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiHeader, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { ListJobsQuery, SubmitJobBatchDto, SubmitJobDto, mapJob } from './jobs.dto';
import { JobsService } from './jobs.service';

@ApiTags('jobs')
@ApiBearerAuth()
@Controller('v1')
export class JobsController {
  constructor(private readonly jobs: JobsService) {}

  @Post('projects/:project/jobs')
  @Access('org')
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'same key and body within 24 h: the first job (200)' })
  async submit(
    @Param('project') project: string,
    @Body() dto: SubmitJobDto,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) response: Response,
  ) {
    const { job, created } = await this.jobs.submit(project, dto, idempotencyKey, ctx);
    response.status(created ? 201 : 200);
    // No `queue`: a job's place costs the whole queue of its spec; GET /v1/jobs/{job} has it.
    return mapJob(job);
  }

  @Post('projects/:project/job-batches')
  @Access('org')
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'same key and body within 24 h: the jobs the first request made (200)' })
  async submitBatch(
    @Param('project') project: string,
    @Body() dto: SubmitJobBatchDto,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Ctx() ctx: RequestContext,
    @Res({ passthrough: true }) response: Response,
  ) {
    const { jobs, created } = await this.jobs.submitBatch(project, dto, idempotencyKey, ctx);
    response.status(created ? 201 : 200);
    return { items: jobs.map((job) => mapJob(job)) };
  }

  @Get('projects/:project/jobs')
  @Access('org', 'admin')
  async list(@Param('project') project: string, @Query() query: ListJobsQuery, @Ctx() ctx: RequestContext) {
    const { items, nextCursor } = await this.jobs.list(project, query, ctx);
    return { items: items.map((job) => mapJob(job)), nextCursor };
  }

  @Get('jobs/:job')
  @Access('org', 'admin')
  async get(@Param('job') id: string, @Ctx() ctx: RequestContext) {
    const job = await this.jobs.get(id, ctx);
    return mapJob(job, await this.jobs.queue(job));
  }

  @Post('jobs/:job/cancel')
  @Access('org', 'admin')
  @HttpCode(202)
  async cancel(@Param('job') id: string, @Ctx() ctx: RequestContext) {
    return mapJob(await this.jobs.cancel(id, ctx));
  }

  @Get('jobs/:job/output')
  @Access('org', 'admin')
  output(@Param('job') id: string, @Ctx() ctx: RequestContext) {
    return this.jobs.output(id, ctx);
  }

  @Get('jobs/:job/events')
  @Access('org', 'admin')
  async events(@Param('job') id: string, @Ctx() ctx: RequestContext) {
    return { items: await this.jobs.events(id, ctx) };
  }
}
