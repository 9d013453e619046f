import { Agent, request } from 'node:http';

export interface Answer<T = unknown> {
  status: number;
  body: T;
}

export interface CallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Fails unless the status is this one. */
  expect?: number;
  timeoutMs?: number;
  /**
   * Called with performance.now() right before the request is handed to the socket (headers and
   * body in one write, after the body is serialized): when the client sends it.
   */
  onSend?: (at: number) => void;
}

/**
 * JSON over plain node:http with keep-alive connections: cheaper per request than fetch, so the
 * submitting side takes as little of the machine's two cores as it can.
 */
export class HttpClient {
  private readonly agent: Agent;
  private readonly url: URL;

  constructor(
    readonly baseUrl: string,
    maxSockets = 64,
  ) {
    this.url = new URL(baseUrl);
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  call<T = unknown>(method: string, path: string, options: CallOptions = {}): Promise<Answer<T>> {
    const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
    const headers: Record<string, string | number> = { accept: 'application/json', ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = payload.length;
    }
    return new Promise<Answer<T>>((resolve, reject) => {
      const req = request(
        { agent: this.agent, host: this.url.hostname, port: this.url.port, method, path, headers, timeout: options.timeoutMs ?? 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (options.expect !== undefined && status !== options.expect) {
              reject(new Error(`${method} ${this.baseUrl}${path}: expected ${options.expect}, got ${status}: ${text.slice(0, 500)}`));
              return;
            }
            let body: unknown = text;
            try {
              body = text === '' ? null : JSON.parse(text);
            } catch {
              // not JSON: keep the text
            }
            resolve({ status, body: body as T });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${this.baseUrl}${path} timed out`)));
      req.on('error', reject);
      options.onSend?.(performance.now());
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
