import { Module } from '@nestjs/common';
import { LivenessModule } from '../liveness/liveness.module';
import { SpecsModule } from '../specs/specs.module';
import { RunnersController } from './runners.controller';
import { RunnersRepository } from './runners.repository';
import { RunnersService } from './runners.service';

@Module({
  imports: [SpecsModule, LivenessModule],
  controllers: [RunnersController],
  providers: [RunnersService, RunnersRepository],
})
export class RunnersModule {}
