import { EXIT } from './agent-state';
import type { Ending } from './connection';
import { DEFAULT_MAX_MESSAGE_BYTES } from './report';
import type { Turn } from './turn';
import type { Welcome } from './wire';

/**
 * The lifecycle machine's steps for the connection: open one to the next URL, say hello, take
 * the welcome (and carry on with the held job there), watch for silence, and after it ended
 * reconnect with back-off or, when the server refused the token, exit.
 */

export function connect(t: Turn, at: number): void {
  const { state } = t;
  if (state.exitCode !== null || state.link.name !== 'down') return;
  const url = state.config.urls[state.urlIndex];
  state.link = { name: 'connecting', url };
  state.lastHeard = at;
  t.do({ type: 'connect', url });
}

export function opened(t: Turn): void {
  const { link, held, config } = t.state;
  if (link.name !== 'connecting') return;
  // Says which job it still holds (none after a restart of the agent), so the server can let go
  // of one assigned to it that it lost, at once rather than after the heartbeat timeout.
  const jobs = held === null ? [] : [{ job: held.job.id, attempt: held.job.attempt }];
  t.do({ type: 'send', message: { type: 'hello', version: config.version, capacity: 1, fingerprint: config.fingerprint, jobs } });
  t.setTimer('welcome', t.timing.welcomeTimeoutMs);
}

export function welcomeTimedOut(t: Turn): void {
  const { link } = t.state;
  if (link.name !== 'connecting') return;
  t.log('warn', 'no welcome from the server; reconnecting', { url: link.url });
  t.do({ type: 'drop' });
}

export function welcomed(t: Turn, welcome: Welcome): void {
  const { state } = t;
  const { link } = state;
  if (link.name === 'down') return;
  t.clearTimer('welcome');
  state.link = { name: 'up', url: link.url, welcome };
  // Servers that do not announce their frame limit get the default one.
  state.maxMessageBytes = welcome.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  t.do({ type: 'resetBackoff' });
  state.readyOutstanding = false;
  t.log('info', 'connected', { url: link.url, runner: welcome.runner, heartbeatMs: welcome.heartbeatIntervalMs });
  t.do({ type: 'setInterval', timer: 'heartbeat', ms: welcome.heartbeatIntervalMs });
  t.do({ type: 'setInterval', timer: 'watchdog', ms: Math.max(100, Math.floor(welcome.heartbeatTimeoutMs / 3)) });
  const { held } = state;
  if (held === null) return t.sendReady();
  // Carry on with the held job on this connection: say it runs, and deliver its report.
  const { phase } = held;
  if (held.startedAt !== null && phase.name === 'running') t.log('info', 'job still running; resuming it here', { job: held.job.id });
  if (held.startedAt !== null && (phase.name === 'running' || phase.name === 'reporting')) t.sendRunning(held);
  if (phase.name === 'reporting') t.sendReport();
}

/** After a silence as long as the server's heartbeat timeout, this server is left for another. */
export function watchdog(t: Turn, at: number): void {
  const { link, lastHeard } = t.state;
  if (link.name !== 'up') return;
  const silentMs = at - lastHeard;
  if (silentMs > link.welcome.heartbeatTimeoutMs) {
    t.log('warn', 'no word from the server; reconnecting', { url: link.url, silentMs });
    t.do({ type: 'drop' });
  } else t.do({ type: 'ping' });
}

export function disconnected(t: Turn, ending: Ending): void {
  const { state } = t;
  const { link, config } = state;
  const url = link.name === 'down' ? config.urls[state.urlIndex] : link.url;
  state.link = { name: 'down' };
  state.readyOutstanding = false;
  t.clearTimer('welcome', 'report', 'running', 'ready', 'heartbeat', 'watchdog');
  if (state.exitCode !== null) return;
  const floorMs = reconnectFloor(t, ending, url);
  if (floorMs === null) return;
  state.urlIndex = (state.urlIndex + 1) % config.urls.length;
  t.do({ type: 'backOff', floorMs, url: config.urls[state.urlIndex] });
}

/** What to wait at least, on top of the back-off delay, before the next attempt after `ending`; null to stop. */
function reconnectFloor(t: Turn, ending: Ending, url: string): number | null {
  if (ending.kind === 'refused') {
    if (ending.status === 401 || ending.status === 403) {
      return fatal(t, `the server refused this runner's token (HTTP ${ending.status}: ${ending.detail}); it was rotated or revoked, or the runner is archived`);
    }
    if (ending.status === 429) {
      t.log('warn', 'connection attempts rate limited by the server; backing off', { url });
      return t.timing.rateLimitedMs;
    }
    t.log('warn', 'the server refused the connection', { url, status: ending.status, detail: ending.detail });
    return 0;
  }
  if (ending.kind === 'failed') {
    t.log('warn', 'could not connect', { url, error: ending.error });
    return 0;
  }
  switch (ending.code) {
    case 1008:
      return fatal(t, `the server closed the connection: ${ending.reason || 'policy violation'} (the token was revoked or the runner archived)`);
    case 1009: {
      t.log('error', 'the server closed the connection: a frame was over its size limit', { url });
      // The report goes again at half the size.
      const { held } = t.state;
      if (held?.phase.name === 'reporting') {
        held.phase = { ...held.phase, limit: Math.max(1024, Math.floor((held.phase.limit ?? t.state.maxMessageBytes) / 2)) };
      }
      return 0;
    }
    case 4000:
      t.log('warn', 'another connection with this runner token replaced this one: is a second agent running with the same token?', { url });
      return t.timing.replacedMs;
    default:
      t.log('warn', 'disconnected', { url, code: ending.code, reason: ending.reason || undefined });
      return 0;
  }
}

function fatal(t: Turn, message: string): null {
  t.log('error', message);
  t.finish(EXIT.refused);
  return null;
}
