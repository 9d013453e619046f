import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { dropDatabase, freshDatabase } from './postgres';
import { BENCH_ADMIN_TOKEN, RunwayServer, type ServerOptions } from './runway-server';

/** The NATS server benchmark deployments use. */
export const NATS_URL = process.env.RUNWAY_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';

/**
 * The per-runner limits that protect a real deployment from one runaway runner (connection
 * attempts and claims per minute, hour and day; frames per second on one socket), lifted: a
 * benchmark's runners do on purpose what those limits are there to stop.
 */
export const UNTHROTTLED_ENV: Readonly<Record<string, string>> = {
  RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '1000000000',
  RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '1000000000',
  RUNWAY_API_REQUESTS_PER_MINUTE: '1000000000',
  RUNWAY_SOCKET_MESSAGES_PER_SECOND: '1000000000',
};

/**
 * A throwaway Runway deployment for one benchmark: a fresh database on the benchmark's
 * PostgreSQL server, a NATS subject prefix of its own (so its JetStream stream is its own too)
 * and a data directory. Servers started from it share all three; `dispose()` removes them.
 */
export class BenchDeployment {
  private constructor(
    readonly dbName: string,
    readonly prefix: string,
    private readonly dataDir: string,
    /** What every server of the deployment is started with. */
    readonly env: Readonly<Record<string, string>>,
  ) {}

  /** `dbName` is dropped if it exists and created empty; `env` adds to (or overrides) the deployment's settings. */
  static async create(dbName: string, env: Readonly<Record<string, string>> = {}): Promise<BenchDeployment> {
    const databaseUrl = await freshDatabase(dbName);
    const prefix = `rwbench${randomBytes(4).toString('hex')}`;
    const dataDir = mkdtempSync(join(tmpdir(), 'runway-bench-'));
    return new BenchDeployment(dbName, prefix, dataDir, {
      RUNWAY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      DATABASE_URL: databaseUrl,
      RUNWAY_DATA_DIR: dataDir,
      NATS_URL,
      RUNWAY_NATS_PREFIX: prefix,
      ...env,
    });
  }

  /** Starts a server of this deployment and waits until it is ready. */
  async start(label: string, options: Omit<ServerOptions, 'env'> = {}): Promise<RunwayServer> {
    const server = await RunwayServer.start(label, { ...options, env: { ...this.env } });
    try {
      await server.waitReady();
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** Drops the database, deletes the JetStream stream and removes the data directory. */
  async dispose(): Promise<void> {
    await dropDatabase(this.dbName);
    await deleteJetStream(this.prefix);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Deletes the JetStream stream a Runway relay with subject prefix `prefix` creates, if it exists. */
export async function deleteJetStream(prefix: string): Promise<void> {
  const nc = await connect({ servers: NATS_URL, name: 'runway-bench-cleanup' }).catch(() => null);
  if (nc === null) return;
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`${prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_JOBS`).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
