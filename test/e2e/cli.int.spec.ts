import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MIGRATIONS } from '../../migrations';
import { databaseUrl, templateName, withServer } from '../support/postgres';
import { type RunwayProcess, assertBuilt, runRunway, startRunway, stopAll } from '../support/process';

/**
 * The `runway` command as an operator runs it: `node bin/runway.js serve|migrate` as child
 * processes of the compiled build, configured through the environment only.
 */

const TOKEN_LINE = /^\s*RUNWAY_ADMIN_TOKEN=(runway_admin_[0-9a-f]{64})\s*$/m;
const MIGRATION_NAMES = MIGRATIONS.map((migration) => migration.name);
const ONE_MIB = 1024 * 1024;
/** A Node stack frame, e.g. "    at main (/work/main/dist/src/cli.js:12:3)". */
const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

interface HttpAnswer {
  status: number;
  contentType: string;
  body: unknown;
}

async function http(
  server: RunwayProcess,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text for the failure message
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body };
}

/** Every regular file under `dir` smaller than 1 MiB, recursively. */
async function smallFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await smallFiles(path)));
    else if (entry.isFile() && (await stat(path)).size < ONE_MIB) files.push(path);
  }
  return files;
}

/** A gracefully stopped server: it handled SIGTERM and did not have to be killed. */
function expectGracefulStop(exit: { code: number | null; signal: NodeJS.Signals | null }, server: RunwayProcess): void {
  if (!(exit.code === 0 || exit.signal === 'SIGTERM')) {
    throw new Error(`expected a clean stop on SIGTERM, got ${JSON.stringify(exit)}:\n${server.output()}`);
  }
}

/** An empty database of this test run (dropped by the global teardown if a test fails to). */
async function createEmptyDatabase(label: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${templateName().replace(/_template$/, '')}_cli_${label}_${randomBytes(4).toString('hex')}`;
  await withServer((client) => client.query(`CREATE DATABASE "${name}" TEMPLATE template0`));
  return {
    name,
    url: databaseUrl(name),
    drop: () => withServer((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/**
 * A TCP relay to PostgreSQL that holds every connection until `count` have arrived (or
 * `fallbackMs` passed): processes started "at once" boot at different speeds, and without it
 * the first would be done migrating before the last connects. Behind the gate they all reach
 * the database in the same instant, so concurrent migrators really do race.
 */
async function startGate(target: string, count: number, fallbackMs = 20_000) {
  const { hostname, port } = new URL(target);
  const sockets = new Set<Socket>();
  const held: Socket[] = [];
  let open = false;
  let arrived = 0;
  let releasedBy: 'count' | 'fallback' | null = null;
  const relay = (client: Socket) => {
    const upstream = connect(Number(port || 5432), hostname);
    sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  };
  const release = (by: 'count' | 'fallback') => {
    if (open) return;
    open = true;
    releasedBy = by;
    clearTimeout(fallback);
    for (const client of held.splice(0)) relay(client);
  };
  const server = createServer({ pauseOnConnect: true }, (client) => {
    sockets.add(client);
    arrived += 1;
    if (open) relay(client);
    else {
      held.push(client);
      if (arrived >= count) release('count');
    }
  });
  const fallback = setTimeout(() => release('fallback'), fallbackMs);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(target);
  url.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url: url.toString(),
    /** 'count': the processes reached the database together, as intended. */
    get releasedBy() {
      return releasedBy;
    },
    async close() {
      clearTimeout(fallback);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function appliedMigrations(url: string): Promise<{ name: string; count: number }[]> {
  const { Client } = await import('pg');
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; count: number }>(
      `SELECT name, count(*)::int AS count FROM migrations GROUP BY name ORDER BY name`,
    );
    return rows;
  } finally {
    await client.end();
  }
}

const tempDirs: string[] = [];
async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'runway-cli-'));
  tempDirs.push(dir);
  return dir;
}

beforeAll(() => {
  assertBuilt();
});

afterEach(async () => {
  await stopAll();
});

afterAll(async () => {
  await stopAll();
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe('runway serve, embedded PostgreSQL (no DATABASE_URL, no RUNWAY_ADMIN_TOKEN)', () => {
  it('generates and prints an operator token once, keeps only its SHA-256, and keeps its data across a restart', async () => {
    const dataDir = await tempDataDir();
    const env = { RUNWAY_DATA_DIR: dataDir };

    // First start: a token is generated and printed.
    const first = await startRunway(['serve'], env);
    await first.waitReady();
    const printed = TOKEN_LINE.exec(first.stdout);
    if (printed === null) throw new Error(`no RUNWAY_ADMIN_TOKEN=runway_admin_<64 hex> line:\n${first.output()}`);
    const token = printed[1];
    expect(first.stdout.split('RUNWAY_ADMIN_TOKEN=').length - 1).toBe(1);

    // Only its SHA-256 is kept.
    const hashFile = join(dataDir, 'admin-token.sha256');
    const stored = await readFile(hashFile, 'utf8');
    expect(stored).toMatch(/^[0-9a-f]{64}\n?$/);
    expect(stored.trim()).toBe(sha256(token));
    expect((await stat(hashFile)).mode & 0o077).toBe(0);
    const topLevel = await readdir(dataDir, { withFileTypes: true });
    const topLevelFiles = topLevel.filter((entry) => entry.isFile()).map((entry) => join(dataDir, entry.name));
    expect(topLevelFiles).toContain(hashFile);
    // The top level as asked, and the embedded database's small files too.
    const scanned = [...new Set([...topLevelFiles, ...(await smallFiles(dataDir))])];
    for (const file of scanned) {
      if ((await stat(file)).size >= ONE_MIB) continue;
      const content = await readFile(file);
      if (content.includes(token) || content.includes(token.slice('runway_admin_'.length))) {
        throw new Error(`the admin token is stored in ${file}`);
      }
    }

    // The token works; a wrong one does not.
    const slug = `cli-${randomBytes(3).toString('hex')}`;
    const created = await http(first, 'POST', '/v1/orgs', { token, body: { slug, name: 'CLI Org', plan: 'free' } });
    expect(created).toMatchObject({ status: 201, body: { slug, name: 'CLI Org', plan: 'free' } });
    const wrong = await http(first, 'POST', '/v1/orgs', {
      token: `runway_admin_${randomBytes(32).toString('hex')}`,
      body: { slug: `${slug}-x`, name: 'Nope', plan: 'free' },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.contentType).toMatch(/^application\/problem\+json/);
    expect(wrong.body).toMatchObject({ status: 401, code: 'unauthorized' });
    const none = await http(first, 'GET', `/v1/orgs/${slug}`);
    expect(none).toMatchObject({ status: 401, body: { code: 'unauthorized' } });

    const firstExit = await first.stop();
    expectGracefulStop(firstExit, first);

    // Second start on the same data directory: no new token, the old one works, the org is there.
    const second = await startRunway(['serve'], env);
    await second.waitReady();
    expect(second.stdout).not.toContain('RUNWAY_ADMIN_TOKEN=');
    expect(second.stdout).not.toContain('runway_admin_');
    expect((await readFile(hashFile, 'utf8')).trim()).toBe(sha256(token));
    const found = await http(second, 'GET', `/v1/orgs/${slug}`, { token });
    expect(found).toMatchObject({ status: 200, body: { id: (created.body as { id: string }).id, slug, name: 'CLI Org', plan: 'free' } });
    expectGracefulStop(await second.stop(), second);
  }, 60_000);

  it('prints the generated token even when the first start fails, so the operator is not locked out', async () => {
    const dataDir = await tempDataDir();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const takenPort = (blocker.address() as { port: number }).port;
    try {
      const failed = await runRunway(['serve'], { RUNWAY_DATA_DIR: dataDir, PORT: String(takenPort) });
      expect(failed.code).not.toBe(0);
      const printed = TOKEN_LINE.exec(failed.stdout);
      if (printed === null) throw new Error(`the failed first start printed no token:\n${failed.stdout}\n${failed.stderr}`);
      const server = await startRunway(['serve'], { RUNWAY_DATA_DIR: dataDir });
      await server.waitReady();
      expect(server.stdout).not.toContain('RUNWAY_ADMIN_TOKEN=');
      expect((await http(server, 'GET', '/v1/orgs', { token: printed[1] })).status).toBe(200);
      await server.stop();
    } finally {
      blocker.close();
    }
  }, 60_000);

  it('refuses a bad environment value with a message that names the variable and no stack trace', async () => {
    const dataDir = await tempDataDir();
    const cases: { env: Record<string, string>; variable: string }[] = [
      { env: { PORT: 'abc' }, variable: 'PORT' },
      { env: { DATABASE_URL: 'mysql://localhost/runway' }, variable: 'DATABASE_URL' },
    ];
    const results = await Promise.all(
      cases.map(({ env }) => runRunway(['serve'], { RUNWAY_DATA_DIR: dataDir, ...env }, 20_000)),
    );
    results.forEach((result, i) => {
      const { variable } = cases[i];
      // It exits by itself (not killed by the timeout) with a non-zero status.
      if (result.code === null || result.code === 0) {
        throw new Error(`expected a non-zero exit for a bad ${variable}:\n${result.output}`);
      }
      expect(result.stderr).toContain(variable);
      expect(result.stderr).not.toMatch(STACK_FRAME);
      expect(result.stdout).not.toMatch(STACK_FRAME);
      expect(result.stdout).not.toContain('RUNWAY_ADMIN_TOKEN=');
    });
  }, 30_000);
});

describe('runway migrate and serve on PostgreSQL, several at once', () => {
  const databases: { drop(): Promise<void> }[] = [];
  const closers: (() => Promise<void>)[] = [];

  afterEach(async () => {
    await stopAll();
    await Promise.all(closers.splice(0).map((close) => close()));
  });

  afterAll(async () => {
    await Promise.all(databases.map((database) => database.drop()));
  });

  it('4 concurrent `migrate` runs on an empty database apply each migration exactly once', async () => {
    const database = await createEmptyDatabase('migrate');
    databases.push(database);
    const gate = await startGate(database.url, 4);
    closers.push(() => gate.close());
    const results = await Promise.all(
      Array.from({ length: 4 }, () => runRunway(['migrate'], { DATABASE_URL: gate.url }, 40_000)),
    );
    expect(gate.releasedBy).toBe('count');
    for (const result of results) {
      if (result.code !== 0) throw new Error(`a migrate run failed:\n${result.output}`);
    }
    expect(await appliedMigrations(database.url)).toEqual(
      [...MIGRATION_NAMES].sort().map((name) => ({ name, count: 1 })),
    );
    // Between them the runs applied each migration once; the others found the database up to date.
    const applied = results.flatMap((result) => /^applied (.+)$/m.exec(result.stdout)?.[1].split(', ') ?? []);
    expect(applied.sort()).toEqual([...MIGRATION_NAMES].sort());
    const upToDate = results.filter((result) => result.stdout.includes('database is up to date'));
    expect(upToDate.length).toBeGreaterThanOrEqual(4 - MIGRATION_NAMES.length);
  }, 45_000);

  it('3 concurrent `serve` on an empty database all become ready', async () => {
    const database = await createEmptyDatabase('serve');
    databases.push(database);
    const gate = await startGate(database.url, 3);
    closers.push(() => gate.close());
    const token = `runway_admin_${randomBytes(32).toString('hex')}`;
    const servers = await Promise.all(
      Array.from({ length: 3 }, () => startRunway(['serve'], { DATABASE_URL: gate.url, RUNWAY_ADMIN_TOKEN: token })),
    );
    await Promise.all(servers.map((server) => server.waitReady()));
    expect(gate.releasedBy).toBe('count');
    expect(await appliedMigrations(database.url)).toEqual(
      [...MIGRATION_NAMES].sort().map((name) => ({ name, count: 1 })),
    );
    for (const server of servers) {
      // A configured token is never printed.
      expect(server.stdout).not.toContain(token);
      const list = await http(server, 'GET', '/v1/orgs', { token });
      expect(list).toMatchObject({ status: 200, body: { items: [] } });
    }
    const exits = await Promise.all(servers.map((server) => server.stop()));
    exits.forEach((exit, i) => expectGracefulStop(exit, servers[i]));
  }, 45_000);
});

describe('runway migrate, embedded PostgreSQL', () => {
  it('applies the migrations, then says the database is up to date', async () => {
    const dataDir = await tempDataDir();
    const first = await runRunway(['migrate'], { RUNWAY_DATA_DIR: dataDir }, 30_000);
    if (first.code !== 0) throw new Error(`first migrate failed:\n${first.output}`);
    expect(first.stdout).toContain(`applied ${MIGRATION_NAMES.join(', ')}`);

    const second = await runRunway(['migrate'], { RUNWAY_DATA_DIR: dataDir }, 30_000);
    if (second.code !== 0) throw new Error(`second migrate failed:\n${second.output}`);
    expect(second.stdout).toContain('database is up to date');
    expect(second.stdout).not.toMatch(/^applied /m);
  }, 45_000);
});
