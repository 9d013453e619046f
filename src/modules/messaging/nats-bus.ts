import { Logger } from '@nestjs/common';
import { connect, type NatsConnection, type Status } from '@nats-io/transport-node';
import { Bus, BusClosedError, type BusHandler, BusPublishError, deliver, encodePayload, type SubscribeOptions, type Subscription } from './bus';
import { assertQueue, assertSubject } from './subjects';

export interface NatsBusOptions {
  /** Pause between reconnect attempts to one server. */
  reconnectTimeWaitMs?: number;
}

/** A publish waiting for the end of this turn of the event loop (see `NatsBus.publish`). */
interface PendingPublish {
  subject: string;
  bytes: Uint8Array;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** How long `close` lets a drain run (it waits for the server) before it just closes. */
const DRAIN_LIMIT_MS = 2_000;

/**
 * The bus on core NATS: one connection that reconnects forever, logging each disconnect and
 * reconnect. Messages published while disconnected are buffered by the client and sent after
 * the reconnect (up to its buffer), which suits hints and liveness signals.
 *
 * `connection` is there for JetStream (the relay), which shares it.
 */
export class NatsBus extends Bus {
  private readonly logger = new Logger(NatsBus.name);
  private closing: Promise<void> | null = null;
  private readonly connectionListeners = new Set<(connected: boolean) => void>();
  /** Publishes of this turn of the event loop, in the order they were made. */
  private pending: PendingPublish[] = [];

  private constructor(readonly connection: NatsConnection) {
    super();
    this.watch().catch((error: unknown) => this.logger.error(`NATS status feed failed: ${String(error)}`));
  }

  /** Connects to the first answering server of `servers`; throws if none answers now. */
  static async connect(servers: readonly string[], name: string, options: NatsBusOptions = {}): Promise<NatsBus> {
    const connection = await connect({
      servers: [...servers],
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: options.reconnectTimeWaitMs ?? 1_000,
    });
    const bus = new NatsBus(connection);
    bus.logger.log(`connected to NATS at ${connection.getServer()}`);
    return bus;
  }

  /**
   * Publishes at the end of this turn of the event loop (`setImmediate`), together with every
   * other publish of the turn, in order: the client writes what was published in one microtask
   * with one write to the socket, so a turn that handled many runners' frames (heartbeats from
   * many sockets, each its own I/O callback) costs one write instead of one per frame. The
   * heartbeat benchmark measured one write per heartbeat as a tenth of the server's CPU. Resolves
   * once the message is with the client (it buffers while disconnected), as before.
   */
  async publish(subject: string, payload: Uint8Array | object): Promise<void> {
    assertSubject(subject, { wildcards: false });
    const bytes = encodePayload(payload);
    if (this.closing !== null || this.connection.isClosed()) throw new BusClosedError();
    return new Promise<void>((resolve, reject) => {
      if (this.pending.push({ subject, bytes, resolve, reject }) === 1) setImmediate(this.publishPending);
    });
  }

  /** Hands this turn's publishes to the client, one after the other. */
  private readonly publishPending = (): void => {
    const batch = this.pending;
    this.pending = [];
    for (const message of batch) {
      try {
        this.connection.publish(message.subject, message.bytes);
        message.resolve();
      } catch (error) {
        message.reject(this.connection.isClosed() ? new BusClosedError() : new BusPublishError(message.subject, { cause: error }));
      }
    }
  };

  subscribe(subject: string, handler: BusHandler, options: SubscribeOptions = {}): Subscription {
    assertSubject(subject, { wildcards: true });
    if (options.queue !== undefined) assertQueue(options.queue);
    if (this.closing !== null || this.connection.isClosed()) throw new BusClosedError();
    let active = true;
    const subscription = this.connection.subscribe(subject, {
      queue: options.queue,
      callback: (error, message) => {
        if (error !== null) {
          this.logger.error(`subscription to ${subject} failed: ${error.message}`);
          return;
        }
        // The server may still send a few messages before it has processed the unsubscribe.
        if (active) deliver(this.logger, handler, message.subject, message.data);
      },
    });
    return {
      unsubscribe: async () => {
        if (!active) return;
        active = false;
        if (!subscription.isClosed()) subscription.unsubscribe();
      },
    };
  }

  async flush(): Promise<void> {
    if (this.closing !== null || this.connection.isClosed()) throw new BusClosedError();
    this.publishPending();
    await this.connection.flush();
  }

  override onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closing ??= this.shutdown();
    await this.closing;
  }

  private async shutdown(): Promise<void> {
    // What was published before the close still goes (or fails as closed).
    this.publishPending();
    if (this.connection.isClosed()) return;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_LIMIT_MS)));
    try {
      // Drain sends what is buffered; it waits for the server, so it is bounded.
      await Promise.race([this.connection.drain(), limit]);
    } catch {
      // Already closing or closed: close below settles it.
    } finally {
      clearTimeout(timer);
    }
    if (!this.connection.isClosed()) await this.connection.close();
  }

  private async watch(): Promise<void> {
    for await (const status of this.connection.status()) this.report(status);
  }

  private tell(connected: boolean): void {
    for (const listener of this.connectionListeners) {
      try {
        listener(connected);
      } catch (error) {
        this.logger.error(`a NATS connection listener failed: ${(error as Error).message}`);
      }
    }
  }

  private report(status: Status): void {
    switch (status.type) {
      case 'disconnect':
        this.logger.warn(`disconnected from NATS at ${status.server}; reconnecting`);
        this.tell(false);
        return;
      case 'reconnect':
        this.logger.log(`reconnected to NATS at ${status.server}`);
        this.tell(true);
        return;
      case 'error':
        this.logger.error(`NATS: ${status.error.message}`);
        return;
      case 'ldm':
        this.logger.warn(`NATS server ${status.server} is entering lame duck mode`);
        return;
      case 'staleConnection':
        this.logger.warn('NATS connection is stale; reconnecting');
        return;
      case 'slowConsumer':
        this.logger.warn(`slow consumer on ${status.sub.getSubject()}: ${status.pending} pending`);
        return;
      case 'reconnecting':
      case 'forceReconnect':
      case 'update':
      case 'ping':
      case 'close':
        return;
      default: {
        const _exhaustive: never = status;
        return _exhaustive;
      }
    }
  }
}
