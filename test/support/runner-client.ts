import WebSocket from 'ws';

export type Frame = { type: string } & Record<string, unknown>;

/**
 * A runner's side of the WebSocket, for tests: sends frames, and hands out the server's frames
 * in order (`next`), failing with what arrived if the expected one does not come in time.
 */
export class TestRunner {
  readonly received: Frame[] = [];
  private readonly waiters: { type?: string; resolve: (frame: Frame) => void }[] = [];
  private cursor = 0;
  closed: { code: number; reason: string } | null = null;
  private readonly closedPromise: Promise<{ code: number; reason: string }>;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Frame;
      this.received.push(frame);
      this.deliver();
    });
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        resolve(this.closed);
      }),
    );
  }

  /** Connects with `token`; rejects with the HTTP status if the upgrade is refused. */
  static connect(baseUrl: string, token: string | null, options: { maxPayload?: number } = {}): Promise<TestRunner> {
    const url = `${baseUrl.replace(/^http/, 'ws')}/v1/runner/connect`;
    const socket = new WebSocket(url, {
      headers: token === null ? {} : { Authorization: `Bearer ${token}` },
      maxPayload: options.maxPayload,
    });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new TestRunner(socket)));
      socket.once('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk.toString()));
        response.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${response.statusCode} ${body}`), { status: response.statusCode, body })));
      });
      socket.once('error', reject);
    });
  }

  /** Connects and says hello; resolves with the welcome. */
  static async hello(baseUrl: string, token: string, fingerprint: Record<string, unknown> = { cpuModel: 'Test CPU', cores: 4 }): Promise<TestRunner> {
    const runner = await TestRunner.connect(baseUrl, token);
    runner.send({ type: 'hello', version: 'test-1', capacity: 1, fingerprint });
    await runner.next('welcome');
    return runner;
  }

  send(frame: Record<string, unknown> | string): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The next frame not yet taken (of `type`, skipping none: a different type fails). */
  next(type?: string, timeoutMs = 5_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(new Error(`no ${type ?? 'frame'} within ${timeoutMs} ms; received ${JSON.stringify(this.received.slice(this.cursor))}`));
      }, timeoutMs);
      const waiter = {
        type,
        resolve: (frame: Frame) => {
          clearTimeout(timer);
          if (type !== undefined && frame.type !== type) reject(new Error(`expected ${type}, got ${JSON.stringify(frame)}`));
          else resolve(frame);
        },
      };
      this.waiters.push(waiter);
      this.deliver();
    });
  }

  /** Sends a frame and returns the server's next frame. */
  async request(frame: Record<string, unknown>, type?: string): Promise<Frame> {
    this.send(frame);
    return this.next(type);
  }

  /** Resolves once the socket closed, with the close code. */
  whenClosed(): Promise<{ code: number; reason: string }> {
    return this.closedPromise;
  }

  async close(): Promise<void> {
    if (this.closed === null) {
      this.socket.close();
      await this.closedPromise;
    }
  }

  private deliver(): void {
    while (this.waiters.length > 0 && this.cursor < this.received.length) {
      this.waiters.shift()!.resolve(this.received[this.cursor++]);
    }
  }
}
