import { Global, Module } from '@nestjs/common';
import { CommandHandler } from './command-handler';
import { CommitSignal } from './commit-signal';
import { EventStore } from './event-store';
import { LogNotificationsService } from './log-notifications';

@Global()
@Module({
  providers: [EventStore, CommandHandler, CommitSignal, LogNotificationsService],
  exports: [EventStore, CommandHandler, CommitSignal, LogNotificationsService],
})
export class EventStoreModule {}
