import { ArgumentError } from './parse';

/** Where the commands talk to when neither `--url` nor RUNWAY_URL says. */
export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface Settings {
  /** The server's base URL, without a trailing slash. */
  url: string;
  token: string | undefined;
}

/**
 * The server and credential a command uses: the flags win over RUNWAY_URL and RUNWAY_TOKEN.
 * `env` is passed in (the commands pass `process.env`), so this is the client's one reader of
 * the environment and is tested without touching it.
 */
export function resolveSettings(flags: { url?: string; token?: string }, env: Readonly<Record<string, string | undefined>>): Settings {
  const raw = (flags.url ?? env.RUNWAY_URL ?? '').trim() || DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ArgumentError(`the server URL "${raw}" is not a URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ArgumentError(`the server URL "${raw}" must start with http:// or https://`);
  }
  if (url.search !== '' || url.hash !== '') throw new ArgumentError(`the server URL "${raw}" must not have a query or fragment`);
  const token = (flags.token ?? env.RUNWAY_TOKEN ?? '').trim();
  return { url: url.toString().replace(/\/+$/, ''), token: token === '' ? undefined : token };
}
