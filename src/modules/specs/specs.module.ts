import { Module } from '@nestjs/common';
import { SpecsService } from './specs';
import { SpecsController } from './specs.controller';

@Module({
  controllers: [SpecsController],
  providers: [SpecsService],
  exports: [SpecsService],
})
export class SpecsModule {}
