import WebSocket, { type RawData } from 'ws';
import type { RunnerMessage } from '../modules/gateway/protocol';
import { FrameError, type ServerFrame, parseServerFrame } from './wire';

/** The runner endpoint under a server's base URL: http(s) becomes ws(s). */
export const CONNECT_PATH = '/v1/runner/connect';

export class UrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UrlError';
  }
}

/** `http://host:8080` -> `ws://host:8080/v1/runner/connect`; a path prefix (a proxy) is kept. */
export function connectUrl(base: string): string {
  let url: URL;
  try {
    url = new URL(base.trim());
  } catch {
    throw new UrlError(`${JSON.stringify(base)} is not a URL`);
  }
  const schemes: Record<string, string> = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' };
  const scheme = schemes[url.protocol];
  if (scheme === undefined) throw new UrlError(`${JSON.stringify(base)}: expected an http, https, ws or wss URL`);
  if (url.username !== '' || url.password !== '') throw new UrlError(`${url.host}: credentials do not go in the URL; use --token`);
  const path = url.pathname.replace(/\/+$/, '');
  return `${scheme}//${url.host}${path.endsWith(CONNECT_PATH) ? path : path + CONNECT_PATH}`;
}

/** How a connection ended. */
export type Ending =
  | { kind: 'closed'; code: number; reason: string }
  /** The upgrade was answered with an HTTP status (401, 403, 429, 503...). */
  | { kind: 'refused'; status: number; detail: string }
  /** Never opened, or broke: DNS, refused TCP connection, TLS, timeout. */
  | { kind: 'failed'; error: string };

export interface ConnectionHandlers {
  onOpen(): void;
  onFrame(frame: ServerFrame): void;
  onBadFrame(error: FrameError): void;
  /** Any sign of life from the server: a frame, a ping, a pong. */
  onHeard(): void;
  onEnd(ending: Ending): void;
}

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** What the server's frames may weigh (a job is at most 256 KiB; this leaves room for growth). */
const MAX_INCOMING_BYTES = 64 * 1024 * 1024;

/** One WebSocket to one server: opens, parses, sends, and reports its end exactly once. */
export class Connection {
  private readonly socket: WebSocket;
  private ended = false;
  private opened = false;
  private refusal: Ending | null = null;
  private lastError: string | null = null;

  constructor(
    readonly url: string,
    token: string,
    private readonly handlers: ConnectionHandlers,
  ) {
    this.socket = new WebSocket(url, {
      headers: { Authorization: `Bearer ${token}` },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      maxPayload: MAX_INCOMING_BYTES,
      perMessageDeflate: false,
      followRedirects: false,
    });
    this.socket.on('open', () => {
      this.opened = true;
      handlers.onOpen();
    });
    this.socket.on('message', (data: RawData, isBinary: boolean) => {
      handlers.onHeard();
      if (isBinary) return handlers.onBadFrame(new FrameError('binary frame'));
      try {
        handlers.onFrame(parseServerFrame(text(data)));
      } catch (error) {
        if (error instanceof FrameError) handlers.onBadFrame(error);
        else throw error;
      }
    });
    this.socket.on('ping', () => handlers.onHeard());
    this.socket.on('pong', () => handlers.onHeard());
    this.socket.on('unexpected-response', (_request, response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < 4096) body += chunk;
      });
      const refuse = () => {
        this.refusal ??= { kind: 'refused', status: response.statusCode ?? 0, detail: problemDetail(body) };
        this.socket.terminate();
      };
      response.once('end', refuse);
      response.once('error', refuse);
      response.once('close', refuse);
    });
    this.socket.on('error', (error) => {
      this.lastError ??= error.message;
    });
    this.socket.on('close', (code, reason) => {
      if (this.opened) this.end({ kind: 'closed', code, reason: reason.toString() || this.lastError || '' });
      else this.end(this.refusal ?? { kind: 'failed', error: this.lastError ?? `closed (${code}) before it opened` });
    });
  }

  get open(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** Sends a frame if the socket is open; false if it is not (the caller keeps what must arrive). */
  send(message: RunnerMessage): boolean {
    if (!this.open) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  ping(): void {
    if (this.open) this.socket.ping();
  }

  close(code = 1000, reason = 'runner stopping'): void {
    if (this.socket.readyState === WebSocket.CONNECTING) this.socket.terminate();
    else this.socket.close(code, reason);
  }

  /** Drops the connection at once (the server went silent). */
  terminate(): void {
    this.socket.terminate();
  }

  private end(ending: Ending): void {
    if (this.ended) return;
    this.ended = true;
    this.handlers.onEnd(ending);
  }
}

function text(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

/** The `detail` of a problem+json answer, or its first line. */
function problemDetail(body: string): string {
  try {
    const parsed = JSON.parse(body) as { detail?: unknown; code?: unknown };
    if (typeof parsed.detail === 'string') return typeof parsed.code === 'string' ? `${parsed.code}: ${parsed.detail}` : parsed.detail;
  } catch {
    // not JSON
  }
  return body.split('\n')[0].slice(0, 200);
}
