import { type BeforeApplicationShutdown, Inject, Logger, Module, type OnApplicationBootstrap } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { Database } from '../database/database';
import { CommitSignal } from '../event-store/commit-signal';
import { EventStore } from '../event-store/event-store';
import { AdvisoryLockLeadership, SoleLeadership } from '../event-store/leadership';
import { Projector } from './projector';
import { ASYNC_PROJECTIONS, checkpointName } from './registry';

export const PROJECTORS = Symbol('PROJECTORS');

/** The projector role: one projector per async view, each following the log on its own. */
@Module({
  providers: [
    {
      provide: PROJECTORS,
      inject: [EventStore, Database, Clock],
      useFactory: (store: EventStore, database: Database, clock: Clock): Projector[] =>
        ASYNC_PROJECTIONS.map((projection) => {
          // The embedded database serves one connection to one process: nobody to contend with.
          const leadership = database.isEmbedded
            ? new SoleLeadership(database.db)
            : new AdvisoryLockLeadership(database.url, checkpointName(projection));
          return new Projector(projection, store, leadership, clock);
        }),
    },
  ],
  exports: [PROJECTORS],
})
export class ProjectorsModule implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(ProjectorsModule.name);
  private unlisten: (() => void) | null = null;

  constructor(
    @Inject(PROJECTORS) private readonly projectors: Projector[],
    private readonly signal: CommitSignal,
  ) {}

  onApplicationBootstrap(): void {
    for (const projector of this.projectors) projector.start();
    const unlisten = this.signal.listen(() => this.projectors.forEach((p) => p.notify()));
    this.unlisten = () => void unlisten();
    this.logger.log(`projecting ${this.projectors.map((p) => p.projection.name).join(', ')}`);
  }

  // Before the database closes.
  async beforeApplicationShutdown(): Promise<void> {
    this.unlisten?.();
    await Promise.all(this.projectors.map((p) => p.stop()));
  }
}
