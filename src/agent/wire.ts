import type { JobPayload, RunnerMessage, ServerMessage } from '../modules/gateway/protocol';

/**
 * The server's frames as the agent reads them (docs/protocol.md, "The runner WebSocket"). The server is
 * trusted to be the server, not to be bug-free: a frame that does not have the expected shape is
 * refused here instead of breaking the agent.
 */

/** `welcome`; `maxMessageBytes` (the server's frame limit) may be missing from an older server's. */
export type Welcome = Omit<Extract<ServerMessage, { type: 'welcome' }>, 'maxMessageBytes'> & { maxMessageBytes?: number };
export type ServerFrame = Welcome | Exclude<ServerMessage, { type: 'welcome' }>;
export type { JobPayload, RunnerMessage };

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

type Fields = Record<string, unknown>;

const isObject = (value: unknown): value is Fields => value !== null && typeof value === 'object' && !Array.isArray(value);
const isStringArray = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string');
const isCount = (value: unknown, min: number): value is number => typeof value === 'number' && Number.isInteger(value) && value >= min;

function need(condition: boolean, what: string): asserts condition {
  if (!condition) throw new FrameError(what);
}

function jobPayload(value: unknown): JobPayload {
  need(isObject(value), 'job must be an object');
  const { id, attempt, spec, image, cmd, entrypoint, env, timeout, filePaths } = value;
  need(typeof id === 'string' && id !== '', 'job.id must be a string');
  need(isCount(attempt, 1), 'job.attempt must be a positive whole number');
  need(isStringArray(cmd) && cmd.length > 0, 'job.cmd must be a non-empty list of strings');
  need(entrypoint === null || entrypoint === undefined || isStringArray(entrypoint), 'job.entrypoint must be a list of strings or null');
  need(image === null || image === undefined || typeof image === 'string', 'job.image must be a string or null');
  need(env === undefined || (isObject(env) && Object.values(env).every((v) => typeof v === 'string')), 'job.env must map names to strings');
  need(isCount(timeout, 1), 'job.timeout must be a positive whole number of seconds');
  need(filePaths === undefined || isStringArray(filePaths), 'job.filePaths must be a list of strings');
  return {
    id,
    attempt,
    spec: typeof spec === 'string' ? spec : '',
    image: typeof image === 'string' && image !== '' ? image : null,
    cmd,
    entrypoint: Array.isArray(entrypoint) && entrypoint.length > 0 ? entrypoint : null,
    env: (env as Record<string, string> | undefined) ?? {},
    timeout,
    filePaths: filePaths ?? [],
  };
}

function jobRef(frame: Fields): { job: string; attempt: number } {
  need(typeof frame.job === 'string', `${String(frame.type)}.job must be a string`);
  need(isCount(frame.attempt, 1), `${String(frame.type)}.attempt must be a positive whole number`);
  return { job: frame.job, attempt: frame.attempt };
}

/** Parses one text frame from the server; throws FrameError when it is not one the agent knows. */
export function parseServerFrame(text: string): ServerFrame {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new FrameError('the frame is not JSON');
  }
  need(isObject(parsed), 'the frame is not an object');
  const frame = parsed;
  switch (frame.type) {
    case 'welcome': {
      need(typeof frame.runner === 'string', 'welcome.runner must be a string');
      need(isCount(frame.heartbeatIntervalMs, 1), 'welcome.heartbeatIntervalMs must be a positive whole number');
      need(isCount(frame.heartbeatTimeoutMs, 1), 'welcome.heartbeatTimeoutMs must be a positive whole number');
      const welcome: Welcome = {
        type: 'welcome',
        runner: frame.runner,
        heartbeatIntervalMs: frame.heartbeatIntervalMs,
        heartbeatTimeoutMs: frame.heartbeatTimeoutMs,
      };
      if (isCount(frame.maxMessageBytes, 1)) welcome.maxMessageBytes = frame.maxMessageBytes;
      return welcome;
    }
    case 'job':
      return { type: 'job', job: jobPayload(frame.job) };
    case 'cancel':
      return { type: 'cancel', ...jobRef(frame), reason: typeof frame.reason === 'string' ? frame.reason : 'canceled' };
    case 'ack':
      need(typeof frame.of === 'string', 'ack.of must be a string');
      return { type: 'ack', ...jobRef(frame), of: frame.of as Extract<ServerMessage, { type: 'ack' }>['of'] };
    case 'error':
      return {
        type: 'error',
        code: typeof frame.code === 'string' ? frame.code : 'unknown',
        message: typeof frame.message === 'string' ? frame.message : '',
        ...(typeof frame.job === 'string' ? { job: frame.job } : {}),
      };
    default:
      throw new FrameError(typeof frame.type === 'string' ? `unknown frame type ${frame.type.slice(0, 64)}` : 'the frame has no type');
  }
}
