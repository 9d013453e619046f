import { Logger } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { createApp } from './app';
import type { RunwayConfig } from './config/config';
import { resolveAdminToken } from './modules/auth/admin-token';
import { Database } from './modules/database/database';

/** Starts the HTTP server on the configured address; resolves once it listens. */
export async function serve(config: RunwayConfig): Promise<NestExpressApplication> {
  const logger = new Logger('Runway');
  const admin = await resolveAdminToken(config.adminToken, config.dataDir);
  if (admin.generated !== null) {
    // Shown once, and at once: only its SHA-256 is kept, and it is valid even if this start fails.
    process.stdout.write(
      `\nGenerated an operator token. It is shown only now; keep it somewhere safe:\n\n  RUNWAY_ADMIN_TOKEN=${admin.generated}\n\n`,
    );
  }
  const app = await createApp(config, { adminTokenHash: admin.hash });
  await app.listen(config.port, config.host);
  const url = await app.getUrl();
  logger.log(`listening on ${url.replace('[::1]', 'localhost')} (${config.databaseUrl === null ? `embedded PostgreSQL in ${config.dataDir}` : 'PostgreSQL'})`);
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
