import { Module } from '@nestjs/common';
import { OrgsModule } from '../orgs/orgs.module';
import { EventsFeed } from './events-feed';

/** The live events WebSocket for clients (the api role). */
@Module({ imports: [OrgsModule], providers: [EventsFeed] })
export class EventsFeedModule {}
