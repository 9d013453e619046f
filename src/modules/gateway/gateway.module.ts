import { Module } from '@nestjs/common';
import { RunnerSessions } from '../runners/runner-sessions';
import { Scheduler } from '../scheduling/scheduler';
import { SchedulingRepository } from '../scheduling/scheduling.repository';
import { Dispatcher } from './dispatcher';
import { GatewayInstance } from './gateway-instance';
import { GatewayRepository } from './gateway.repository';
import { RunnerClaimController } from './runner-claim.controller';
import { RunnerGateway } from './runner-gateway';
import { RunnerJobs } from './runner-jobs';
import { RunnerMessages } from './runner-messages';

/** The runner gateway role: runner sockets, dispatching work to waiting runners, and the REST long-poll claim. */
@Module({
  controllers: [RunnerClaimController],
  providers: [
    RunnerGateway,
    RunnerMessages,
    Dispatcher,
    GatewayRepository,
    GatewayInstance,
    RunnerJobs,
    RunnerSessions,
    Scheduler,
    SchedulingRepository,
  ],
})
export class GatewayModule {}
