import { Module } from '@nestjs/common';
import { RunnerSessions } from '../runners/runner-sessions';
import { Scheduler } from '../scheduling/scheduler';
import { SchedulingRepository } from '../scheduling/scheduling.repository';
import { RunnerClaimController } from './runner-claim.controller';
import { RunnerGateway } from './runner-gateway';
import { RunnerJobs } from './runner-jobs';

/** The runner gateway role: runner sockets, claiming, and the REST long-poll claim. */
@Module({
  controllers: [RunnerClaimController],
  providers: [RunnerGateway, RunnerJobs, RunnerSessions, Scheduler, SchedulingRepository],
})
export class GatewayModule {}
