import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import type { RunwayConfig } from '../../config/config';
import { createDataSource } from './data-source';
import { Db } from './db';
import { EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrator';

/** The open database: PostgreSQL at DATABASE_URL, or embedded PostgreSQL in the data directory. */
export class Database implements OnApplicationShutdown {
  private readonly logger = new Logger(Database.name);

  private constructor(
    readonly dataSource: DataSource,
    readonly db: Db,
    readonly url: string,
    private readonly embedded: EmbeddedPostgres | null,
  ) {}

  static async open(config: Pick<RunwayConfig, 'databaseUrl' | 'databasePoolSize' | 'dataDir'>): Promise<Database> {
    const embedded = config.databaseUrl === null ? await EmbeddedPostgres.start(config.dataDir) : null;
    const url = embedded?.url ?? (config.databaseUrl as string);
    const dataSource = createDataSource(url, config.databasePoolSize);
    try {
      await dataSource.initialize();
    } catch (error) {
      await embedded?.stop();
      throw error;
    }
    return new Database(dataSource, new Db(dataSource), url, embedded);
  }

  get isEmbedded(): boolean {
    return this.embedded !== null;
  }

  async migrate(): Promise<string[]> {
    const applied = await migrate(this.dataSource, this.url, !this.isEmbedded);
    for (const name of applied) this.logger.log(`applied migration ${name}`);
    return applied;
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    await this.embedded?.stop();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}
