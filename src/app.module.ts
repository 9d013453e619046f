import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { Clock, SystemClock } from './common/clock';
import { IdGenerator, UuidV7Generator } from './common/ids';
import { RUNWAY_CONFIG, type RunwayConfig } from './config/config';
import { ADMIN_TOKEN_HASH, AuthGuard } from './modules/auth/auth.guard';
import { DatabaseModule } from './modules/database/database.module';
import { EventStoreModule } from './modules/event-store/event-store.module';
import { HealthModule } from './modules/health/health.module';
import { ProblemFilter } from './modules/http/problem.filter';
import { JobsModule } from './modules/jobs/jobs.module';
import { OrgsModule } from './modules/orgs/orgs.module';
import { RunnersModule } from './modules/runners/runners.module';
import { SpecsModule } from './modules/specs/specs.module';

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
        { provide: IdGenerator, inject: [Clock], useFactory: (clock: Clock) => new UuidV7Generator(clock) },
      ],
      exports: [RUNWAY_CONFIG, ADMIN_TOKEN_HASH, Clock, IdGenerator],
    };
  }
}

/** Runway's API: every module, one auth guard, one error filter. */
@Module({})
export class AppModule {
  static forRoot(config: RunwayConfig, adminTokenHash: string, clock: Clock = new SystemClock()): DynamicModule {
    return {
      module: AppModule,
      imports: [
        CoreModule.forRoot(config, adminTokenHash, clock),
        DatabaseModule.forRoot(),
        EventStoreModule,
        HealthModule,
        OrgsModule,
        SpecsModule,
        RunnersModule,
        JobsModule,
      ],
      providers: [
        { provide: APP_GUARD, useClass: AuthGuard },
        { provide: APP_FILTER, useClass: ProblemFilter },
      ],
    };
  }
}
