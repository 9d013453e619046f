import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import { type AgentTiming, RunnerAgent } from '../../src/agent/agent';
import { type Log, silentLog } from '../../src/agent/log';
import { type AgentFlags, resolveAgentOptions } from '../../src/agent/options';

/**
 * A scripted runner server for the agent's unit tests (src/agent/*.unit.spec.ts): a real
 * WebSocket server in the test's process that plays the server's side frame by frame. The
 * mirror of runner-client.ts, which plays the runner against the real server.
 */

export type Frame = { type: string } & Record<string, unknown>;
export const TOKEN = `runway_runner_${'cd'.repeat(32)}`;
/** The agent's delays shortened for tests; a test may shorten some further. */
export const FAST: Partial<AgentTiming> = { welcomeTimeoutMs: 2_000, reportRetryMs: 2_000, retrySoonMs: 50, readyRetryMs: 50, rateLimitedMs: 50, replacedMs: 50, shutdownReportMs: 2_000 };

/** One agent connection as the server sees it: the frames received, in order, and a way to answer. */
export class FakeConnection {
  readonly received: Frame[] = [];
  private cursor = 0;
  private readonly waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number }>;

  constructor(
    readonly socket: WebSocket,
    readonly request: IncomingMessage,
  ) {
    socket.on('message', (data) => {
      this.received.push(JSON.parse(data.toString()) as Frame);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => socket.on('close', (code) => resolve({ code })));
  }

  /** The next frame (skipping heartbeats unless asked for), failing if it is not of `type`. */
  async next(type?: string, timeoutMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.received.length) {
        const frame = this.received[this.cursor++];
        if (frame.type === 'heartbeat' && type !== 'heartbeat') continue;
        if (type !== undefined && frame.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(frame)}`);
        return frame;
      }
      if (Date.now() > deadline) throw new Error(`no ${type ?? 'frame'} within ${timeoutMs} ms; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  send(frame: Frame): void {
    this.socket.send(JSON.stringify(frame));
  }

  async welcome(extra: Record<string, unknown> = {}): Promise<Frame> {
    const hello = await this.next('hello');
    this.send({ type: 'welcome', runner: 'r-1', heartbeatIntervalMs: 50, heartbeatTimeoutMs: 5_000, ...extra });
    return hello;
  }

  ack(frame: Frame): void {
    this.send({ type: 'ack', job: frame.job, attempt: frame.attempt, of: frame.type });
  }
}

/** The server's side of the runner socket, scripted by the test; each upgrade becomes a FakeConnection. */
export class FakeServer {
  readonly connections: FakeConnection[] = [];
  /** Answers for the next upgrades: an HTTP status refuses, null accepts. */
  readonly refusals: (number | null)[] = [];
  private readonly wss = new WebSocketServer({ noServer: true });
  private constructor(
    private readonly http: Server,
    readonly url: string,
  ) {
    http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      const status = this.refusals.shift() ?? null;
      if (status !== null) {
        socket.end(`HTTP/1.1 ${status} No\r\nContent-Type: application/problem+json\r\nConnection: close\r\nContent-Length: 22\r\n\r\n{"detail":"refused!!"}`);
        return;
      }
      this.wss.handleUpgrade(request, socket, head, (ws) => this.connections.push(new FakeConnection(ws, request)));
    });
  }

  static async start(): Promise<FakeServer> {
    const http = createServer();
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    return new FakeServer(http, `http://127.0.0.1:${(http.address() as AddressInfo).port}`);
  }

  async connection(index: number, timeoutMs = 5_000): Promise<FakeConnection> {
    const deadline = Date.now() + timeoutMs;
    while (this.connections.length <= index) {
      if (Date.now() > deadline) throw new Error(`connection ${index} did not come within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return this.connections[index];
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    this.http.closeAllConnections();
    await new Promise((resolve) => this.http.close(resolve));
  }
}

export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export interface AgentUnderTest {
  agent: RunnerAgent;
  /** What `run()` resolves to: the agent's exit code. */
  exit: Promise<number>;
}

/**
 * The life of an agent spec file: a work folder, and after each test every agent it started
 * stopped (SIGTERM three times: the last kills a running job at once) and every server closed.
 * Call it at the top level of the file; its hooks run before the file's own.
 */
export function agentHarness(prefix: string) {
  let work = '';
  const servers: FakeServer[] = [];
  const agents: AgentUnderTest[] = [];
  let counter = 0;
  const jobId = () => `00000000-0000-7000-8000-${String(++counter).padStart(12, '0')}`;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), prefix));
  });
  afterEach(async () => {
    for (const { agent, exit } of agents.splice(0)) {
      agent.shutdown('SIGTERM');
      agent.shutdown('SIGTERM');
      agent.shutdown('SIGTERM');
      await exit;
    }
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });
  return {
    async server(): Promise<FakeServer> {
      const started = await FakeServer.start();
      servers.push(started);
      return started;
    },
    /** Starts an agent against `urls`, with the test's flags, delays and log. */
    agent(urls: string[], settings: { flags?: AgentFlags; timing?: Partial<AgentTiming>; log?: Log } = {}): AgentUnderTest {
      const options = resolveAgentOptions(
        { url: urls.join(','), token: TOKEN, workDir: work, reconnectMinMs: '20', reconnectMaxMs: '100', killGraceMs: '1000', ...settings.flags },
        { PATH: process.env.PATH, HOME: '/nonexistent', RUNWAY_RUNNER_TOKEN: 'must-not-leak' },
      );
      const agent = new RunnerAgent({
        options,
        log: settings.log ?? silentLog,
        fingerprint: { cpuModel: 'Test CPU', cores: 2 },
        version: 'runway-runner/test',
        timing: { ...FAST, ...settings.timing },
      });
      const started = { agent, exit: agent.run() };
      agents.push(started);
      return started;
    },
    /** A fresh job id. */
    jobId,
    /** A path in the work folder no other test uses. */
    file(name: string): string {
      return join(work, `${name}-${++counter}`);
    },
    /** A job for `sh -c cmd`, with a fresh id. */
    job(cmd: string, extra: Record<string, unknown> = {}) {
      return {
        id: jobId(),
        attempt: 1,
        spec: 's',
        image: null,
        cmd: ['sh', '-c', cmd],
        entrypoint: null,
        env: {},
        timeout: 60,
        filePaths: [],
        ...extra,
      };
    },
  };
}
