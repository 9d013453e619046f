import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import type { Pool } from 'pg';
import type { DataSource } from 'typeorm';
import type { RunwayConfig } from '../../config/config';
import { createDataSource, createPool } from './data-source';
import { Db } from './db';
import { EmbeddedPostgres } from './embedded-postgres';
import { migrate } from './migrator';

/** The open database: PostgreSQL at DATABASE_URL, or embedded PostgreSQL in the data directory. */
export class Database implements OnApplicationShutdown {
  private readonly logger = new Logger(Database.name);

  private constructor(
    private readonly pool: Pool,
    /** TypeORM, for the migrations; on the same pool. */
    readonly dataSource: DataSource,
    readonly db: Db,
    readonly url: string,
    private readonly embedded: EmbeddedPostgres | null,
  ) {}

  static async open(config: Pick<RunwayConfig, 'databaseUrl' | 'databasePoolSize' | 'dataDir'>): Promise<Database> {
    const embedded = config.databaseUrl === null ? await EmbeddedPostgres.start(config.dataDir) : null;
    const url = embedded?.url ?? (config.databaseUrl as string);
    const pool = createPool(url, config.databasePoolSize);
    const dataSource = createDataSource(pool);
    try {
      // Connects once: a database that cannot be reached fails the start here.
      await dataSource.initialize();
    } catch (error) {
      await pool.end().catch(() => undefined);
      await embedded?.stop();
      throw error;
    }
    return new Database(pool, dataSource, new Db(pool), url, embedded);
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
    if (!this.pool.ending) await this.pool.end();
    await this.embedded?.stop();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}
