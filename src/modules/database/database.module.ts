import { type DynamicModule, Global, Module } from '@nestjs/common';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { Database } from './database';
import { Db } from './db';

/** Opens the database at start (applying migrations) and closes it at shutdown. */
@Global()
@Module({})
export class DatabaseModule {
  static forRoot(options: { migrate: boolean } = { migrate: true }): DynamicModule {
    return {
      module: DatabaseModule,
      providers: [
        {
          provide: Database,
          inject: [RUNWAY_CONFIG],
          useFactory: async (config: RunwayConfig) => {
            const database = await Database.open(config);
            if (options.migrate) {
              try {
                await database.migrate();
              } catch (error) {
                await database.close();
                throw error;
              }
            }
            return database;
          },
        },
        { provide: Db, inject: [Database], useFactory: (database: Database) => database.db },
      ],
      exports: [Database, Db],
    };
  }
}
