import { type ChildProcess, fork } from 'node:child_process';

const children = new Set<ChildProcess>();

/** Last resort when the benchmark exits without stopping a helper: no orphaned processes (one hook for all). */
export function killOnExit(child: ChildProcess): void {
  if (children.size === 0) process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export type ChildMessage = { type: string } & Record<string, unknown>;

/**
 * A benchmark helper process (forked with IPC): messages are awaited by type; a `failed` message
 * or an early exit rejects every wait.
 */
export class BenchChild {
  private readonly inbox: ChildMessage[] = [];
  private readonly waiters: { type: string; resolve: (m: ChildMessage) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly label: string,
  ) {
    child.on('message', (message: ChildMessage) => {
      if (message.type === 'failed') return this.fail(new Error(`${label}: ${String(message.message)}`));
      const index = this.waiters.findIndex((w) => w.type === message.type);
      if (index >= 0) this.waiters.splice(index, 1)[0].resolve(message);
      else this.inbox.push(message);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        if (code !== 0) this.fail(new Error(`${label} exited with ${code ?? signal}`));
        resolve();
      }),
    );
    killOnExit(child);
  }

  static start(file: string, argument: unknown, label: string, execArgv: string[] = []): BenchChild {
    const child = fork(file, [JSON.stringify(argument)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    return new BenchChild(child, label);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  send(message: ChildMessage): void {
    this.child.send(message);
  }

  /** The next message of `type` (one already received counts). */
  waitFor(type: string, timeoutMs: number): Promise<ChildMessage> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const index = this.inbox.findIndex((m) => m.type === type);
    if (index >= 0) return Promise.resolve(this.inbox.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      const waiter = {
        type,
        resolve: (m: ChildMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(new Error(`${this.label}: no ${type} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Forgets messages of `type` received and not yet waited for (stale ones from an earlier run). */
  discard(type: string): void {
    for (let i = this.inbox.length - 1; i >= 0; i--) if (this.inbox[i].type === type) this.inbox.splice(i, 1);
  }

  /** Asks it to stop (`{type: 'stop'}`), kills it after `graceMs`. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.failure ??= new Error(`${this.label} stopped`);
    this.child.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
