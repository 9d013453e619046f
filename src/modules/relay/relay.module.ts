import {
  type BeforeApplicationShutdown,
  Inject,
  Logger,
  Module,
  type OnApplicationBootstrap,
  Optional,
} from '@nestjs/common';
import { Clock } from '../../common/clock';
import { Database } from '../database/database';
import { CommitSignal } from '../event-store/commit-signal';
import { EventStore } from '../event-store/event-store';
import { Bus } from '../messaging/bus';
import { NatsBus } from '../messaging/nats-bus';
import { Subjects } from '../messaging/subjects';
import { JetStreamPublisher } from './jetstream-publisher';
import { AdvisoryLockLeadership, SoleLeadership } from '../event-store/leadership';
import { Relay } from './relay';

/** JetStream remembers message ids this long: a republished event inside it is dropped. */
const DUPLICATE_WINDOW_MS = 10 * 60 * 1000;
const PUBLISH_TIMEOUT_MS = 5_000;

/**
 * The relay role: publishes the committed job events to JetStream. Only with NATS (NATS_URL):
 * on the in-process bus there is no JetStream, and `Relay` is provided as null.
 */
@Module({
  providers: [
    {
      provide: Relay,
      inject: [Bus, Subjects, EventStore, Database, Clock],
      useFactory: (bus: Bus, subjects: Subjects, store: EventStore, database: Database, clock: Clock): Relay | null => {
        if (!(bus instanceof NatsBus)) return null;
        const stream = subjects.jobsStreamName();
        const name = `jetstream:${stream}`;
        const publisher = new JetStreamPublisher(bus.connection, {
          stream,
          subjects: subjects.allJobEvents(),
          duplicateWindowMs: DUPLICATE_WINDOW_MS,
          publishTimeoutMs: PUBLISH_TIMEOUT_MS,
        });
        // The embedded database serves one connection to one process: nobody to contend with.
        const leadership = database.isEmbedded ? new SoleLeadership(database.db) : new AdvisoryLockLeadership(database.url, name);
        return new Relay({ store, publisher, leadership, subjects, clock }, { name });
      },
    },
  ],
  exports: [Relay],
})
export class RelayModule implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RelayModule.name);
  private unlisten: (() => void) | null = null;

  constructor(
    @Inject(Relay) private readonly relay: Relay | null,
    @Optional() private readonly signal?: CommitSignal,
  ) {}

  onApplicationBootstrap(): void {
    if (this.relay === null) {
      this.logger.log('relay off: no NATS_URL, so no JetStream to publish job events to');
      return;
    }
    const relay = this.relay;
    relay.start();
    if (this.signal !== undefined) {
      const unlisten = this.signal.listen(() => relay.notify());
      this.unlisten = () => void unlisten();
    }
  }

  // Before the bus and the database close (they close in onApplicationShutdown).
  async beforeApplicationShutdown(): Promise<void> {
    this.unlisten?.();
    await this.relay?.stop();
  }
}
