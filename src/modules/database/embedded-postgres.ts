import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';

/**
 * Embedded PostgreSQL for running Runway with no database server: PGlite (PostgreSQL compiled to
 * WebAssembly) keeps its files in the data directory and is served on a loopback port, so the
 * same `pg` + TypeORM code path and the same migrations run on it. It answers one connection
 * at a time: the pool must have one connection.
 */
export class EmbeddedPostgres {
  private readonly logger = new Logger(EmbeddedPostgres.name);

  private constructor(
    private readonly close: () => Promise<void>,
    readonly url: string,
  ) {}

  static async start(dataDir: string): Promise<EmbeddedPostgres> {
    const directory = join(dataDir, 'pgdata');
    await mkdir(directory, { recursive: true });
    // Both packages ship CommonJS builds; loaded lazily so a server on PostgreSQL never pays for them.
    const { PGlite } = await import('@electric-sql/pglite');
    const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
    const db = await PGlite.create(directory);
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 1 });
    await server.start();
    const embedded = new EmbeddedPostgres(
      async () => {
        await server.stop();
        await db.close();
      },
      `postgres://postgres@${server.getServerConn()}/postgres`,
    );
    embedded.logger.log(`embedded PostgreSQL in ${directory}`);
    return embedded;
  }

  async stop(): Promise<void> {
    await this.close();
  }
}
