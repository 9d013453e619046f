import { Module } from '@nestjs/common';
import { SpecsModule } from '../specs/specs.module';
import { RunnersController } from './runners.controller';
import { RunnersRepository } from './runners.repository';
import { RunnersService } from './runners.service';

@Module({
  imports: [SpecsModule],
  controllers: [RunnersController],
  providers: [RunnersService, RunnersRepository],
})
export class RunnersModule {}
