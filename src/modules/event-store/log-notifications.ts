import { type BeforeApplicationShutdown, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { Client } from 'pg';
import { Backoff } from '../../common/backoff';
import { poolBackends } from '../database/data-source';
import { Database } from '../database/database';
import { CommitSignal } from './commit-signal';

/** The channel the log's trigger notifies at every commit that appended (migration 9). */
export const LOG_CHANNEL = 'runway_log';

/**
 * Hears the commits of every other process on this database and rings the CommitSignal, so the
 * log's readers here (the relay, the projectors, the events feed) wake for commits made elsewhere
 * (split roles, other instances, the CLI) as they do for this process's own, instead of polling
 * for them: `LISTEN runway_log` on a connection of its own. A notification from one of this
 * process's own pool connections is left out: CommandHandler rang for that commit already, and a
 * second ring would only make every reader read again for nothing. A connection that drops is opened
 * again with backoff; readers meanwhile fall back on their slow safety poll, and once it is back
 * they are rung (a commit may have gone unheard). The embedded database serves one process, whose
 * own commits ring the signal already: nothing to listen to there.
 */
export class LogNotifications {
  private readonly logger = new Logger(LogNotifications.name);
  private readonly backoff: Backoff;
  private client: Client | null = null;
  private stopping = false;
  private running: Promise<void> | null = null;
  private wakeRetry: (() => void) | null = null;
  /** Whether the connection is listening now. */
  listening = false;
  /** Notifications heard from other processes, for tests and diagnostics. */
  heard = 0;

  constructor(
    private readonly url: string,
    private readonly signal: CommitSignal,
    options: { retryInitialMs: number; retryMaxMs: number } = { retryInitialMs: 200, retryMaxMs: 5_000 },
    /** Backends of this process's own pool: it rang the signal for their commits already (CommandHandler). */
    private readonly own: ReadonlySet<number> = new Set(),
  ) {
    this.backoff = new Backoff(options.retryInitialMs, options.retryMaxMs);
  }

  start(): void {
    if (this.running !== null) return;
    this.stopping = false;
    this.running = this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeRetry?.();
    await this.client?.end().catch(() => undefined);
    await this.running;
    this.running = null;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const ended = await this.listenOnce();
      this.listening = false;
      if (this.stopping) return;
      const delay = this.backoff.next();
      this.logger.warn(`not listening for commits (${ended}); readers poll until it is back, trying again in ${delay} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeRetry = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeRetry = null;
    }
  }

  /** Listens until the connection ends; resolves to why. */
  private async listenOnce(): Promise<string> {
    const client = new Client({ connectionString: this.url, application_name: 'runway-listen', keepAlive: true, connectionTimeoutMillis: 10_000 });
    this.client = client;
    const ended = new Promise<string>((resolve) => {
      client.on('error', (error) => resolve(error.message));
      client.on('end', () => resolve('the connection ended'));
    });
    client.on('notification', (message) => {
      if (this.own.has(message.processId)) return;
      this.heard++;
      this.signal.committed();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${LOG_CHANNEL}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      return (error as Error).message;
    }
    this.listening = true;
    this.backoff.reset();
    // Commits made while nobody listened went unheard: readers look now.
    this.signal.committed();
    const why = await ended;
    await client.end().catch(() => undefined);
    return why;
  }
}

/** Listens for the whole application, unless the database is the embedded one. */
@Injectable()
export class LogNotificationsService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  readonly notifications: LogNotifications | null;

  constructor(database: Database, signal: CommitSignal) {
    this.notifications = database.isEmbedded ? null : new LogNotifications(database.url, signal, undefined, poolBackends(database.db.pool));
  }

  onApplicationBootstrap(): void {
    this.notifications?.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.notifications?.stop();
  }
}
