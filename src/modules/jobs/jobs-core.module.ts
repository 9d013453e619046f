import { Global, Module } from '@nestjs/common';
import { JobCommands } from './job-commands';
import { JobNotifier } from './job-notifier';
import { JobOutputRepository } from './job-output.repository';
import { JobsRepository } from './jobs.repository';

/** Changing jobs, for every role that does: the API, the gateway, liveness. */
@Global()
@Module({
  providers: [JobCommands, JobNotifier, JobsRepository, JobOutputRepository],
  exports: [JobCommands, JobsRepository, JobOutputRepository],
})
export class JobsCoreModule {}
