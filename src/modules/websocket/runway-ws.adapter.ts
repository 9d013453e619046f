import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { INestApplicationContext } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import type { MessageMappingProperties } from '@nestjs/websockets';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { DomainError, retryAfterOf } from '../../common/errors';
import { urlProblem } from '../http/edge';
import { problem, statusOf, writeProblem } from '../http/problem';

/**
 * What a gateway tells the adapter about its sockets, in `afterInit` with `routeSockets`: how an
 * upgrade is let in, and how a frame is read on arrival.
 */
export interface SocketRoute<Context> {
  /**
   * Decides an upgrade request: resolves to what the gateway needs of the socket (handed to its
   * `handleConnection` after the request), or throws a DomainError, which refuses the upgrade with
   * problem+json, the code's status and `Retry-After` where the error says when.
   */
  admit(request: IncomingMessage): Promise<Context>;
  /**
   * Reads one frame as it arrives: the message and the event whose `@SubscribeMessage` handler
   * takes it, or null when the frame was answered (or the socket closed) here instead.
   */
  read(socket: WebSocket, data: RawData, isBinary: boolean): RoutedMessage | null;
}

export interface RoutedMessage {
  /** The handler's `@SubscribeMessage` name. */
  event: string;
  data: unknown;
}

const routes = new WeakMap<WebSocketServer, SocketRoute<unknown>>();

/** Opens a gateway's path: upgrades to it are admitted and its frames read by `route`. */
export function routeSockets<Context>(server: WebSocketServer, route: SocketRoute<Context>): void {
  routes.set(server, route as SocketRoute<unknown>);
}

/** Closes a gateway's path (at shutdown): upgrades to it are answered 404 from now on. */
export function unrouteSockets(server: WebSocketServer): void {
  routes.delete(server);
}

export interface RunwayWsAdapterOptions {
  /** The largest frame a socket takes (1009 past it) when its gateway names no `maxPayload`. */
  maxPayload: number;
}

/** A socket's frames in flight to their handlers. */
interface SocketState {
  readonly socket: WebSocket;
  readonly route: SocketRoute<unknown>;
  /** Settles once the last frame's handler has returned: the next one waits for it. */
  last: Promise<void>;
}

const SETTLED = Promise.resolve();

/**
 * Nest's `ws` adapter with Runway's edge. One listener takes every upgrade on the application's
 * HTTP server: a URL that is not storable text is 400 and a path no gateway serves 404, both
 * problem+json; the gateway's route then admits or refuses the request (authentication, connect
 * limits) before the socket exists, and what it admitted reaches `handleConnection`. The route
 * reads each frame on arrival (its rate limit and its refusals answer at once) and names the
 * event it is for; that event's handler is called one frame after the other, in the order they
 * came, and the socket's disconnect after its frames. A handler's non-empty result is sent as JSON;
 * what it throws goes to the gateway's exception filter, as with any Nest handler.
 */
export class RunwayWsAdapter extends WsAdapter {
  private readonly servers = new Map<string, WebSocketServer>();
  /**
   * The socket being connected: Nest binds its handlers and its disconnect while the adapter
   * emits `connection`, so the state is handed over here rather than kept in a map per socket.
   */
  private connecting: SocketState | null = null;
  private listening: Server | null = null;

  constructor(
    app: INestApplicationContext,
    private readonly options: RunwayWsAdapterOptions,
  ) {
    super(app);
  }

  /** A server for a gateway's path, on the application's HTTP server (no port of its own). */
  override create(port: number, options: Record<string, unknown> & { namespace?: string; server?: unknown; path?: string } = {}): WebSocketServer {
    const { path, namespace, server: _server, ...wsOptions } = options;
    if (port !== 0 || typeof path !== 'string' || namespace !== undefined) {
      throw new Error('a Runway gateway has a path and no port or namespace: it shares the HTTP server');
    }
    if (this.servers.has(path)) throw new Error(`two gateways at ${path}`);
    const server = new WebSocketServer({ maxPayload: this.options.maxPayload, perMessageDeflate: false, ...wsOptions, noServer: true });
    this.servers.set(path, server);
    if (this.listening === null) {
      this.listening = this.httpServer as Server;
      this.listening.on('upgrade', this.onUpgrade);
    }
    return server;
  }

  override bindMessageHandlers(client: WebSocket, handlers: MessageMappingProperties[]): void {
    const state = this.connecting;
    if (state?.socket !== client) return;
    client.on('message', (data: RawData, isBinary: boolean) => {
      const message = state.route.read(client, data, isBinary);
      if (message === null) return;
      const handler = handlers.find((h) => h.message === message.event);
      if (handler === undefined) return;
      state.last = state.last.then(() => this.handle(client, handler, message));
    });
  }

  override bindClientDisconnect(client: WebSocket, callback: (...args: unknown[]) => void): void {
    const state = this.connecting?.socket === client ? this.connecting : null;
    // `close` comes once: `on`, without the wrapper `once` keeps per socket.
    client.on('close', (...args: unknown[]) => void (state?.last ?? SETTLED).then(() => callback(...args)));
  }

  /** The gateways closed their sockets themselves (with their close codes) before this. */
  override async close(server: WebSocketServer): Promise<void> {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  override async dispose(): Promise<void> {
    this.listening?.off('upgrade', this.onUpgrade);
    this.listening = null;
    this.servers.clear();
  }

  private async handle(client: WebSocket, handler: MessageMappingProperties, message: RoutedMessage): Promise<void> {
    try {
      const result: unknown = await handler.callback(message.data, message.event);
      if (result !== undefined && result !== null && client.readyState === client.OPEN) client.send(JSON.stringify(result));
    } catch (error) {
      // Only a filter that throws again gets here; the next frames go on.
      this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    }
  }

  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    // Query parameters (a project, a job) are looked up as text: held to what text can hold.
    const unreadable = urlProblem(request.url ?? '/');
    if (unreadable !== null) return refuseUpgrade(socket, 400, 'validation_failed', unreadable.message);
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const server = this.servers.get(path);
    const route = server === undefined ? undefined : routes.get(server);
    if (server === undefined || route === undefined) return refuseUpgrade(socket, 404, 'not_found', `no WebSocket endpoint at ${path}`);
    void this.admit(server, route, request, socket, head).catch((error: unknown) => {
      this.logger.error(`upgrade failed: ${(error as Error).stack ?? String(error)}`);
      refuseUpgrade(socket, 500, 'internal_error', 'the server could not take the connection');
    });
  };

  private async admit(server: WebSocketServer, route: SocketRoute<unknown>, request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    let context: unknown;
    try {
      context = await route.admit(request);
    } catch (error) {
      if (error instanceof DomainError) return refuseUpgradeFor(socket, error);
      throw error;
    }
    server.handleUpgrade(request, socket, head, (ws) => {
      this.connecting = { socket: ws, route, last: SETTLED };
      try {
        server.emit('connection', ws, request, context);
      } finally {
        this.connecting = null;
      }
    });
  }
}

/** Answers an upgrade request with a problem+json HTTP response and closes the socket. */
function refuseUpgrade(socket: Duplex, status: number, code: string, detail: string, retryAfterSeconds?: number): void {
  writeProblem(socket, problem(code, detail, status), retryAfterSeconds);
}

/** Refuses an upgrade for a domain error, with its code's status (and `Retry-After` where it says when). */
function refuseUpgradeFor(socket: Duplex, error: DomainError): void {
  refuseUpgrade(socket, statusOf(error.code), error.code, error.message, retryAfterOf(error));
}
