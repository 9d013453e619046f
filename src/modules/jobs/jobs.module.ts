import { Module } from '@nestjs/common';
import { OrgsModule } from '../orgs/orgs.module';
import { SpecsModule } from '../specs/specs.module';
import { JobsController } from './jobs.controller';
import { JobsRepository } from './jobs.repository';
import { JobsService } from './jobs.service';

@Module({
  imports: [OrgsModule, SpecsModule],
  controllers: [JobsController],
  providers: [JobsService, JobsRepository],
})
export class JobsModule {}
