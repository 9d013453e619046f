import { Global, Module } from '@nestjs/common';
import { CommandHandler } from './command-handler';
import { EventStore } from './event-store';

@Global()
@Module({
  providers: [EventStore, CommandHandler],
  exports: [EventStore, CommandHandler],
})
export class EventStoreModule {}
