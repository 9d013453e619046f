import { Module } from '@nestjs/common';
import { OrgsModule } from '../orgs/orgs.module';
import { QueueModule } from '../queue/queue.module';
import { SpecsModule } from '../specs/specs.module';
import { JobsController } from './jobs.controller';
import { JobsService } from './jobs.service';

/** The jobs REST API (the api role). */
@Module({
  imports: [OrgsModule, SpecsModule, QueueModule],
  controllers: [JobsController],
  providers: [JobsService],
})
export class JobsModule {}
