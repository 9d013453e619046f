import WebSocket from 'ws';

export type Frame = { type: string } & Record<string, unknown>;

/** A job as the server pushes it in a `job` frame. */
export interface PushedJob {
  id: string;
  attempt: number;
  [field: string]: unknown;
}

/**
 * A runner's end of the WebSocket (docs/protocol.md, "The runner WebSocket"), kept light for benchmarks:
 * frames go to `onFrame` when it is set, otherwise they queue for `next()`.
 */
export class RunnerSocket {
  onFrame: ((frame: Frame) => void) | null = null;
  private readonly queued: Frame[] = [];
  private readonly waiters: { resolve: (frame: Frame) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }[] = [];
  closed = false;

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString('utf8')) as Frame;
      if (this.onFrame !== null) return this.onFrame(frame);
      const waiter = this.waiters.shift();
      if (waiter === undefined) this.queued.push(frame);
      else {
        clearTimeout(waiter.timer);
        waiter.resolve(frame);
      }
    });
    socket.on('close', () => {
      this.closed = true;
      for (const waiter of this.waiters.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error('the runner socket closed'));
      }
    });
  }

  static connect(baseUrl: string, token: string): Promise<RunnerSocket> {
    const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/runner/connect`, {
      headers: { Authorization: `Bearer ${token}` },
      perMessageDeflate: false,
    });
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new RunnerSocket(socket)));
      socket.once('unexpected-response', (_req, res) => reject(new Error(`runner upgrade refused: ${res.statusCode}`)));
      socket.once('error', reject);
    });
  }

  /** Connects and says hello; resolves once welcomed. */
  static async hello(baseUrl: string, token: string, name: string): Promise<RunnerSocket> {
    const runner = await RunnerSocket.connect(baseUrl, token);
    runner.send({ type: 'hello', version: 'bench-1', capacity: 1, fingerprint: { cpuModel: 'Bench CPU', cores: 1, host: name } });
    const welcome = await runner.next();
    if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(welcome)}`);
    return runner;
  }

  send(frame: Record<string, unknown>): void {
    this.socket.send(JSON.stringify(frame));
  }

  /** The next frame (of `type` when given: any other fails). */
  next(type?: string, timeoutMs = 30_000): Promise<Frame> {
    const check = (frame: Frame): Frame => {
      if (type !== undefined && frame.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(frame)}`);
      return frame;
    };
    const queued = this.queued.shift();
    if (queued !== undefined) return Promise.resolve().then(() => check(queued));
    if (this.closed) return Promise.reject(new Error('the runner socket is closed'));
    return new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.findIndex((w) => w.timer === timer);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(new Error(`no ${type ?? 'frame'} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push({
        resolve: (frame) => {
          try {
            resolve(check(frame));
          } catch (error) {
            reject(error as Error);
          }
        },
        reject,
        timer,
      });
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.close(1000, 'bench done');
      setTimeout(() => {
        this.socket.terminate();
        resolve();
      }, 2_000).unref();
    });
  }
}

/**
 * A welcomed runner for each of `tokens`, in their order, `batch` connecting at a time (every
 * hello is a write on the server). `first` numbers them (names `bench-<n>`) when a caller
 * connects a fleet in parts.
 */
export async function helloAll(baseUrl: string, tokens: readonly string[], batch = 8, first = 0): Promise<RunnerSocket[]> {
  const runners: RunnerSocket[] = [];
  for (let i = 0; i < tokens.length; i += batch) {
    const part = tokens.slice(i, i + batch);
    runners.push(...(await Promise.all(part.map((token, j) => RunnerSocket.hello(baseUrl, token, `bench-${first + i + j}`)))));
  }
  return runners;
}
