import { resolve } from 'node:path';
import type { RateLimit } from '../common/rate-limit';

/**
 * The one reader of `process.env`. Parsed and validated once at boot; a bad value fails the
 * start with a message that names the variable.
 */
export interface RunwayConfig {
  readonly port: number;
  readonly host: string;
  /** null: embedded PostgreSQL (PGlite) in `dataDir`. */
  readonly databaseUrl: string | null;
  readonly databasePoolSize: number;
  /** null: the in-process bus (single process only). */
  readonly natsServers: readonly string[] | null;
  readonly natsPrefix: string;
  readonly dataDir: string;
  /** null: generated on first start and kept in `dataDir`. */
  readonly adminToken: string | null;
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTimeoutMs: number;
  readonly claimTimeoutMs: number;
  readonly jobTimeoutGraceMs: number;
  readonly maxMessageBytes: number;
  /**
   * Limits on what abuse looks like, never on a healthy runner taking its next job: token
   * buckets per instance (docs/protocol.md, "Rate limits").
   */
  readonly rateLimits: {
    /** WebSocket connection attempts per runner. */
    readonly runnerConnects: RateLimit;
    /** Claims that found nothing, per runner: past it a `ready` waits for work instead of asking again at once. */
    readonly idleClaims: RateLimit;
    /** Failed authentications per source address: past it every attempt from there is refused (429) until it refills. */
    readonly authFailures: RateLimit;
    /** REST requests per credential. */
    readonly apiRequests: RateLimit;
  };
  /** Frames a runner socket may send per second (well above its heartbeat rate). */
  readonly socketMessagesPerSecond: number;
  readonly logLevel: 'error' | 'warn' | 'log' | 'debug';
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `expected ${min}..${max}, got ${value}`);
  return value;
}

function url(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const raw = text(env, name);
  if (raw === undefined) return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `expected a ${protocols.join(' or ')} URL`);
  }
  return raw;
}

/** A rate limit set by its sustained rate per minute; the burst follows from it (at least 1). */
function perMinute(env: Env, name: string, fallback: number, burstOf: (rate: number) => number): RateLimit {
  const rate = integer(env, name, fallback, 1);
  return { perMinute: rate, burst: Math.max(1, Math.floor(burstOf(rate))) };
}

const LOG_LEVELS = ['error', 'warn', 'log', 'debug'] as const;

export function loadConfig(env: Env = process.env): RunwayConfig {
  const natsRaw = text(env, 'NATS_URL');
  const natsServers = natsRaw?.split(',').map((s) => s.trim()).filter((s) => s !== '') ?? null;
  const prefix = text(env, 'RUNWAY_NATS_PREFIX') ?? 'runway';
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix)) {
    throw new ConfigError('RUNWAY_NATS_PREFIX', 'expected NATS subject tokens (letters, digits, _ and -, dot separated)');
  }
  const adminToken = text(env, 'RUNWAY_ADMIN_TOKEN') ?? null;
  if (adminToken !== null && adminToken.length < 16) {
    throw new ConfigError('RUNWAY_ADMIN_TOKEN', 'must be at least 16 characters');
  }
  const logLevel = text(env, 'RUNWAY_LOG_LEVEL') ?? 'log';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('RUNWAY_LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}`);
  }
  const heartbeatIntervalMs = integer(env, 'RUNWAY_HEARTBEAT_INTERVAL_MS', 1_000, 10);
  const heartbeatTimeoutMs = integer(env, 'RUNWAY_HEARTBEAT_TIMEOUT_MS', 30_000, 10);
  if (heartbeatTimeoutMs <= heartbeatIntervalMs) {
    throw new ConfigError('RUNWAY_HEARTBEAT_TIMEOUT_MS', 'must be longer than RUNWAY_HEARTBEAT_INTERVAL_MS');
  }
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']) ?? null;
  return {
    port: integer(env, 'PORT', 8080, 0, 65_535),
    host: text(env, 'HOST') ?? '127.0.0.1',
    databaseUrl,
    // The embedded server answers one connection at a time.
    databasePoolSize: databaseUrl === null ? 1 : integer(env, 'RUNWAY_DATABASE_POOL_SIZE', 10, 2, 1_000),
    natsServers: natsServers && natsServers.length > 0 ? natsServers : null,
    natsPrefix: prefix,
    dataDir: resolve(text(env, 'RUNWAY_DATA_DIR') ?? '.runway'),
    adminToken,
    heartbeatIntervalMs,
    heartbeatTimeoutMs,
    claimTimeoutMs: integer(env, 'RUNWAY_CLAIM_TIMEOUT_MS', 60_000, 10),
    jobTimeoutGraceMs: integer(env, 'RUNWAY_JOB_TIMEOUT_GRACE_MS', 60_000, 0),
    maxMessageBytes: integer(env, 'RUNWAY_MAX_MESSAGE_BYTES', 26_214_400, 1_024, 1_073_741_824),
    rateLimits: {
      runnerConnects: perMinute(env, 'RUNWAY_RUNNER_CONNECTS_PER_MINUTE', 30, (rate) => rate),
      idleClaims: perMinute(env, 'RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE', 60, (rate) => rate / 6),
      authFailures: perMinute(env, 'RUNWAY_AUTH_FAILURES_PER_MINUTE', 30, (rate) => rate),
      apiRequests: perMinute(env, 'RUNWAY_API_REQUESTS_PER_MINUTE', 6_000, (rate) => rate / 30),
    },
    socketMessagesPerSecond: Math.max(
      integer(env, 'RUNWAY_SOCKET_MESSAGES_PER_SECOND', 50, 1),
      // A cap below the heartbeat rate would refuse a healthy runner.
      Math.ceil((2 * 1000) / heartbeatIntervalMs),
    ),
    logLevel: logLevel as RunwayConfig['logLevel'],
  };
}

/** Nest injection token for the validated configuration. */
export const RUNWAY_CONFIG = Symbol('RUNWAY_CONFIG');
