import type { IncomingMessage } from 'node:http';
import { type BeforeApplicationShutdown, Inject, Logger, type OnApplicationBootstrap, UseFilters } from '@nestjs/common';
import {
  type OnGatewayConnection,
  type OnGatewayDisconnect,
  type OnGatewayInit,
  SubscribeMessage,
  WebSocketGateway,
} from '@nestjs/websockets';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import { Clock } from '../../common/clock';
import { ForbiddenError, RateLimitedError } from '../../common/errors';
import { KeyedTokenBuckets, TokenBucket } from '../../common/rate-limit';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { Public } from '../auth/access.decorator';
import { Authenticator } from '../auth/authenticator';
import { Bus, type Subscription } from '../messaging/bus';
import type { CancelMessage, ControlMessage, GatewayAliveMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import { Metrics } from '../metrics/metrics';
import { type RoutedMessage, routeSockets, unrouteSockets } from '../websocket/runway-ws.adapter';
import { Dispatcher } from './dispatcher';
import { errorFrame } from './error-frame';
import { ErrorFrameFilter } from './error-frame.filter';
import { GatewayInstance } from './gateway-instance';
import { BadMessage, type RunnerMessage, parseRunnerMessage } from './protocol';
import { RunnerConnection } from './runner-connection';
import { RunnerMessages } from './runner-messages';

export const RUNNER_SOCKET_PATH = '/v1/runner/connect';

/** The gateway's one message handler takes every runner message; RunnerMessages goes by its type. */
const RUNNER_MESSAGE = 'runner-message';

const PING_MS = 30_000;
/** How long a runner has to answer the close handshake at shutdown. */
const CLOSE_GRACE_MS = 2_000;

/**
 * The runner gateway: one WebSocket per runner at /v1/runner/connect, a Nest gateway on
 * RunwayWsAdapter. Owns the sockets' lifecycle: authenticates and rate limits on upgrade, keeps
 * one connection per runner, reads and rate limits frames and hands each message to
 * RunnerMessages (which decides it with the job machine), pings, pushes cancels and control
 * messages wherever the runner is connected, and says this instance is alive. Waiting runners get
 * their jobs from the Dispatcher. Talks to the API role over the bus only. The socket was
 * authenticated at the upgrade, so its messages pass the HTTP guard (`@Public`); what a handler
 * throws becomes an `error` frame (ErrorFrameFilter).
 */
@Public()
@UseFilters(ErrorFrameFilter)
@WebSocketGateway({ path: RUNNER_SOCKET_PATH })
export class RunnerGateway implements OnGatewayInit<WebSocketServer>, OnGatewayConnection, OnGatewayDisconnect, OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RunnerGateway.name);
  private server: WebSocketServer | null = null;
  private readonly connections = new Map<string, RunnerConnection>();
  private readonly bySocket = new WeakMap<WebSocket, RunnerConnection>();
  /** Connection attempts per runner. */
  private readonly connectLimiter: KeyedTokenBuckets;
  private readonly subscriptions: Subscription[] = [];
  private timers: NodeJS.Timeout[] = [];

  constructor(
    private readonly authenticator: Authenticator,
    private readonly messages: RunnerMessages,
    private readonly dispatcher: Dispatcher,
    private readonly gatewayInstance: GatewayInstance,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) private readonly config: RunwayConfig,
  ) {
    this.connectLimiter = new KeyedTokenBuckets(config.rateLimits.runnerConnects, () => this.clock.now().getTime());
  }

  /** This gateway instance, as RunnerConnected events and alive messages name it. */
  get instance(): string {
    return this.gatewayInstance.id;
  }

  /** The path opens: the adapter admits upgrades with `admit` and reads frames with `read`. */
  afterInit(server: WebSocketServer): void {
    this.server = server;
    routeSockets(server, { admit: (request) => this.admit(request), read: (socket, data, isBinary) => this.read(socket, data, isBinary) });
  }

  onApplicationBootstrap(): void {
    this.subscriptions.push(
      this.bus.subscribe(this.subjects.anyRunnerCancel(), ({ data }) => this.onCancel(data as CancelMessage)),
      this.bus.subscribe(this.subjects.anyRunnerControl(), ({ data }) => this.onControl(data as ControlMessage)),
    );
    const alive = () =>
      void this.bus
        .publish(this.subjects.gatewayAlive(this.instance), { gateway: this.instance, runners: this.connections.size } satisfies GatewayAliveMessage)
        .catch(() => undefined);
    alive();
    this.timers = [
      setInterval(alive, Math.max(100, Math.floor(this.config.heartbeatTimeoutMs / 4))).unref(),
      setInterval(() => this.ping(), PING_MS).unref(),
    ];
  }

  /**
   * Before the HTTP server closes (it waits for every open connection, upgraded ones too): tell
   * runners the server is going away, so they reconnect elsewhere, and give them a moment.
   */
  async beforeApplicationShutdown(): Promise<void> {
    if (this.server !== null) unrouteSockets(this.server);
    for (const timer of this.timers) clearInterval(timer);
    await Promise.all(this.subscriptions.map((s) => s.unsubscribe()));
    const connections = [...this.connections.values()];
    const closed = connections.map(
      ({ socket }) => new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.close(1001, 'server shutting down');
        setTimeout(() => {
          socket.terminate();
          resolve();
        }, CLOSE_GRACE_MS).unref();
      }),
    );
    await Promise.all(closed);
    // The closes (recording the disconnects, after each socket's last frame) run while the
    // database is still open.
    await Promise.all(connections.map((connection) => connection.handled()));
  }

  /** Runners connected here now. */
  get connected(): number {
    return this.connections.size;
  }

  /** REST long-poll claims waiting for work here now. */
  get parkedClaims(): number {
    return this.dispatcher.parkedClaims;
  }

  // --- connect and disconnect ----------------------------------------------------------

  /** A runner token, within its connect limit: the runner it names. Anything else is refused. */
  private async admit(request: IncomingMessage): Promise<string> {
    const principal = await this.authenticator.authenticate(request.headers.authorization, request.socket.remoteAddress ?? 'unknown');
    if (principal.kind !== 'runner') throw new ForbiddenError('only runner tokens may connect here');
    const { runnerId } = principal;
    if (!this.connectLimiter.take(runnerId)) {
      this.metrics.rateLimited.inc({ limit: 'runner_connect' });
      throw new RateLimitedError('too many connection attempts; back off and retry', this.connectLimiter.retryAfterSeconds(runnerId));
    }
    return runnerId;
  }

  handleConnection(socket: WebSocket, _request: IncomingMessage, runnerId: string): void {
    const rate = this.config.socketMessagesPerSecond;
    const now = () => this.clock.now().getTime();
    const connection = new RunnerConnection(socket, runnerId, new TokenBucket(rate, rate * 2, now), now());
    this.bySocket.set(socket, connection);
    const previous = this.connections.get(connection.runnerId);
    previous?.socket.close(4000, 'replaced by a newer connection of this runner');
    this.connections.set(connection.runnerId, connection);
    this.metrics.connectedRunners.set(this.connections.size);
    void this.bus
      .publish(this.subjects.runnerControl(connection.runnerId), {
        runner: connection.runnerId,
        type: 'replaced',
        connection: connection.id,
        openedAt: connection.openedAt,
      } satisfies ControlMessage)
      .catch((error: unknown) => this.logger.warn(`could not announce connection: ${(error as Error).message}`));

    socket.on('pong', () => (connection.alive = true));
    socket.on('error', (error) => this.logger.debug(`runner ${connection.runnerId} socket error: ${error.message}`));
  }

  handleDisconnect(socket: WebSocket): void {
    const connection = this.bySocket.get(socket);
    if (connection === undefined) return;
    this.dispatcher.leave(connection);
    connection.cancelDeferredClaim();
    if (this.connections.get(connection.runnerId) === connection) this.connections.delete(connection.runnerId);
    this.metrics.connectedRunners.set(this.connections.size);
    // The adapter calls this after the socket's last frame was handled, so a `completed` sent
    // just before closing still counts.
    connection.close(async () => {
      if (connection.hello !== null) await this.messages.disconnected(connection);
    });
  }

  // --- frames ----------------------------------------------------------------------------

  /**
   * Reads a frame as it arrives. Every frame takes a token of the socket's bucket; a frame that
   * moves a job on (a `ready` that got a job, a first `running`, a report) gives it back once
   * handled, so the limit falls on frames that achieve nothing (floods of heartbeats, repeats,
   * refused messages) and never on a runner working through short jobs. A frame over the limit,
   * or one that is not a runner message, is answered with its `error` frame here and goes no
   * further; a runner message goes to the gateway's handler.
   */
  private read(socket: WebSocket, data: RawData, isBinary: boolean): RoutedMessage | null {
    const connection = this.bySocket.get(socket);
    if (connection === undefined) return null;
    if (!connection.messages.take()) {
      this.metrics.rateLimited.inc({ limit: 'socket_messages' });
      connection.send(errorFrame(new RateLimitedError('too many messages; slow down'), undefined));
      return null;
    }
    let message: RunnerMessage;
    try {
      if (isBinary) throw new BadMessage('frames are JSON text');
      message = parseRunnerMessage(rawText(data));
    } catch (error) {
      const bad = error instanceof BadMessage ? error : new BadMessage((error as Error).message);
      connection.send(errorFrame(bad, bad.job));
      return null;
    }
    return { event: RUNNER_MESSAGE, data: message };
  }

  /**
   * A runner message, of any type, decided by RunnerMessages by its type. The adapter calls this
   * one frame after the other, each once the one before has been handled, in the order they came;
   * what it throws (a refusal) ErrorFrameFilter answers with an `error` frame.
   */
  @SubscribeMessage(RUNNER_MESSAGE)
  message(socket: WebSocket, message: RunnerMessage): Promise<void> {
    const connection = this.bySocket.get(socket);
    if (connection === undefined) throw new Error('a message on a socket the gateway does not know');
    return this.messages.handle(connection, message);
  }

  // --- pushes from other instances -------------------------------------------------------

  private onCancel(message: CancelMessage): void {
    const connection = this.connections.get(message.runner);
    if (connection === undefined) return;
    connection.release(message.job);
    connection.send({ type: 'cancel', job: message.job, attempt: message.attempt, reason: message.reason });
  }

  private onControl(message: ControlMessage): void {
    const connection = this.connections.get(message.runner);
    if (connection === undefined) return;
    if (message.type === 'revoked') connection.socket.close(1008, 'the runner token was revoked');
    else if (message.type === 'replaced' && message.connection !== connection.id && connection.openedAt <= (message.openedAt ?? Infinity)) {
      // Only an older connection gives way: a late message must not close a newer one.
      connection.socket.close(4000, 'replaced by a newer connection of this runner');
    } else if (message.type === 'lost' && message.connection === connection.id) {
      // This gateway went unheard long enough to be given up for lost: reconnect and say hello again.
      connection.socket.close(4001, 'the connection was recorded as lost; reconnect');
    }
  }

  /** Drops sockets whose peer vanished without closing (no pong since the last ping). */
  private ping(): void {
    for (const connection of this.connections.values()) {
      if (!connection.alive) {
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}
