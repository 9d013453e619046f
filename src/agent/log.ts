/** Concise agent log lines on stderr, as text or as one JSON object a line. Secrets never appear. */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, string | number | boolean | null | undefined>>;

export interface Log {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export interface LogOptions {
  json: boolean;
  verbose: boolean;
  /** Strings replaced by `[redacted]` wherever they would appear (the runner token). */
  secrets: readonly string[];
  write?: (line: string) => void;
  now?: () => Date;
}

const REDACTED = '[redacted]';

export function createLog(options: LogOptions): Log {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const now = options.now ?? (() => new Date());
  const secrets = options.secrets.filter((secret) => secret.length > 0);
  const redact = (text: string) => secrets.reduce((result, secret) => result.split(secret).join(REDACTED), text);

  const emit = (level: LogLevel, message: string, fields: LogFields = {}) => {
    if (level === 'debug' && !options.verbose) return;
    const present = Object.entries(fields).filter(([, value]) => value !== undefined);
    let line: string;
    if (options.json) {
      line = JSON.stringify({ time: now().toISOString(), level, msg: message, ...Object.fromEntries(present) });
    } else {
      const pairs = present.map(([key, value]) => `${key}=${formatValue(value)}`);
      line = [now().toISOString(), level.toUpperCase().padEnd(5), 'runner:', message, ...pairs].join(' ');
    }
    write(`${redact(line)}\n`);
  };
  return {
    debug: (message, fields) => emit('debug', message, fields),
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    error: (message, fields) => emit('error', message, fields),
  };
}

function formatValue(value: string | number | boolean | null | undefined): string {
  if (typeof value === 'string') return /^[\w./:@+-]+$/.test(value) ? value : JSON.stringify(value);
  return String(value);
}

/** A log that drops everything (tests). */
export const silentLog: Log = { debug() {}, info() {}, warn() {}, error() {} };
