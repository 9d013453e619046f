import { Global, Module } from '@nestjs/common';
import { UpgradeRouter } from './upgrade-router';

/** HTTP plumbing every role shares: the WebSocket upgrade router. */
@Global()
@Module({ providers: [UpgradeRouter], exports: [UpgradeRouter] })
export class HttpModule {}
