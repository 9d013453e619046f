import { Global, Module } from '@nestjs/common';
import { CommandHandler } from './command-handler';
import { CommitSignal } from './commit-signal';
import { EventStore } from './event-store';

@Global()
@Module({
  providers: [EventStore, CommandHandler, CommitSignal],
  exports: [EventStore, CommandHandler, CommitSignal],
})
export class EventStoreModule {}
