import { Module } from '@nestjs/common';
import { OrgsController, ProjectsController } from './orgs.controller';
import { OrgsRepository } from './orgs.repository';
import { OrgsService } from './orgs.service';

@Module({
  controllers: [OrgsController, ProjectsController],
  providers: [OrgsService, OrgsRepository],
  exports: [OrgsRepository],
})
export class OrgsModule {}
