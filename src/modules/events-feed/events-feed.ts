import type { IncomingMessage } from 'node:http';
import { type BeforeApplicationShutdown, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { WebSocket, WebSocketServer } from 'ws';
import { Backoff } from '../../common/backoff';
import { DomainError, ForbiddenError } from '../../common/errors';
import { UUID_PATTERN } from '../../common/ids';
import type { EventEnvelope } from '../../events/envelope';
import { Authenticator } from '../auth/authenticator';
import type { Principal } from '../auth/principal';
import { Db, isDatabaseUnavailable } from '../database/db';
import { compareLogPositions } from '../event-store/checkpoints';
import { CommitSignal } from '../event-store/commit-signal';
import { EventStore, LOG_START, type LogPosition } from '../event-store/event-store';
import { Bell, HELD_BACK_FIRST_MS, SAFETY_POLL_MS } from '../event-store/log-follower';
import { OrgsRepository } from '../orgs/orgs.repository';
import { type JobOwner, JobOwners } from '../relay/job-owners';
import { routeSockets, unrouteSockets } from '../websocket/runway-ws.adapter';

export const EVENTS_PATH = '/v1/events';

const BATCH = 500;
/** A client that lets this much pile up unread is cut off; it resumes with `after`. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/** What an admitted upgrade asked for. */
interface FeedRequest {
  filter: Filter;
  /** Where to start reading: after this position, or null for "from now". */
  after: LogPosition | null;
}

/** Which job events one client gets. */
interface Filter {
  /** null: every organization (the operator). */
  orgId: string | null;
  jobId: string | null;
  projectId: string | null;
}

interface Subscriber {
  socket: WebSocket;
  filter: Filter;
  /** The last log position this client has been sent (or skipped). */
  position: LogPosition;
  /** The global position of the last event sent, for resuming with `after`. */
  lastSent: number;
}

/**
 * `GET /v1/events?job=&project=&after=` (WebSocket): the committed job events of the caller's
 * organization, live, as envelopes, from the log. One tail per process reads the log in order
 * behind the gap-safe gate and fans each batch out; a client that asks for `after=<globalPosition>`
 * first catches up on its own, then joins the tail where it stands, so it sees every event once,
 * in order, with no gap. A Nest gateway on RunwayWsAdapter (frames up to 4 KiB; it takes none).
 */
@WebSocketGateway({ path: EVENTS_PATH, maxPayload: 4096 })
export class EventsFeed implements OnGatewayInit<WebSocketServer>, OnGatewayConnection, OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(EventsFeed.name);
  private server: WebSocketServer | null = null;
  private readonly subscribers = new Set<Subscriber>();
  private readonly wake = new Bell();
  /** The wait before reading again while committed events are held back by the gate (as a LogFollower's). */
  private readonly heldBack = new Backoff(HELD_BACK_FIRST_MS, SAFETY_POLL_MS);
  private tail: LogPosition | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private unlisten: (() => void) | null = null;
  /** Organization and project of each job, which never change. */
  private readonly owners = new JobOwners(100_000);

  constructor(
    private readonly authenticator: Authenticator,
    private readonly store: EventStore,
    private readonly db: Db,
    private readonly orgs: OrgsRepository,
    private readonly signal: CommitSignal,
  ) {}

  /** The path opens: the adapter admits upgrades with `admit`; a frame closes the socket. */
  afterInit(server: WebSocketServer): void {
    this.server = server;
    routeSockets(server, {
      admit: (request) => this.admit(request),
      read: (socket) => {
        socket.close(1008, 'this feed takes no messages');
        return null;
      },
    });
  }

  onApplicationBootstrap(): void {
    const unlisten = this.signal.listen(() => this.wake.ring());
    this.unlisten = () => void unlisten();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.server !== null) unrouteSockets(this.server);
    this.unlisten?.();
    this.stopping = true;
    this.wake.ring();
    await this.running;
    for (const { socket } of this.subscribers) socket.close(1001, 'server shutting down');
  }

  /** A credential other than a runner's, and a query that names what it may read; anything else is refused. */
  private async admit(request: IncomingMessage): Promise<FeedRequest> {
    const principal = await this.authenticator.authenticate(request.headers.authorization, request.socket.remoteAddress ?? 'unknown');
    if (principal.kind === 'runner') throw new ForbiddenError('runner tokens cannot read the events feed');
    const query = new URL(request.url ?? '/', 'http://localhost').searchParams;
    const filter = await this.filterOf(principal, query);
    return { filter, after: await this.startOf(query.get('after')) };
  }

  handleConnection(socket: WebSocket, _request: IncomingMessage, { filter, after }: FeedRequest): void {
    socket.on('error', () => socket.terminate());
    void this.subscribe(socket, filter, after).catch((error: unknown) => {
      if (isDatabaseUnavailable(error)) {
        socket.close(1013, 'the database is not available; reconnect shortly with after=<the last position you read>');
        return;
      }
      this.logger.error(`events feed failed: ${(error as Error).stack ?? String(error)}`);
      socket.close(1011, 'internal error');
    });
  }

  private async filterOf(principal: Principal, query: URLSearchParams): Promise<Filter> {
    const orgId = principal.kind === 'org' ? principal.orgId : null;
    const job = query.get('job');
    const project = query.get('project');
    let jobId: string | null = null;
    let projectId: string | null = null;
    if (job !== null) {
      const owner = UUID_PATTERN.test(job) ? await this.ownerOf(job) : null;
      if (owner === null || (orgId !== null && owner.orgId !== orgId)) throw new FeedError('not_found', 'job not found');
      jobId = job;
    }
    if (project !== null) {
      const found = await this.orgs.findProject(orgId, project);
      if (found === null) throw new FeedError('not_found', 'project not found');
      projectId = found.id;
    }
    return { orgId, jobId, projectId };
  }

  /** The position to read after: the event `after` names, or null for "from now". */
  private async startOf(after: string | null): Promise<LogPosition | null> {
    if (after === null) return null;
    if (!/^\d{1,15}$/.test(after)) throw new FeedError('validation_failed', 'after must be a global position (a whole number)');
    if (Number(after) === 0) return LOG_START;
    const position = await this.store.positionOf(Number(after));
    if (position === null) throw new FeedError('not_found', `no event at global position ${after}`);
    return position;
  }

  private async subscribe(socket: WebSocket, filter: Filter, after: LogPosition | null): Promise<void> {
    const subscriber: Subscriber = { socket, filter, position: after ?? (await this.tailPosition()), lastSent: 0 };
    socket.on('close', () => this.subscribers.delete(subscriber));
    if (filter.jobId !== null && after !== null) await this.catchUpOnJob(subscriber, filter.jobId);
    // Catch up alone until the tail is not ahead, then join it, in the same tick.
    for (;;) {
      if (socket.readyState !== socket.OPEN) return;
      const tail = await this.tailPosition();
      if (compareLogPositions(tail, subscriber.position) <= 0) {
        this.subscribers.add(subscriber);
        this.startTail();
        return;
      }
      const batch = await this.store.readAll(subscriber.position, BATCH);
      await this.deliver(subscriber, batch);
      subscriber.position = batch.last;
      if (batch.events.length === 0) {
        // The tail read events that are not readable to this query yet: wait for them.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  }

  /**
   * A client following one job from the past reads that job's stream, not the whole log: a
   * stream's committed events are always a prefix of it, in log order, so this skips nothing.
   */
  private async catchUpOnJob(subscriber: Subscriber, jobId: string): Promise<void> {
    const rows = await this.store.readStreams({ streamId: jobId, position: 0 }, 10_000);
    const events = rows.filter((row) => row.envelope.streamId === jobId);
    await this.deliver(subscriber, {
      events: events.map((row) => row.envelope),
      positions: events.map((row) => ({ transactionId: row.transactionId, globalPosition: row.envelope.globalPosition })),
    });
  }

  /** Where the tail stands; the first call places it at the end of the log. */
  private async tailPosition(): Promise<LogPosition> {
    if (this.tail === null) {
      let position = LOG_START;
      for (;;) {
        const batch = await this.store.readAll(position, 5_000);
        if (batch.events.length === 0) break;
        position = batch.last;
      }
      this.tail ??= position;
    }
    return this.tail;
  }

  private startTail(): void {
    this.running ??= this.follow().finally(() => (this.running = null));
  }

  private async follow(): Promise<void> {
    while (!this.stopping && this.subscribers.size > 0) {
      try {
        const from = await this.tailPosition();
        const batch = await this.store.readAll(from, BATCH);
        if (batch.events.length > 0) {
          await Promise.all([...this.subscribers].map((s) => this.deliver(s, batch)));
          this.tail = batch.last;
        }
        if (batch.events.length < BATCH) {
          // Rung by every commit (CommitSignal); the safety poll catches a lost ring. Events held
          // back behind a transaction still running are looked at again soon, backing off.
          if (!batch.heldBack) this.heldBack.reset();
          await this.wake.wait(batch.heldBack ? this.heldBack.next() : SAFETY_POLL_MS);
        }
      } catch (error) {
        this.logger.warn(`events feed tail: ${(error as Error).message}`);
        await this.wake.wait(1_000);
      }
    }
  }

  /** Sends the subscriber the events past its position that its filter lets through. */
  private async deliver(subscriber: Subscriber, batch: { events: EventEnvelope[]; positions: LogPosition[] }): Promise<void> {
    for (const [i, event] of batch.events.entries()) {
      const position = batch.positions[i];
      if (compareLogPositions(position, subscriber.position) <= 0) continue;
      subscriber.position = position;
      if (event.streamType !== 'job' || !(await this.matches(subscriber.filter, event))) continue;
      if (subscriber.socket.readyState !== subscriber.socket.OPEN) return;
      if (subscriber.socket.bufferedAmount > MAX_BUFFERED_BYTES) {
        subscriber.socket.close(4008, `too slow: reconnect with after=${subscriber.lastSent}`);
        this.subscribers.delete(subscriber);
        return;
      }
      subscriber.socket.send(JSON.stringify(event));
      subscriber.lastSent = event.globalPosition;
    }
  }

  private async matches(filter: Filter, event: EventEnvelope): Promise<boolean> {
    if (filter.jobId !== null && event.streamId !== filter.jobId) return false;
    if (filter.orgId === null && filter.projectId === null) return true;
    const owner = await this.ownerOf(event.streamId);
    if (owner === null) return false;
    return (filter.orgId === null || owner.orgId === filter.orgId) && (filter.projectId === null || owner.projectId === filter.projectId);
  }

  private ownerOf(jobId: string): Promise<JobOwner | null> {
    return this.owners.find(jobId, this.db);
  }
}

class FeedError extends DomainError {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
