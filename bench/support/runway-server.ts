import { type ChildProcess, spawn } from 'node:child_process';
import { get } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { killOnExit } from './child';
import { sleep } from './stats';

/** The repository root (this file runs from dist-bench/support). */
export const ROOT = join(__dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'runway.js');

/** The operator credential every benchmark server is started with. */
export const BENCH_ADMIN_TOKEN = 'runway-bench-admin-token-not-a-secret';

/** Runway's own settings are given per start, never inherited from whoever runs the benchmark. */
const CONFIG_VARIABLE = /^(RUNWAY_|DATABASE_URL$|NATS_URL$|PORT$|HOST$)/;

export async function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** `--roles` value; all roles when absent. */
  roles?: string;
  env: Record<string, string>;
  /** Write a V8 CPU profile of the server into this directory when it exits. */
  cpuProfDir?: string;
  /** More flags for node, before the script (e.g. `--inspect=127.0.0.1:PORT`). */
  nodeArgs?: string[];
  /** Another checkout of Runway, built, whose server to start instead of this one's (a baseline). */
  root?: string;
}

/** One `node bin/runway.js serve` child process. */
export class RunwayServer {
  private output = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
    readonly label: string,
  ) {
    const keep = (chunk: string) => {
      // Only the tail matters for a failure message.
      this.output = (this.output + chunk).slice(-20_000);
    };
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    this.exited = new Promise((resolve) =>
      child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve();
      }),
    );
  }

  static async start(label: string, options: ServerOptions): Promise<RunwayServer> {
    const port = await freePort();
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) if (!CONFIG_VARIABLE.test(name) && value !== undefined) env[name] = value;
    Object.assign(env, { PORT: String(port), HOST: '127.0.0.1', RUNWAY_LOG_LEVEL: 'warn', NO_COLOR: '1' }, options.env);
    const nodeFlags = options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`, `--cpu-prof-name=${label}.cpuprofile`];
    const root = options.root ?? ROOT;
    const bin = options.root === undefined ? BIN : join(options.root, 'bin', 'runway.js');
    const args = [...nodeFlags, ...(options.nodeArgs ?? []), bin, 'serve', ...(options.roles === undefined ? [] : ['--roles', options.roles])];
    const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const server = new RunwayServer(child, `http://127.0.0.1:${port}`, label);
    killOnExit(child);
    return server;
  }

  /** Polls GET /readyz until it answers 200. */
  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exitInfo !== null) throw new Error(`${this.label} exited before it was ready:\n${this.output}`);
      const status = await readyz(this.url).catch(() => 0);
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`${this.label} was not ready within ${timeoutMs} ms:\n${this.output}`);
      await sleep(100);
    }
  }

  /** The server's process id (for /proc). */
  get pid(): number {
    return this.child.pid as number;
  }

  /** What it printed last (warnings and errors only, at RUNWAY_LOG_LEVEL=warn). */
  get log(): string {
    return this.output;
  }

  /** SIGTERM (a graceful stop, which also writes the CPU profile), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (this.exitInfo !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function readyz(url: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const req = get(`${url}/readyz`, { timeout: 2_000, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
  });
}
