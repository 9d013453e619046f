import { Body, Controller, HttpCode, Logger, Post, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiProperty, ApiTags } from '@nestjs/swagger';
import { IsInt, Max, Min } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import type { Request, Response } from 'express';
import { Clock } from '../../common/clock';
import type { JobState } from '../../machines/job.machine';
import { Access } from '../auth/access.decorator';
import { runnerOf } from '../auth/principal';
import { Ctx, type RequestContext } from '../http/request-context';
import { type JobPayload } from './protocol';
import { Dispatcher } from './dispatcher';
import { GatewayRepository } from './gateway.repository';
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
  private readonly logger = new Logger(RunnerClaimController.name);

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly repository: GatewayRepository,
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
    /** The job claimed for this request, until its answer is written. */
    let handed: JobState | null = null;
    response.on('close', () => {
      gone.abort();
      // The client left before the answer with its job was written: nobody will run it.
      if (handed !== null && !response.writableFinished) void this.release(runnerId, handed, ctx);
      handed = null;
    });
    response.on('finish', () => (handed = null));
    const deadline = this.clock.now().getTime() + (dto.pollTimeout ?? 30) * 1000;
    const specs = new Set(await this.repository.specsOf(runnerId));
    while (!gone.signal.aborted) {
      // Subscribe to wake-ups before looking, so work that appears in between is not missed.
      const waiting = new AbortController();
      const woken = this.dispatcher.waitForWork(specs, AbortSignal.any([gone.signal, waiting.signal]));
      const { job } = await this.runnerJobs.claim(runnerId, 1, ctx.metadata);
      if (job !== null) {
        waiting.abort();
        // The client left while the claim was in flight: the job goes back at once instead of
        // waiting out its claim timeout for a runner that never got it.
        if (gone.signal.aborted) {
          await this.release(runnerId, job, ctx);
          return undefined;
        }
        handed = job;
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
    }
    request.resume();
    response.status(204);
    return undefined;
  }

  /** Gives back a job claimed for a request whose client is gone (`runnerLost`: requeued, or failed at its last attempt). */
  private async release(runnerId: string, job: JobState, ctx: RequestContext): Promise<void> {
    try {
      const state = await this.runnerJobs.lost(runnerId, job.jobId, job.attempt, ctx.metadata);
      if (state !== null) this.logger.log(`runner ${runnerId} left before its claim of job ${job.jobId} attempt ${job.attempt} was answered: released`);
    } catch (error) {
      this.logger.error(`could not release job ${job.jobId} claimed for a client that left: ${(error as Error).message}`);
    }
  }
}
