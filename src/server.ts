import { Logger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from './app';
import type { RunwayConfig } from './config/config';
import { ROLES, type Role, RolesError } from './config/roles';
import { resolveAdminToken } from './modules/auth/admin-token';
import { Database } from './modules/database/database';

/** Starts the HTTP server on the configured address; resolves once it listens. */
export async function serve(config: RunwayConfig, roles: readonly Role[] = ROLES): Promise<NestExpressApplication> {
  const logger = new Logger('Runway');
  if (roles.length < ROLES.length && config.natsServers === null) {
    throw new RolesError('running some roles apart needs NATS_URL: the in-process bus reaches this process only');
  }
  const admin = await resolveAdminToken(config.adminToken, config.dataDir);
  if (admin.generated !== null) {
    // Shown once, and at once: only its SHA-256 is kept, and it is valid even if this start fails.
    process.stdout.write(
      `\nGenerated an operator token. It is shown only now; keep it somewhere safe:\n\n  RUNWAY_ADMIN_TOKEN=${admin.generated}\n\n`,
    );
  }
  // A promise that rejects unheard is a defect to fix, not a reason to drop every runner's
  // connection: logged loudly, and the server goes on (a thrown exception still ends it).
  process.on('unhandledRejection', (reason: unknown) => {
    logger.error(`unhandled rejection (a defect; the server goes on): ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}`);
  });
  const app = await createApp(config, { adminTokenHash: admin.hash, roles });
  await app.listen(config.port, config.host);
  const url = await app.getUrl();
  const database = config.databaseUrl === null ? `embedded PostgreSQL in ${config.dataDir}` : 'PostgreSQL';
  const bus = config.natsServers === null ? 'in-process bus' : 'NATS';
  logger.log(`listening on ${url.replace('[::1]', 'localhost')} as ${roles.join(', ')} (${database}, ${bus})`);
  return app;
}

/** Applies pending migrations and exits. */
export async function migrateOnly(config: RunwayConfig): Promise<string[]> {
  const database = await Database.open(config);
  try {
    return await database.migrate();
  } finally {
    await database.close();
  }
}
