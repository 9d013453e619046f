import { Body, Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsInt, Max, Min } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import type { Request, Response } from 'express';
import { Clock } from '../../common/clock';
import { Access } from '../auth/access.decorator';
import { runnerOf } from '../auth/principal';
import { Ctx, type RequestContext } from '../http/request-context';
import { type JobPayload } from './protocol';
import { RunnerGateway } from './runner-gateway';
import { RunnerJobs, jobPayload } from './runner-jobs';

export class ClaimDto {
  @ApiProperty({ description: 'seconds to wait for a job before answering 204', minimum: 0, maximum: 120, default: 30, required: false })
  @IsOmittable()
  @IsInt()
  @Min(0)
  @Max(120)
  pollTimeout?: number;
}

/** For runners without a socket: claim a job, waiting up to `pollTimeout` seconds for one. */
@ApiTags('runner')
@ApiBearerAuth()
@Controller('v1/runner')
export class RunnerClaimController {
  constructor(
    private readonly gateway: RunnerGateway,
    private readonly runnerJobs: RunnerJobs,
    private readonly clock: Clock,
  ) {}

  @Post('claim')
  @Access('runner')
  @HttpCode(200)
  async claim(
    @Body() dto: ClaimDto,
    @Ctx() ctx: RequestContext,
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
  ): Promise<JobPayload | undefined> {
    const runnerId = runnerOf(ctx.principal);
    const gone = new AbortController();
    response.on('close', () => gone.abort());
    const deadline = this.clock.now().getTime() + (dto.pollTimeout ?? 30) * 1000;
    const specs = new Set(await this.gateway.specsOf(runnerId));
    for (;;) {
      // Subscribe to wake-ups before looking, so work that appears in between is not missed.
      const waiting = new AbortController();
      const woken = this.gateway.waitForWork(specs, AbortSignal.any([gone.signal, waiting.signal]));
      const { job } = await this.runnerJobs.claim(runnerId, 1, ctx.metadata);
      if (job !== null) {
        waiting.abort();
        return jobPayload(job);
      }
      const left = deadline - this.clock.now().getTime();
      if (left <= 0 || gone.signal.aborted) {
        waiting.abort();
        break;
      }
      const timer = setTimeout(() => waiting.abort(), left);
      await woken;
      clearTimeout(timer);
      if (gone.signal.aborted) break;
    }
    request.resume();
    response.status(204);
    return undefined;
  }
}
