import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { JobPayload } from '../modules/gateway/protocol';
import { containerRun, findOnPath, type ContainerTool } from './container';
import { type Execution, type LaunchSpec, launch } from './executor';
import { locateFiles, readFilePrefix } from './files';
import type { Log } from './log';
import { decodeText, utf8Prefix } from './output';
import { jsonTextBytes, waterfill } from './report';

/** Settings of a job run, from the agent's options. */
export interface JobRunSettings {
  workRoot: string;
  keepWorkDirs: boolean;
  maxOutputBytes: number;
  maxFileBytes: number;
  maxFiles: number;
  killGraceMs: number;
  /** The agent's PATH, HOME and LANG: all a job gets from the agent's environment. */
  baseEnv: Readonly<Record<string, string>>;
  container: { tool: ContainerTool; network: string; engineEnv: Readonly<Record<string, string>> } | null;
}

export const NO_EXECUTOR_ERROR = 'runner_error: job has an image but this runner has no container executor (--executor podman|docker)';

/** Why a run was stopped by the agent before its command ended by itself. */
export type StopReason = 'cancel' | 'timeout' | 'drain' | 'abandon';

/** What the job left: each part as text, cut to the limits. */
export interface JobOutput {
  stdout: string;
  stderr: string;
  files: Record<string, string>;
  truncated: boolean;
}

export type RunEnd =
  /** Nothing ran: no image executor, no work directory, the command could not be started. */
  | { kind: 'not-started'; error: string }
  | {
      kind: 'ended';
      exit: { code: number | null; signal: NodeJS.Signals | null };
      stoppedFor: StopReason | null;
      /** Null when stopped for a cancel or abandoned: nobody wants it. */
      output: JobOutput | null;
      durationMs: number;
      /** For image jobs: the engine itself failed (exit 125), not the command. */
      engineFailed: boolean;
    };

/** Longest a Node timer can wait; a longer delay would fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;
/** Room in the frame for the fixed fields (type, ids, error), when planning how much of each file to read. */
const FRAME_FIXED_BYTES = 1024;

/**
 * One job attempt on this machine: a fresh work directory, the command (on the host or in a
 * container), its timeout, output capture and the files it leaves, and the clean-up. `stop` ends
 * it early; `ended` settles once every process of it is gone and the work directory is removed.
 */
export class JobRun {
  readonly ended: Promise<RunEnd>;
  private execution: Execution | null = null;
  private stopReason: StopReason | null = null;
  private startedAt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly job: JobPayload,
    private readonly settings: JobRunSettings,
    private readonly log: Log,
    /** The frame limit now, to plan how much of the files can be sent. */
    private readonly frameLimit: () => number,
    /** Called once the command is running. */
    private readonly onStarted: () => void,
  ) {
    this.ended = this.execute();
  }

  get started(): boolean {
    return this.execution !== null;
  }

  /** The command's pid (and process group id) once it runs. */
  get pid(): number | undefined {
    return this.execution?.pid;
  }

  get stoppedFor(): StopReason | null {
    return this.stopReason;
  }

  /** Ends the run early: the first reason given is the one reported. Resolves when every process is gone. */
  async stop(reason: StopReason): Promise<void> {
    this.stopReason ??= reason;
    if (this.execution !== null) await this.kill(this.execution);
  }

  private kill(execution: Execution): Promise<void> {
    return execution.stop(this.settings.killGraceMs, {
      onKill: () => this.log.warn('job ignored SIGTERM; sending SIGKILL', { job: this.job.id, graceMs: this.settings.killGraceMs }),
      onStuck: (ms) => this.log.error('job processes survive SIGKILL (uninterruptible?); still waiting', { job: this.job.id, ms }),
    });
  }

  private async execute(): Promise<RunEnd> {
    const { job, settings } = this;
    let toolPath: string | null = null;
    if (job.image !== null) {
      if (settings.container === null) return { kind: 'not-started', error: NO_EXECUTOR_ERROR };
      toolPath = findOnPath(settings.container.tool, settings.baseEnv.PATH);
      if (toolPath === null) {
        return { kind: 'not-started', error: `runner_error: job has an image but the container executor ${settings.container.tool} is not on this runner's PATH` };
      }
    }
    let workDir: string;
    try {
      await mkdir(settings.workRoot, { recursive: true, mode: 0o700 });
      workDir = await mkdtemp(join(settings.workRoot, `job-${job.id.slice(0, 8)}-${job.attempt}-`));
    } catch (error) {
      return { kind: 'not-started', error: `runner_error: could not create a work directory: ${(error as Error).message}` };
    }
    try {
      return await this.runIn(workDir, toolPath);
    } finally {
      if (settings.keepWorkDirs) this.log.info('work directory kept', { job: job.id, dir: workDir });
      else await rm(workDir, { recursive: true, force: true, maxRetries: 2 }).catch((error: Error) => this.log.warn('could not remove the work directory', { dir: workDir, error: error.message }));
    }
  }

  private launchSpec(workDir: string, toolPath: string | null): LaunchSpec {
    const { job, settings } = this;
    if (toolPath === null || settings.container === null) {
      return { argv: [...(job.entrypoint ?? []), ...job.cmd], env: { ...settings.baseEnv, ...job.env }, cwd: workDir };
    }
    const run = containerRun(job, toolPath, workDir, settings.container.network);
    const env = { ...settings.baseEnv, ...settings.container.engineEnv };
    return { argv: run.argv, env, cwd: workDir, container: { toolPath, name: run.name, env } };
  }

  private async runIn(workDir: string, toolPath: string | null): Promise<RunEnd> {
    const { job, settings } = this;
    if (this.stopReason !== null) {
      return { kind: 'ended', exit: { code: null, signal: null }, stoppedFor: this.stopReason, output: null, durationMs: 0, engineFailed: false };
    }
    let spec: LaunchSpec;
    let execution: Execution;
    try {
      spec = this.launchSpec(workDir, toolPath);
      execution = await launch(spec, settings.maxOutputBytes);
    } catch (error) {
      const argv0 = [...(job.entrypoint ?? []), ...job.cmd][0] ?? '';
      return { kind: 'not-started', error: `could not start ${JSON.stringify(toolPath ?? argv0)}: ${(error as Error).message}` };
    }
    this.execution = execution;
    this.startedAt = Date.now();
    this.onStarted();
    // A stop that came while the command was being started.
    if (this.stopReason !== null) void this.kill(execution);
    this.timer = setTimeout(() => {
      this.log.warn('job timed out; stopping it', { job: job.id, timeoutS: job.timeout });
      void this.stop('timeout');
    }, Math.min(MAX_TIMER_MS, job.timeout * 1000));

    const exit = await execution.exited;
    clearTimeout(this.timer);
    const durationMs = Date.now() - this.startedAt;
    if (this.stopReason !== null) await this.kill(execution);
    else if (execution.leftovers()) {
      // The command is done; whatever it left running would disturb the next benchmark.
      this.log.warn('job left processes behind; stopping them', { job: job.id });
      await this.kill(execution);
    }
    await execution.drainStreams();
    const wanted = this.stopReason !== 'cancel' && this.stopReason !== 'abandon';
    const output = wanted ? await this.collect(execution, workDir) : null;
    const engineFailed = spec.container !== undefined && exit.code === 125 && this.stopReason === null;
    return { kind: 'ended', exit, stoppedFor: this.stopReason, output, durationMs, engineFailed };
  }

  /** stdout, stderr and the requested files, read no further than the frame can carry. */
  private async collect(execution: Execution, workDir: string): Promise<JobOutput> {
    const { job, settings } = this;
    const located = await locateFiles(workDir, job.filePaths, settings.maxFiles);
    for (const skipped of located.skipped) {
      if (skipped.reason === 'missing') this.log.debug('requested file missing', { job: job.id, path: skipped.path });
      else this.log.warn('requested file refused', { job: job.id, path: skipped.path, reason: skipped.reason });
    }
    const names = located.found.reduce((sum, file) => sum + jsonTextBytes(file.path) + 8, 0);
    const budget = Math.max(0, this.frameLimit() - FRAME_FIXED_BYTES - names);
    const sizes = located.found.map((file) => Math.min(file.size, settings.maxFileBytes));
    const levels = waterfill([execution.stdout.kept, execution.stderr.kept, ...sizes], budget).slice(2);
    let truncated = execution.stdout.truncated || execution.stderr.truncated || located.overLimit;
    const files: Record<string, string> = {};
    for (const [i, file] of located.found.entries()) {
      const limit = Math.min(settings.maxFileBytes, levels[i]);
      try {
        const content = await readFilePrefix(file, limit);
        const cut = content.length < file.size;
        if (cut) truncated = true;
        files[file.path] = decodeText(cut ? utf8Prefix(content, content.length) : content);
      } catch (error) {
        this.log.warn('could not read a requested file', { job: job.id, path: file.path, error: (error as Error).message });
      }
    }
    return { stdout: execution.stdout.text(), stderr: execution.stderr.text(), files, truncated };
  }
}
