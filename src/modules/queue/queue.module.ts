import { Module } from '@nestjs/common';
import { SpecsModule } from '../specs/specs.module';
import { QueueController } from './queue.controller';
import { QueueRepository } from './queue.repository';
import { QueueService } from './queue.service';

/** The queue view (the api role): `GET /v1/queue`, and the `queue` of a pending job (`QueueService`). */
@Module({
  imports: [SpecsModule],
  controllers: [QueueController],
  providers: [QueueRepository, QueueService],
  exports: [QueueService],
})
export class QueueModule {}
