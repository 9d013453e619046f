import { hostname } from 'node:os';
import { type DynamicModule, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { Bus } from './bus';
import { LocalBus } from './local-bus';
import { NatsBus } from './nats-bus';
import { Subjects } from './subjects';

/**
 * The bus between roles: NATS when NATS_URL is set, else the in-process bus (one process only).
 * Provides `Bus` and `Subjects` everywhere; closes the bus at shutdown.
 */
@Module({})
export class MessagingModule implements OnApplicationShutdown {
  constructor(private readonly bus: Bus) {}

  static forRoot(): DynamicModule {
    return {
      module: MessagingModule,
      global: true,
      providers: [
        {
          provide: Bus,
          inject: [RUNWAY_CONFIG],
          useFactory: async (config: RunwayConfig): Promise<Bus> => {
            if (config.natsServers !== null) return NatsBus.connect(config.natsServers, `runway@${hostname()}:${process.pid}`);
            new Logger(MessagingModule.name).log('no NATS_URL: using the in-process bus (single process only)');
            return new LocalBus();
          },
        },
        { provide: Subjects, inject: [RUNWAY_CONFIG], useFactory: (config: RunwayConfig) => new Subjects(config.natsPrefix) },
      ],
      exports: [Bus, Subjects],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    await this.bus.close();
  }
}
