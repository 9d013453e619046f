import type { NestExpressApplication } from '@nestjs/platform-express';
import request from 'supertest';
import { createApp } from '../../src/app';
import { ManualClock } from '../../src/common/clock';
import { loadConfig, type RunwayConfig } from '../../src/config/config';
import { hashToken } from '../../src/modules/auth/tokens';
import { Db } from '../../src/modules/database/db';
import { RunnerGateway } from '../../src/modules/gateway/runner-gateway';
import { Liveness } from '../../src/modules/liveness/liveness';
import { ASYNC_PROJECTIONS, checkpointName } from '../../src/modules/projections/registry';
import { createTestDatabase, type TestDatabase } from './postgres';

export const ADMIN_TOKEN = 'runway_admin_' + 'a1'.repeat(32);

export interface TestApp {
  app: NestExpressApplication;
  http: ReturnType<typeof request>;
  db: Db;
  clock: ManualClock;
  config: RunwayConfig;
  database: TestDatabase;
  /** http://127.0.0.1:<port>: the app listens on a real port (for WebSockets). */
  url: string;
  /**
   * Moves the manual clock. The gateway's "alive" beat runs on a real timer, so it is sent here
   * as time passes, as it would be; otherwise liveness would think this gateway lost.
   */
  advance(ms: number): void;
  close(): Promise<void>;
}

/** The API on a database of its own, with a manual clock and a known operator token. */
export async function startTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const database = await createTestDatabase();
  const config = loadConfig({
    DATABASE_URL: database.url,
    RUNWAY_ADMIN_TOKEN: ADMIN_TOKEN,
    RUNWAY_DATABASE_POOL_SIZE: '8',
    // The manual clock refills no token bucket unless a test moves it: tests of these limits set their own.
    RUNWAY_API_REQUESTS_PER_MINUTE: '1000000000',
    RUNWAY_AUTH_FAILURES_PER_MINUTE: '1000000000',
    RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '1000000000',
    ...env,
  });
  const clock = new ManualClock('2026-05-01T12:00:00.000Z');
  const app = await createApp(config, { adminTokenHash: hashToken(ADMIN_TOKEN), clock, logger: false });
  await app.listen(0, '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  return {
    url,
    app,
    advance(ms: number) {
      clock.advance(ms);
      const gateway = app.get(RunnerGateway, { strict: false });
      app.get(Liveness, { strict: false }).gatewayAlive({ gateway: gateway.instance, runners: gateway.connected });
    },
    http: request(app.getHttpServer()),
    db: app.get(Db),
    clock,
    config,
    database,
    async close() {
      await app.close();
      await database.drop();
    },
  };
}

/** Waits until every projector has handled the whole log (bounded: 10 s). */
export async function projectorsCaughtUp(t: Pick<TestApp, 'db'>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const { rows } = await t.db.query<{ behind: string }>(
      `SELECT count(*) AS behind FROM unnest($1::text[]) AS p(name)
         LEFT JOIN checkpoints c ON c.name = p.name
        WHERE c.name IS NULL OR EXISTS (
          SELECT 1 FROM events e WHERE (e.transaction_id, e.global_position) > (c.transaction_id, c.global_position))`,
      [ASYNC_PROJECTIONS.map(checkpointName)],
    );
    if (Number(rows[0].behind) === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the projectors did not catch up within 10 s');
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });
export const admin = bearer(ADMIN_TOKEN);
