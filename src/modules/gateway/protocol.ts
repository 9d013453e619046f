import { UUID_PATTERN } from '../../common/ids';
import { findUnstorable } from '../../common/storable';
import type { JobSubmittedData } from '../../events/job-events';

/**
 * The runner WebSocket protocol (docs/protocol.md, "The runner WebSocket"): JSON text frames, each with a
 * `type`. Runner messages are checked here field by field, and as a whole for what PostgreSQL
 * cannot store (NUL, lone surrogates) or nesting too deep; anything else is `bad_message`.
 */

/** What a runner sends back of a job: each part as text, as the runner read it. */
export interface RunnerOutput {
  stdout?: string;
  stderr?: string;
  files?: Record<string, string>;
  truncated?: boolean;
}

export type RunnerMessage =
  | {
      type: 'hello';
      version: string;
      capacity: number;
      fingerprint: Record<string, unknown>;
      /** The jobs the runner still holds; when given, jobs assigned to it and not listed are lost (`runner_lost`). */
      jobs?: { job: string; attempt: number }[];
    }
  | { type: 'ready' }
  | { type: 'running'; job: string; attempt: number }
  | { type: 'heartbeat'; job: string; attempt: number }
  | ({ type: 'completed'; job: string; attempt: number; exitCode: number } & RunnerOutput)
  | ({ type: 'failed'; job: string; attempt: number; error: string; exitCode: number | null } & RunnerOutput)
  | { type: 'canceled'; job: string; attempt: number };

export type RunnerMessageType = RunnerMessage['type'];

/** The job as a runner gets it: what to run, and the attempt it runs as. */
export type JobPayload = { id: string; attempt: number } & Pick<
  JobSubmittedData,
  'spec' | 'image' | 'cmd' | 'entrypoint' | 'env' | 'timeout' | 'filePaths'
>;

export type ServerMessage =
  | { type: 'welcome'; runner: string; heartbeatIntervalMs: number; heartbeatTimeoutMs: number; maxMessageBytes: number }
  | { type: 'job'; job: JobPayload }
  | { type: 'cancel'; job: string; attempt: number; reason: string }
  | { type: 'ack'; job: string; attempt: number; of: RunnerMessageType }
  | { type: 'error'; code: string; message: string; job?: string };

export class BadMessage extends Error {
  readonly code = 'bad_message';
  constructor(
    message: string,
    readonly job?: string,
  ) {
    super(message);
  }
}

const MAX_CAPACITY = 64;
const MAX_FILES = 255;
const MAX_ERROR_CHARS = 65_536;
const MAX_FINGERPRINT_CHARS = 16_384;

type Fields = Record<string, unknown>;

function object(value: unknown, what: string): Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BadMessage(`${what} must be an object`);
  return value as Fields;
}

function onlyFields(message: Fields, allowed: readonly string[]): void {
  const unknown = Object.keys(message).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) throw new BadMessage(`unknown field ${unknown[0]} in ${String(message.type)}`);
}

function text(message: Fields, field: string, max: number): string {
  const value = message[field];
  if (typeof value !== 'string') throw new BadMessage(`${field} must be a string`);
  if (value.length > max) throw new BadMessage(`${field} is longer than ${max} characters`);
  if (value.includes('\u0000')) throw new BadMessage(`${field} must not contain NUL characters`);
  return value;
}

function optionalText(message: Fields, field: string): string | undefined {
  return message[field] === undefined ? undefined : text(message, field, Number.MAX_SAFE_INTEGER);
}

function int(message: Fields, field: string, min: number, max: number): number {
  const value = message[field];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new BadMessage(`${field} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

function jobRef(message: Fields): { job: string; attempt: number } {
  const job = message.job;
  if (typeof job !== 'string' || !UUID_PATTERN.test(job)) throw new BadMessage('job must be a job id');
  return { job, attempt: int(message, 'attempt', 1, 1_000) };
}

/** `hello.jobs`: at most as many as the runner's capacity, each a job reference. */
function heldJobs(value: unknown, capacity: number): { job: string; attempt: number }[] {
  if (!Array.isArray(value)) throw new BadMessage('jobs must be a list of {job, attempt}');
  if (value.length > capacity) throw new BadMessage(`jobs lists more jobs than the capacity ${capacity}`);
  return value.map((entry: unknown) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new BadMessage('jobs must be a list of {job, attempt}');
    onlyFields(entry as Fields, ['job', 'attempt']);
    return jobRef(entry as Fields);
  });
}

function output(message: Fields, job: string): RunnerOutput {
  const result: RunnerOutput = {};
  const stdout = optionalText(message, 'stdout');
  const stderr = optionalText(message, 'stderr');
  if (stdout !== undefined) result.stdout = stdout;
  if (stderr !== undefined) result.stderr = stderr;
  if (message.files !== undefined) {
    const files = object(message.files, 'files');
    const entries = Object.entries(files);
    if (entries.length > MAX_FILES) throw new BadMessage(`at most ${MAX_FILES} files`, job);
    for (const [path, content] of entries) {
      if (path.length === 0 || path.length > 4096 || path.includes('\u0000')) throw new BadMessage('a file path is empty, too long or has NUL', job);
      if (typeof content !== 'string' || content.includes('\u0000')) throw new BadMessage(`file ${path} must be text without NUL characters`, job);
    }
    result.files = files as Record<string, string>;
  }
  if (message.truncated !== undefined) {
    if (typeof message.truncated !== 'boolean') throw new BadMessage('truncated must be true or false', job);
    result.truncated = message.truncated;
  }
  return result;
}

const OUTPUT_FIELDS = ['stdout', 'stderr', 'files', 'truncated'];

/** Parses one text frame; throws BadMessage with what is wrong. */
export function parseRunnerMessage(frame: string): RunnerMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(frame);
  } catch {
    throw new BadMessage('the frame is not JSON');
  }
  const message = object(parsed, 'a message');
  // Every string and name of the frame must be storable text, nested no deeper than JSON bodies.
  const unstorable = findUnstorable(message);
  if (unstorable !== null) {
    const job = typeof message.job === 'string' && UUID_PATTERN.test(message.job) ? message.job : undefined;
    throw new BadMessage(unstorable.message, job);
  }
  switch (message.type) {
    case 'hello': {
      onlyFields(message, ['type', 'version', 'capacity', 'fingerprint', 'jobs']);
      const fingerprint = message.fingerprint === undefined ? {} : object(message.fingerprint, 'fingerprint');
      if (JSON.stringify(fingerprint).length > MAX_FINGERPRINT_CHARS) throw new BadMessage('fingerprint is too large');
      const capacity = message.capacity === undefined ? 1 : int(message, 'capacity', 1, MAX_CAPACITY);
      return {
        type: 'hello',
        version: text(message, 'version', 64),
        capacity,
        fingerprint,
        ...(message.jobs === undefined ? {} : { jobs: heldJobs(message.jobs, capacity) }),
      };
    }
    case 'ready':
      onlyFields(message, ['type']);
      return { type: 'ready' };
    case 'running':
    case 'heartbeat':
    case 'canceled':
      onlyFields(message, ['type', 'job', 'attempt']);
      return { type: message.type, ...jobRef(message) };
    case 'completed': {
      onlyFields(message, ['type', 'job', 'attempt', 'exitCode', ...OUTPUT_FIELDS]);
      const ref = jobRef(message);
      const exitCode = int(message, 'exitCode', -2_147_483_648, 2_147_483_647);
      if (exitCode !== 0) throw new BadMessage('a command that exits non-zero is reported as failed', ref.job);
      return { type: 'completed', ...ref, exitCode, ...output(message, ref.job) };
    }
    case 'failed': {
      onlyFields(message, ['type', 'job', 'attempt', 'error', 'exitCode', ...OUTPUT_FIELDS]);
      const ref = jobRef(message);
      const exitCode = message.exitCode === undefined || message.exitCode === null ? null : int(message, 'exitCode', -2_147_483_648, 2_147_483_647);
      return { type: 'failed', ...ref, error: text(message, 'error', MAX_ERROR_CHARS), exitCode, ...output(message, ref.job) };
    }
    default:
      throw new BadMessage(
        typeof message.type === 'string' ? `unknown message type ${message.type.slice(0, 64)}` : 'a message needs a type',
      );
  }
}
