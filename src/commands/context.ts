import { SystemClock } from '../common/clock';
import { UuidV7Generator } from '../common/ids';
import type { RunwayConfig } from '../config/config';
import { Database } from '../modules/database/database';
import { EventStore } from '../modules/event-store/event-store';

/** What a one-off command needs of Runway: the database (migrated) and the event store. */
export interface CommandContext {
  database: Database;
  store: EventStore;
  clock: SystemClock;
}

/** Opens the database for a command, runs it, and closes the database whatever happens. */
export async function withDatabase<T>(config: RunwayConfig, work: (context: CommandContext) => Promise<T>): Promise<T> {
  const database = await Database.open(config);
  try {
    await database.migrate();
    const clock = new SystemClock();
    return await work({ database, store: new EventStore(database.db, clock, new UuidV7Generator(clock)), clock });
  } finally {
    await database.close();
  }
}
