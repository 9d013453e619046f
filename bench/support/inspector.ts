import { get } from 'node:http';
import WebSocket from 'ws';

/** What `process.memoryUsage()` answers inside the inspected process, bytes. */
export interface InspectedMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/**
 * A DevTools protocol session with a node process started with `--inspect=127.0.0.1:PORT`: lets
 * a benchmark force a full garbage collection in a server and read its heap, without any code in
 * the server for it. Only the calls the benchmarks need.
 */
export class InspectorSession {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as { id?: number; result?: unknown; error?: { message: string } };
      if (message.id === undefined) return; // an event; none is enabled
      const waiter = this.pending.get(message.id);
      this.pending.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(`inspector: ${message.error.message}`));
      else waiter?.resolve(message.result);
    });
    socket.on('close', () => {
      for (const waiter of this.pending.values()) waiter.reject(new Error('the inspector session closed'));
      this.pending.clear();
    });
  }

  /** Connects to the first target the inspector on `port` lists (a node process has one). */
  static async connect(port: number): Promise<InspectorSession> {
    const targets = JSON.parse(await getText(`http://127.0.0.1:${port}/json/list`)) as { webSocketDebuggerUrl?: string }[];
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error(`no inspector target on port ${port}`);
    const socket = new WebSocket(url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve());
      socket.once('error', reject);
    });
    return new InspectorSession(socket);
  }

  call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: (result) => resolve(result as T), reject });
      this.socket.send(JSON.stringify({ id, method, params }));
    });
  }

  /** A full, compacting garbage collection of the whole heap (what `global.gc()` does). */
  async collectGarbage(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
  }

  /** `process.memoryUsage()`, evaluated in the process. */
  async memoryUsage(): Promise<InspectedMemory> {
    const answer = await this.call<{ result: { value?: unknown }; exceptionDetails?: { text: string } }>('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    });
    if (answer.exceptionDetails !== undefined || typeof answer.result.value !== 'string') {
      throw new Error(`inspector: process.memoryUsage() failed: ${answer.exceptionDetails?.text ?? JSON.stringify(answer.result)}`);
    }
    return JSON.parse(answer.result.value) as InspectedMemory;
  }

  /** Starts the V8 CPU profiler (a sample every `intervalUs`). */
  async startProfiling(intervalUs = 1_000): Promise<void> {
    await this.call('Profiler.enable');
    await this.call('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.call('Profiler.start');
  }

  /** Stops the profiler; the profile, in the format of `node --cpu-prof` files (`.cpuprofile`). */
  async stopProfiling(): Promise<unknown> {
    const { profile } = await this.call<{ profile: unknown }>('Profiler.stop');
    return profile;
  }

  close(): void {
    this.socket.close();
  }
}

function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`${url} timed out`)));
    req.once('error', reject);
  });
}
