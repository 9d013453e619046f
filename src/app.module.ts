import { type DynamicModule, Module, type Type } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { Clock, SystemClock } from './common/clock';
import { IdGenerator, UuidV7Generator } from './common/ids';
import { RUNWAY_CONFIG, type RunwayConfig } from './config/config';
import { ROLES, type Role } from './config/roles';
import { AuditModule } from './modules/audit/audit.module';
import { AuthGuard } from './modules/auth/auth.guard';
import { AuthModule } from './modules/auth/auth.module';
import { ADMIN_TOKEN_HASH } from './modules/auth/authenticator';
import { BillingModule } from './modules/billing/billing.module';
import { DatabaseModule } from './modules/database/database.module';
import { EventStoreModule } from './modules/event-store/event-store.module';
import { EventsFeedModule } from './modules/events-feed/events-feed.module';
import { GatewayModule } from './modules/gateway/gateway.module';
import { HealthModule } from './modules/health/health.module';
import { ProblemFilter } from './modules/http/problem.filter';
import { JobsCoreModule } from './modules/jobs/jobs-core.module';
import { JobsModule } from './modules/jobs/jobs.module';
import { LivenessModule } from './modules/liveness/liveness.module';
import { MessagingModule } from './modules/messaging/messaging.module';
import { MetricsModule } from './modules/metrics/metrics.module';
import { OrgsModule } from './modules/orgs/orgs.module';
import { ProjectorsModule } from './modules/projections/projectors.module';
import { QueueModule } from './modules/queue/queue.module';
import { RelayModule } from './modules/relay/relay.module';
import { RunnersModule } from './modules/runners/runners.module';
import { SpecsModule } from './modules/specs/specs.module';

export interface AppModuleOptions {
  config: RunwayConfig;
  adminTokenHash: string;
  clock?: Clock;
  roles?: readonly Role[];
}

/** Process-wide providers: configuration, the operator credential, time and ids. */
@Module({})
class CoreModule {
  static forRoot(config: RunwayConfig, adminTokenHash: string, clock: Clock): DynamicModule {
    return {
      module: CoreModule,
      global: true,
      providers: [
        { provide: RUNWAY_CONFIG, useValue: config },
        { provide: ADMIN_TOKEN_HASH, useValue: adminTokenHash },
        { provide: Clock, useValue: clock },
        { provide: IdGenerator, inject: [Clock], useFactory: (c: Clock) => new UuidV7Generator(c) },
      ],
      exports: [RUNWAY_CONFIG, ADMIN_TOKEN_HASH, Clock, IdGenerator],
    };
  }
}

const ROLE_MODULES: Record<Role, Type[]> = {
  api: [OrgsModule, SpecsModule, RunnersModule, JobsModule, LivenessModule, EventsFeedModule, BillingModule, QueueModule, AuditModule],
  gateway: [GatewayModule],
  relay: [RelayModule],
  projector: [ProjectorsModule],
};

/** Runway: the shared core, and the modules of the roles this process runs. */
@Module({})
export class AppModule {
  static forRoot({ config, adminTokenHash, clock = new SystemClock(), roles = ROLES }: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot(config, adminTokenHash, clock),
        DatabaseModule.forRoot(),
        EventStoreModule,
        MessagingModule.forRoot(),
        AuthModule,
        MetricsModule,
        HealthModule,
        JobsCoreModule,
        ...roles.flatMap((role) => ROLE_MODULES[role]),
      ],
      providers: [
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}
