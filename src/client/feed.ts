import WebSocket from 'ws';
import { Backoff } from '../common/backoff';
import { type EventEnvelope, RunwayApiError, RunwayConnectionError, describeNetworkError } from './api';

export interface FeedOptions {
  /** `ws(s)://.../v1/events?job=...` without `after`. */
  url: URL;
  headers: Record<string, string>;
  /** Start after this global position (0: from the start of the log). */
  after: number;
  /** For error messages: the server's base URL. */
  serverUrl: string;
  /** Each envelope once, in order, with the frame's text. */
  onEvent(envelope: EventEnvelope, text: string): void;
  /** Connection changes, for the status line: null once connected, else why it is reconnecting. */
  onConnection?(problem: string | null): void;
  /** Give up when no connection could be made for this long (default 60 s). */
  giveUpAfterMs?: number;
  /** Ping this often to notice a silent drop (default 15 s). */
  pingIntervalMs?: number;
}

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5_000;

/**
 * `GET /v1/events` as a client: one envelope per frame. When the socket drops it reconnects
 * with `after=<the last global position seen>`, so nothing is missed or seen twice; it gives up
 * (`done` rejects with RunwayConnectionError) after `giveUpAfterMs` without a connection, and at
 * once (RunwayApiError) when the server refuses the upgrade with a problem (401, 403, 404, 400).
 */
export class EventFeed {
  private socket: WebSocket | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  /** Reconnect delays, from FIRST_RETRY_MS up to MAX_RETRY_MS; starts again once the server answers. */
  private readonly backoff = new Backoff(FIRST_RETRY_MS, MAX_RETRY_MS);
  private disconnectedSince: number | null = null;
  private closed = false;
  private settle!: { resolve: () => void; reject: (error: Error) => void };
  /** Settles when `close()` is called (resolves) or the feed gives up (rejects). */
  readonly done: Promise<void>;
  /** The global position of the last envelope delivered. */
  last: number;

  constructor(private readonly options: FeedOptions) {
    this.last = options.after;
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined);
  }

  start(): void {
    this.connect();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    this.socket?.terminate();
    this.socket = null;
    this.settle.resolve();
  }

  private connect(): void {
    if (this.closed) return;
    const url = new URL(this.options.url);
    url.searchParams.set('after', String(this.last));
    const socket = new WebSocket(url, { headers: this.options.headers, perMessageDeflate: false });
    this.socket = socket;
    let ended = false;
    let alive = true;
    // Every way a connection ends comes here once: a refusal is final, anything else is retried.
    const end = (outcome: { retry: string } | { fatal: Error }) => {
      if (ended) return;
      ended = true;
      if (this.pingTimer !== null) clearInterval(this.pingTimer);
      this.pingTimer = null;
      socket.terminate();
      if (this.closed) return;
      if ('fatal' in outcome) return this.fail(outcome.fatal);
      this.retry(outcome.retry);
    };

    socket.on('open', () => {
      // Connected; the backoff starts over only once the connection has proved itself (a frame, a pong).
      this.disconnectedSince = null;
      this.options.onConnection?.(null);
      this.pingTimer = setInterval(() => {
        if (!alive) return end({ retry: 'the server stopped answering' });
        alive = false;
        socket.ping();
      }, this.options.pingIntervalMs ?? 15_000);
    });
    socket.on('pong', () => {
      alive = true;
      this.backoff.reset();
    });
    socket.on('message', (data, isBinary) => {
      alive = true;
      this.backoff.reset();
      if (isBinary || this.closed) return;
      const text = data.toString();
      let envelope: EventEnvelope;
      try {
        envelope = JSON.parse(text) as EventEnvelope;
      } catch {
        return end({ fatal: new RunwayApiError(0, 'bad_message', 'the events feed sent a frame that is not JSON', null) });
      }
      // After a reconnect the server starts after `last`; this only guards against a repeat.
      if (typeof envelope.globalPosition !== 'number' || envelope.globalPosition <= this.last) return;
      this.last = envelope.globalPosition;
      this.options.onEvent(envelope, text);
    });
    socket.on('unexpected-response', (request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < 65_536) body += chunk;
      });
      response.on('end', () => {
        const error = RunwayApiError.fromAnswer(response.statusCode ?? 0, response.headers['content-type'] ?? null, body, response.statusMessage);
        const status = response.statusCode ?? 0;
        // A refusal (bad credential, no such job) will not change by retrying; an unavailable server may.
        end(status >= 400 && status < 500 && status !== 408 && status !== 429 ? { fatal: error } : { retry: error.message });
      });
      response.on('error', () => end({ retry: `HTTP ${response.statusCode}` }));
      request.on('error', () => undefined);
    });
    socket.on('error', (error) => end({ retry: describeNetworkError(error) }));
    socket.on('close', (code, reason) => end({ retry: `the events feed closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})` }));
  }

  private retry(reason: string): void {
    const now = Date.now();
    this.disconnectedSince ??= now;
    if (now - this.disconnectedSince >= (this.options.giveUpAfterMs ?? 60_000)) {
      return this.fail(new RunwayConnectionError(this.options.serverUrl, `lost the events feed: ${reason}`));
    }
    this.options.onConnection?.(reason);
    const delay = this.backoff.next();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimers();
    this.socket = null;
    this.settle.reject(error);
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.retryTimer = null;
    this.pingTimer = null;
  }
}
