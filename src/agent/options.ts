import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connectUrl, UrlError } from './connection';
import { CONTAINER_TOOLS, type ContainerTool, ENGINE_VARIABLES } from './container';

/**
 * The agent's settings: command-line flags first, then RUNWAY_URL and RUNWAY_RUNNER_TOKEN from
 * the environment, then defaults. Checked once at start; a bad value stops it with a message.
 */
export interface AgentOptions {
  /** Runner endpoints (`ws(s)://.../v1/runner/connect`), tried in this order. */
  urls: string[];
  token: string;
  workDir: string;
  keepWorkDirs: boolean;
  maxOutputBytes: number;
  maxFileBytes: number;
  maxFiles: number;
  killGraceMs: number;
  /** Null: as long as the running job's own timeout allows. */
  drainTimeoutMs: number | null;
  executor: ContainerTool | null;
  containerNetwork: string;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  jsonLogs: boolean;
  verbose: boolean;
  /** What a job gets from the agent's environment: PATH, HOME, LANG. Never the token. */
  jobEnv: Record<string, string>;
  /** What the container engine's client gets besides: where its engine is. */
  engineEnv: Record<string, string>;
}

/** The flags as commander hands them over (strings, booleans where a flag has no value). */
export interface AgentFlags {
  url?: string;
  token?: string;
  tokenFile?: string;
  workDir?: string;
  keepWorkDirs?: boolean;
  maxOutputBytes?: string;
  maxFileBytes?: string;
  maxFiles?: string;
  killGraceMs?: string;
  drainTimeoutMs?: string;
  executor?: string;
  containerNetwork?: string;
  reconnectMinMs?: string;
  reconnectMaxMs?: string;
  jsonLogs?: boolean;
  verbose?: boolean;
}

export class AgentOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentOptionsError';
  }
}

export const MIB = 1024 * 1024;
export const DEFAULTS = {
  maxOutputBytes: 25 * MIB,
  maxFileBytes: 25 * MIB,
  maxFiles: 255,
  killGraceMs: 10_000,
  reconnectMinMs: 250,
  reconnectMaxMs: 30_000,
  containerNetwork: 'none',
} as const;

/** Variables a job inherits from the agent. */
const JOB_VARIABLES = ['PATH', 'HOME', 'LANG'] as const;

type Env = Readonly<Record<string, string | undefined>>;

function whole(flag: string, raw: string | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (raw === undefined) return fallback;
  const text = raw.trim();
  if (!/^\d+$/.test(text)) throw new AgentOptionsError(`${flag}: expected a whole number, got ${JSON.stringify(raw)}`);
  const value = Number(text);
  if (value < min || value > max) throw new AgentOptionsError(`${flag}: expected ${min}..${max}, got ${value}`);
  return value;
}

function token(flags: AgentFlags, env: Env): string {
  let value = flags.token;
  if (value === undefined && flags.tokenFile !== undefined) {
    try {
      value = readFileSync(flags.tokenFile, 'utf8');
    } catch (error) {
      throw new AgentOptionsError(`--token-file: cannot read ${flags.tokenFile}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  value = (value ?? env.RUNWAY_RUNNER_TOKEN)?.trim();
  if (!value) throw new AgentOptionsError('a runner token is needed: --token, --token-file or RUNWAY_RUNNER_TOKEN');
  // It goes into an HTTP header.
  if (!/^[\x21-\x7e]+$/.test(value)) throw new AgentOptionsError('the runner token must be printable ASCII without spaces');
  return value;
}

export function resolveAgentOptions(flags: AgentFlags, env: Env): AgentOptions {
  const rawUrls = (flags.url ?? env.RUNWAY_URL ?? '').split(',').map((url) => url.trim()).filter((url) => url !== '');
  if (rawUrls.length === 0) throw new AgentOptionsError('a server URL is needed: --url URL[,URL2...] or RUNWAY_URL');
  let urls: string[];
  try {
    urls = rawUrls.map(connectUrl);
  } catch (error) {
    if (error instanceof UrlError) throw new AgentOptionsError(`--url: ${error.message}`);
    throw error;
  }
  const executor = flags.executor?.trim();
  if (executor !== undefined && !(CONTAINER_TOOLS as readonly string[]).includes(executor)) {
    throw new AgentOptionsError(`--executor: expected ${CONTAINER_TOOLS.join(' or ')}, got ${JSON.stringify(executor)}`);
  }
  const network = flags.containerNetwork?.trim() ?? DEFAULTS.containerNetwork;
  if (!/^[\w.:-]+$/.test(network)) throw new AgentOptionsError(`--container-network: ${JSON.stringify(network)} is not a network name`);
  const reconnectMinMs = whole('--reconnect-min-ms', flags.reconnectMinMs, DEFAULTS.reconnectMinMs, 1, 3_600_000);
  const reconnectMaxMs = whole('--reconnect-max-ms', flags.reconnectMaxMs, Math.max(DEFAULTS.reconnectMaxMs, reconnectMinMs), reconnectMinMs, 3_600_000);
  const pick = (names: readonly string[]) =>
    Object.fromEntries(names.flatMap((name) => (env[name] === undefined ? [] : [[name, env[name] as string]])));
  return {
    urls,
    token: token(flags, env),
    workDir: resolve(flags.workDir ?? join(tmpdir(), 'runway-runner')),
    keepWorkDirs: flags.keepWorkDirs === true,
    maxOutputBytes: whole('--max-output-bytes', flags.maxOutputBytes, DEFAULTS.maxOutputBytes, 0, 1024 * MIB),
    maxFileBytes: whole('--max-file-bytes', flags.maxFileBytes, DEFAULTS.maxFileBytes, 0, 1024 * MIB),
    maxFiles: whole('--max-files', flags.maxFiles, DEFAULTS.maxFiles, 0, 255),
    killGraceMs: whole('--kill-grace-ms', flags.killGraceMs, DEFAULTS.killGraceMs, 0, 3_600_000),
    drainTimeoutMs: flags.drainTimeoutMs === undefined ? null : whole('--drain-timeout-ms', flags.drainTimeoutMs, 0, 0, 2_147_483_647),
    executor: (executor as ContainerTool | undefined) ?? null,
    containerNetwork: network,
    reconnectMinMs,
    reconnectMaxMs,
    jsonLogs: flags.jsonLogs === true,
    verbose: flags.verbose === true,
    jobEnv: pick(JOB_VARIABLES),
    engineEnv: pick(ENGINE_VARIABLES),
  };
}
