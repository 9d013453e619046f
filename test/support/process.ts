import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { get } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';

/** The repository root; `bin/runway.js` runs the compiled build in `dist/`. */
export const ROOT = join(__dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'runway.js');
export const CLI_ENTRY = join(ROOT, 'dist', 'src', 'cli.js');

const READY_TIMEOUT_MS = 30_000;
const READY_POLL_MS = 100;
const KILL_AFTER_MS = 5_000;

/** Fails with a clear message when the build the CLI runs is missing. */
export function assertBuilt(): void {
  if (!existsSync(CLI_ENTRY)) {
    throw new Error(`${CLI_ENTRY} does not exist: run \`npm run build\` (or \`npx tsc -p tsconfig.build.json\`) before these tests`);
  }
}

/**
 * Variables the child must not inherit from the test runner's environment: Runway's own
 * configuration is given explicitly per start, so a developer's DATABASE_URL or
 * RUNWAY_ADMIN_TOKEN cannot change what a test exercises.
 */
const CONFIG_VARIABLE = /^(RUNWAY_|DATABASE_URL$|NATS_URL$|PORT$|HOST$)/;

/** `undefined` removes a variable. */
export type ChildEnv = Readonly<Record<string, string | undefined>>;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunwayProcess {
  readonly child: ChildProcess;
  readonly args: readonly string[];
  /** The PORT it was given. */
  readonly port: number;
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr, labelled, for failure messages. */
  output(): string;
  /** Settles when the process has exited. */
  readonly exited: Promise<Exit>;
  readonly exit: Exit | null;
  /** Polls `GET /readyz` until it answers 200; fails with the collected output. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** SIGTERM, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<Exit>;
}

const live = new Set<RunwayProcess>();
const reservedPorts = new Set<number>();
let exitHookInstalled = false;

/**
 * Whether process `pid` holds a TCP socket listening on `port` (Linux: /proc/net/tcp{,6} for the
 * listening sockets' inodes, /proc/<pid>/fd for the process's). Where /proc cannot say, true.
 */
async function listensOn(pid: number | undefined, port: number): Promise<boolean> {
  if (pid === undefined) return false;
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set<string>();
  let tables = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => null);
    if (text === null) continue;
    tables += 1;
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address is fields[1] (ADDR:PORT), st fields[3] (0A: LISTEN), inode fields[9].
      if (fields.length > 9 && fields[1].endsWith(hexPort) && fields[3] === '0A') inodes.add(fields[9]);
    }
  }
  if (tables === 0) return true;
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => null);
  if (fds === null) return false;
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode !== undefined && inodes.has(inode)) return true;
  }
  return false;
}

/** A port nobody listens on now: the OS picks one for a listener on port 0, which is then closed. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, host, () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    // Processes started together must not be handed the same port.
    if (!reservedPorts.has(port)) {
      reservedPorts.add(port);
      return port;
    }
  }
  throw new Error('could not find a free port');
}

function childEnv(env: ChildEnv, port: number): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!CONFIG_VARIABLE.test(name) && value !== undefined) result[name] = value;
  }
  Object.assign(result, { PORT: String(port), HOST: '127.0.0.1', RUNWAY_LOG_LEVEL: 'warn', NO_COLOR: '1' });
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined) delete result[name];
    else result[name] = value;
  }
  return result;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort if the test process goes away without the hooks running: no orphaned servers.
  process.on('exit', () => {
    for (const proc of live) if (proc.exit === null) proc.child.kill('SIGKILL');
  });
}

/**
 * Starts `node bin/runway.js <args>` with `env` on top of the runner's environment (minus
 * Runway's variables). PORT is always a free port (unless `env` sets it), HOST 127.0.0.1,
 * RUNWAY_LOG_LEVEL warn unless given.
 */
export async function startRunway(args: readonly string[], env: ChildEnv = {}): Promise<RunwayProcess> {
  installExitHook();
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: childEnv(env, port),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let exit: Exit | null = null;
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once('error', (error) => {
      exit = { code: null, signal: null };
      reject(error);
    });
    // 'close': the process has exited and its output has been read to the end.
    child.once('close', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  exited.catch(() => undefined);
  const url = `http://127.0.0.1:${env.PORT ?? port}`;

  const proc: RunwayProcess = {
    child,
    args,
    port: Number(env.PORT ?? port),
    url,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    get exit() {
      return exit;
    },
    exited,
    output() {
      const status = exit === null ? 'running' : `exited with ${exit.code ?? exit.signal}`;
      return `\`runway ${args.join(' ')}\` (${status})\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
    },
    async waitReady(timeoutMs = READY_TIMEOUT_MS) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (exit !== null) throw new Error(`exited before it was ready:\n${proc.output()}`);
        const status = await readyz(url).catch((error: Error) => error.message);
        // The port was free when picked, but anything on the machine (another test file's
        // server, a benchmark beside the tests) may take it before the child binds it: only an
        // answer from a socket the child listens on counts.
        if (status === 200 && (await listensOn(child.pid, Number(env.PORT ?? port)))) return;
        if (Date.now() >= deadline) {
          throw new Error(`GET /readyz did not answer 200 within ${timeoutMs} ms (last: ${status}):\n${proc.output()}`);
        }
        await sleep(READY_POLL_MS);
      }
    },
    async stop() {
      try {
        if (exit !== null) return exit;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), KILL_AFTER_MS);
        try {
          return await exited;
        } finally {
          clearTimeout(timer);
        }
      } finally {
        live.delete(proc);
        reservedPorts.delete(port);
      }
    },
  };
  live.add(proc);
  const release = () => reservedPorts.delete(port);
  exited.then(release, release);
  return proc;
}

/** Runs `runway <args>` to its end (killed after `timeoutMs`). */
export async function runRunway(
  args: readonly string[],
  env: ChildEnv = {},
  timeoutMs = 30_000,
): Promise<Exit & { stdout: string; stderr: string; output: string }> {
  const proc = await startRunway(args, env);
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), timeoutMs);
  try {
    const exit = await proc.exited;
    return { ...exit, stdout: proc.stdout, stderr: proc.stderr, output: proc.output() };
  } finally {
    clearTimeout(timer);
    await proc.stop();
  }
}

/** Stops every process this helper started that is still running. Use in afterEach/afterAll. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((proc) => proc.stop()));
}

function readyz(url: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const request = get(`${url}/readyz`, { timeout: 2_000, agent: false }, (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode ?? 0));
      response.once('error', reject);
    });
    request.once('timeout', () => request.destroy(new Error('GET /readyz timed out')));
    request.once('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
