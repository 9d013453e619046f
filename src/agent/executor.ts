import { type ChildProcess, spawn } from 'node:child_process';
import { containerKill, containerRemove } from './container';
import { OutputCapture } from './output';
import { groupAlive, terminateGroup } from './process-group';

/**
 * Starting a job's command and stopping it. The command runs without a shell, detached (a
 * session and process group of its own, so a cancel reaches everything it forks and a Ctrl-C on
 * the agent's terminal does not), stdin closed, stdout and stderr streamed into captures.
 */

export interface LaunchSpec {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd: string;
  /** For image jobs: the engine's client and the container's name, for `kill` and `rm -f`. */
  container?: { toolPath: string; name: string; env: Readonly<Record<string, string>> };
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopHooks {
  onKill?: () => void;
  onStuck?: (elapsedMs: number) => void;
}

/** How long the engine's `kill`/`rm` may take before it is given up on. */
const ENGINE_COMMAND_TIMEOUT_MS = 30_000;
/** After the group is gone, how long stdout/stderr may take to reach their end. */
const STREAM_DRAIN_MS = 2_000;

export class Execution {
  readonly stdout: OutputCapture;
  readonly stderr: OutputCapture;
  readonly exited: Promise<ExitStatus>;
  private readonly streamsClosed: Promise<void>;
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly child: ChildProcess,
    readonly spec: LaunchSpec,
    maxOutputBytes: number,
  ) {
    this.stdout = new OutputCapture(maxOutputBytes);
    this.stderr = new OutputCapture(maxOutputBytes);
    child.stdout!.on('data', (chunk: Buffer) => this.stdout.write(chunk));
    child.stderr!.on('data', (chunk: Buffer) => this.stderr.write(chunk));
    const closed = (stream: NodeJS.ReadableStream) => new Promise<void>((resolve) => stream.once('close', () => resolve()));
    this.streamsClosed = Promise.all([closed(child.stdout!), closed(child.stderr!)]).then(() => undefined);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** The leader's pid, which is also the group's id. */
  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Cancel: SIGTERM to the group (and `<tool> kill --signal TERM` for a container), SIGKILL
   * after `graceMs` (and `<tool> kill`), then waits until no member is left (and `<tool> rm -f`).
   * Idempotent: a second call waits for the first.
   */
  stop(graceMs: number, hooks: StopHooks = {}): Promise<void> {
    this.stopping ??= (async () => {
      const container = this.spec.container;
      await terminateGroup(this.pid, {
        graceMs,
        onKill: hooks.onKill,
        onStuck: hooks.onStuck,
        alsoOnTerm: container ? () => runQuietly(containerKill(container.toolPath, container.name, 'TERM'), container.env) : undefined,
        alsoOnKill: container ? () => runQuietly(containerKill(container.toolPath, container.name), container.env) : undefined,
      });
      if (container) await runQuietly(containerRemove(container.toolPath, container.name), container.env);
    })();
    return this.stopping;
  }

  /** Whether processes of the job's group are still alive (after the leader exited: left behind). */
  leftovers(): boolean {
    return groupAlive(this.pid);
  }

  /** Waits for stdout and stderr to end; a process that escaped the group may hold them open, so not forever. */
  async drainStreams(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, STREAM_DRAIN_MS)));
    await Promise.race([this.streamsClosed, timeout]);
    clearTimeout(timer);
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }
}

/** Starts the command; rejects (ENOENT, EACCES, ...) if it could not be started. */
export function launch(spec: LaunchSpec, maxOutputBytes: number): Promise<Execution> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(spec.argv[0], spec.argv.slice(1), {
        cwd: spec.cwd,
        env: spec.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        windowsHide: true,
      });
    } catch (error) {
      reject(error as Error);
      return;
    }
    const onError = (error: Error) => reject(error);
    child.once('error', onError);
    child.once('spawn', () => {
      child.off('error', onError);
      // Errors after the start (a failed kill) are not the job's outcome; `exit` is.
      child.on('error', () => undefined);
      resolve(new Execution(child, spec, maxOutputBytes));
    });
  });
}

/** Runs an engine command to its end, output ignored, never failing; killed after a while. */
function runQuietly(argv: readonly string[], env: Readonly<Record<string, string>>): Promise<void> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(argv[0], argv.slice(1), { env, stdio: 'ignore' });
    } catch {
      resolve();
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), ENGINE_COMMAND_TIMEOUT_MS);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    child.once('error', done);
    child.once('exit', done);
  });
}
