import type { Logger } from '@nestjs/common';

/** A message as a subscriber gets it: the subject it was published on and its payload, JSON-decoded. */
export interface BusMessage {
  subject: string;
  data: unknown;
}

export type BusHandler = (message: BusMessage) => void | Promise<void>;

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group instead of to all of them. */
  queue?: string;
}

export interface Subscription {
  /** No message is handed to the handler once this is called. */
  unsubscribe(): Promise<void>;
}

/**
 * Core messaging between Runway's roles (the API and the runner gateways): dispatch hints,
 * cancel and control requests, heartbeats. At most once: a message published while nobody
 * listens, or lost with a connection, is gone, and whatever depends on it recovers from the log.
 *
 * Subjects use NATS wildcards: `*` matches one token, `>` the rest. Handlers run as messages
 * arrive (not one after the other); a handler that throws is logged and the bus goes on, and a
 * payload that is not JSON is dropped with a warning.
 *
 * Also the Nest injection token: NatsBus with NATS_URL, LocalBus (one process) without.
 */
export abstract class Bus {
  /** Publishes `payload`: bytes as they are (JSON expected), anything else JSON-encoded. */
  abstract publish(subject: string, payload: Uint8Array | object): Promise<void>;

  abstract subscribe(subject: string, handler: BusHandler, options?: SubscribeOptions): Subscription;

  /** Resolves once what was sent before has reached the other side (for NATS, the server). */
  abstract flush(): Promise<void>;

  abstract close(): Promise<void>;

  /**
   * Calls `listener` each time the connection to the other processes is lost (false) and back
   * (true); returns what stops it. One process (LocalBus) is never disconnected: never called.
   */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    void listener;
    return () => undefined;
  }
}

/** Publishing or subscribing on a bus that was closed. */
export class BusClosedError extends Error {
  readonly code = 'bus_closed';
  constructor() {
    super('the message bus is closed');
    this.name = 'BusClosedError';
  }
}

/** The bus refused a message (too large for the server, connection failure, ...). */
export class BusPublishError extends Error {
  readonly code = 'bus_publish_failed';
  constructor(
    readonly subject: string,
    options: { cause: unknown },
  ) {
    super(`could not publish to ${subject}: ${options.cause instanceof Error ? options.cause.message : String(options.cause)}`, options);
    this.name = 'BusPublishError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The bytes of a payload: bytes as given, anything else as JSON. */
export function encodePayload(payload: Uint8Array | object): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  const json = JSON.stringify(payload);
  if (json === undefined) throw new TypeError('the payload cannot be encoded as JSON');
  return encoder.encode(json);
}

/**
 * Decodes a message and runs the handler on it. A payload that is not UTF-8 JSON is dropped with
 * a warning; a handler that throws or rejects is logged. Neither reaches the caller.
 */
export function deliver(logger: Logger, handler: BusHandler, subject: string, bytes: Uint8Array): void {
  let data: unknown;
  try {
    data = JSON.parse(decoder.decode(bytes));
  } catch {
    logger.warn(`dropped a malformed message on ${subject} (${bytes.length} bytes, not JSON)`);
    return;
  }
  const failed = (error: unknown) =>
    logger.error(`a handler for ${subject} failed: ${error instanceof Error ? error.message : String(error)}`, error instanceof Error ? error.stack : undefined);
  try {
    void Promise.resolve(handler({ subject, data })).catch(failed);
  } catch (error) {
    failed(error);
  }
}
