/**
 * Where, when and with what a benchmark was measured: every benchmark records this in its JSON
 * (`provenance`) and prints `provenanceLine()` above each table it prints, so no figure travels
 * without its machine, date, commit and settings.
 *
 * - machine: the CPU model as /proc/cpuinfo names it, the cores Node sees, the memory, the load;
 * - date (ISO 8601, UTC) and the git commit (`git rev-parse --short HEAD`), with `dirty` when the
 *   working tree differed from it (and which paths did: benchmarks run beside work in progress);
 * - Node, the PostgreSQL server (version and the settings that move commit costs) and, for the
 *   benchmarks that start Runway with NATS, the NATS server's version;
 * - the Runway settings the benchmark changed from Runway's defaults, each with its default;
 * - how each system was driven (Runway through REST + WebSocket, the peers through their library
 *   API), when the benchmark sets Runway beside others.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { onServer } from './postgres';

/** The repository root (this file runs from dist-bench/support). */
const ROOT = join(__dirname, '..', '..');

/**
 * Runway's defaults (src/config/config.ts) for the settings benchmarks change. A benchmark
 * setting one not listed here records its default as unknown rather than guessing.
 */
export const RUNWAY_DEFAULTS: Readonly<Record<string, string>> = {
  RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '30',
  RUNWAY_RUNNER_IDLE_CLAIMS_PER_MINUTE: '60',
  RUNWAY_API_REQUESTS_PER_MINUTE: '6000',
  RUNWAY_SOCKET_MESSAGES_PER_SECOND: '50',
  RUNWAY_HEARTBEAT_INTERVAL_MS: '1000',
  RUNWAY_HEARTBEAT_TIMEOUT_MS: '30000',
  RUNWAY_CLAIM_TIMEOUT_MS: '60000',
  RUNWAY_LOG_LEVEL: 'log',
};

/**
 * Variables that only wire a benchmark's server to its own database, NATS subjects, directory
 * and port: not settings that change how Runway behaves.
 */
const WIRING = new Set(['DATABASE_URL', 'NATS_URL', 'RUNWAY_NATS_PREFIX', 'RUNWAY_DATA_DIR', 'RUNWAY_ADMIN_TOKEN', 'PORT', 'HOST', 'NO_COLOR']);

/** What every benchmark server is started with besides its own env (bench/support/runway-server.ts). */
const SERVER_ALWAYS: Readonly<Record<string, string>> = { RUNWAY_LOG_LEVEL: 'warn' };

/** The note beside every table that sets Runway against the peers. */
export const INTERFACES_NOTE =
  'Runway is driven through its public interfaces (REST submission over HTTP, runners on the WebSocket); ' +
  'graphile-worker and pg-boss through their library API in Node (addJob / send, a task function), with no network hop of their own';

export interface SettingChange {
  name: string;
  value: string;
  /** Runway's default, or null when this helper does not know it. */
  default: string | null;
}

export interface Provenance {
  date: string;
  machine: { cpuModel: string; cores: number; memoryGiB: number; loadAverage: number[] };
  git: { commit: string; dirty: boolean; dirtyPaths: string[] };
  node: string;
  postgres: { version: string; synchronousCommit: string; sharedBuffers: string; maxConnections: number } | null;
  nats: { version: string } | null;
  /** Runway settings this benchmark's servers ran with that differ from the defaults; null when it starts no Runway server. */
  runwaySettings: SettingChange[] | null;
  /** Anything else set for the measurement that a reader must know (free text, one item each). */
  notes: string[];
}

export interface ProvenanceOptions {
  /** The env the benchmark starts Runway with (wiring variables are left out, the rest compared with the defaults). */
  runwayEnv?: Readonly<Record<string, string>>;
  /** Look up the NATS server's version (benchmarks whose Runway uses NATS). */
  natsUrl?: string;
  notes?: readonly string[];
}

/** The CPU model as the kernel names it (`model name` in /proc/cpuinfo), or Node's when there is no /proc. */
function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match !== null) return match[1].trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown';
}

/** git's output, untrimmed (a porcelain status line starts with a space), or null when git fails. */
function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
}

function gitState(): Provenance['git'] {
  const commit = git(['rev-parse', '--short', 'HEAD'])?.trim() || 'unknown';
  const status = git(['status', '--porcelain', '--untracked-files=no']);
  // "XY path" (or "XY from -> to" for a rename): the path starts at the fourth character.
  const dirtyPaths = (status ?? '').split('\n').filter((line) => line.length > 3).map((line) => line.slice(3));
  // No git at all: the state of the tree is unknown, so it is not called clean.
  return { commit, dirty: status === null || dirtyPaths.length > 0, dirtyPaths };
}

async function postgresState(): Promise<Provenance['postgres']> {
  try {
    const [row] = await onServer<{ version: string; sync: string; buffers: string; max: string }>(
      `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync,
              current_setting('shared_buffers') AS buffers, current_setting('max_connections') AS max`,
    );
    return { version: row.version, synchronousCommit: row.sync, sharedBuffers: row.buffers, maxConnections: Number(row.max) };
  } catch {
    return null;
  }
}

async function natsState(url: string): Promise<Provenance['nats']> {
  const nc = await connect({ servers: url, name: 'runway-bench-provenance', timeout: 2_000 }).catch(() => null);
  if (nc === null) return null;
  try {
    return { version: nc.info?.version ?? 'unknown' };
  } finally {
    await nc.close();
  }
}

/** The Runway settings in `env` that differ from Runway's defaults (wiring left out), the server's fixed ones included. */
export function runwaySettingChanges(env: Readonly<Record<string, string>>): SettingChange[] {
  const all = { ...SERVER_ALWAYS, ...env };
  return Object.entries(all)
    .filter(([name]) => !WIRING.has(name))
    .filter(([name, value]) => RUNWAY_DEFAULTS[name] !== value)
    .map(([name, value]) => ({ name, value, default: RUNWAY_DEFAULTS[name] ?? null }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export async function collectProvenance(options: ProvenanceOptions = {}): Promise<Provenance> {
  const [postgres, nats] = await Promise.all([postgresState(), options.natsUrl === undefined ? Promise.resolve(null) : natsState(options.natsUrl)]);
  return {
    date: new Date().toISOString(),
    machine: { cpuModel: cpuModel(), cores: cpus().length, memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10, loadAverage: loadavg() },
    git: gitState(),
    node: process.version,
    postgres,
    nats,
    runwaySettings: options.runwayEnv === undefined ? null : runwaySettingChanges(options.runwayEnv),
    notes: [...(options.notes ?? [])],
  };
}

/** `1000000000` as `1e9`, so the line stays short. */
function compact(value: string): string {
  return /^1000000000+$/.test(value) ? `1e${value.length - 1}` : value;
}

/**
 * One line for above a table: where, when, at which commit, and the settings that differ from the
 * defaults. The notes are printed by the caller where they belong.
 */
export function provenanceLine(p: Provenance): string {
  const pg = p.postgres === null ? 'PostgreSQL unknown' : `PostgreSQL ${p.postgres.version.split(' ')[0]} (synchronous_commit=${p.postgres.synchronousCommit}, shared_buffers ${p.postgres.sharedBuffers})`;
  const nats = p.nats === null ? '' : `, nats-server ${p.nats.version}`;
  const commit = `${p.git.commit}${p.git.dirty ? ` + uncommitted changes in ${p.git.dirtyPaths.length} file(s)` : ''}`;
  const settings =
    p.runwaySettings === null
      ? 'no Runway server (its code in process)'
      : p.runwaySettings.length === 0
        ? 'Runway at its defaults'
        : `Runway settings changed: ${p.runwaySettings.map((s) => `${s.name}=${compact(s.value)} (default ${s.default ?? '?'})`).join(', ')}`;
  return (
    `# measured ${p.date.slice(0, 16).replace('T', ' ')} UTC at ${commit}; ${p.machine.cores} x ${p.machine.cpuModel}, ${p.machine.memoryGiB} GiB, ` +
    `load ${p.machine.loadAverage.map((l) => l.toFixed(1)).join(' ')}; Node ${p.node}, ${pg}${nats}; ${settings}`
  );
}
