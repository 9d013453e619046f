import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestDatabase, createTestDatabase } from '../support/postgres';
import { type RunwayProcess, assertBuilt, freePort, runRunway, startRunway } from '../support/process';
import { TestRunner } from '../support/runner-client';

/**
 * The client commands as people and scripts run them: `node bin/runway.js jobs|projects|queue|
 * usage|admin ...` as child processes of the compiled build, against a `runway serve` process,
 * configured by RUNWAY_URL and RUNWAY_TOKEN. Runners are simulated in this process (TestRunner).
 */

const ADMIN = `runway_admin_${randomBytes(32).toString('hex')}`;
/** A Node stack frame, e.g. "    at main (/work/main/dist/src/cli.js:12:3)". */
const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m;
/** Anything but newline that a terminal would interpret: no `\r`, no escape sequences when piped. */
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f]/; // eslint-disable-line no-control-regex
/** A line of a piped `jobs watch`: local time, status, text. */
const WATCH_LINE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} {2}(\w+) +(.*)$/;

let database: TestDatabase;
let server: RunwayProcess;
const watchers: RunwayProcess[] = [];
const runners: TestRunner[] = [];

beforeAll(async () => {
  assertBuilt();
  database = await createTestDatabase();
  server = await startServer();
}, 60_000);

afterEach(async () => {
  await Promise.all(watchers.splice(0).map((w) => w.stop()));
  await Promise.all(runners.splice(0).map((r) => r.close()));
});

afterAll(async () => {
  await server?.stop();
  await database?.drop();
});

async function startServer(port?: number): Promise<RunwayProcess> {
  const started = await startRunway(['serve'], {
    DATABASE_URL: database.url,
    RUNWAY_ADMIN_TOKEN: ADMIN,
    ...(port === undefined ? {} : { PORT: String(port) }),
  });
  await started.waitReady();
  return started;
}

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

type Result = Awaited<ReturnType<typeof runRunway>>;

/** `runway <args>` with RUNWAY_URL and RUNWAY_TOKEN (the operator's unless given; null: none) in its environment. */
function cli(args: string[], token: string | null = ADMIN, env: Record<string, string | undefined> = {}): Promise<Result> {
  return runRunway(args, { RUNWAY_URL: server.url, RUNWAY_TOKEN: token ?? undefined, ...env }, 20_000);
}

/** Runs a command that must succeed; its stdout. */
async function ok(args: string[], token?: string): Promise<string> {
  const result = await cli(args, token);
  if (result.code !== 0) throw new Error(`\`runway ${args.join(' ')}\` exited ${result.code}:\n${result.output}`);
  expect(result.stderr).toBe('');
  return result.stdout;
}

/** Runs a command with --json that must succeed; its one JSON document. */
async function json<T = Record<string, unknown>>(args: string[], token?: string): Promise<T> {
  // Before `--`: what follows it is the job's command.
  const end = args.indexOf('--');
  const stdout = await ok(end < 0 ? [...args, '--json'] : [...args.slice(0, end), '--json', ...args.slice(end)], token);
  expect(stdout.endsWith('\n')).toBe(true);
  expect(stdout.trim().split('\n')).toHaveLength(1);
  return JSON.parse(stdout) as T;
}

/** A command the server refuses: exit 1, `runway: <code>: <detail>` on stderr, nothing on stdout, no stack trace. */
async function refused(args: string[], token: string | null, code: string, detail: string | RegExp): Promise<Result> {
  const result = await cli(args, token);
  if (result.code !== 1) throw new Error(`expected exit 1 for \`runway ${args.join(' ')}\`:\n${result.output}`);
  expect(result.stdout).toBe('');
  const first = result.stderr.split('\n')[0];
  expect(first.startsWith(`runway: ${code}: `)).toBe(true);
  expect(first.slice(`runway: ${code}: `.length)).toMatch(detail);
  expect(result.stderr).not.toMatch(STACK_FRAME);
  return result;
}

/** Starts `runway <args>` and leaves it running (stopped after the test). */
async function start(args: string[], token: string): Promise<RunwayProcess> {
  const proc = await startRunway(args, { RUNWAY_URL: server.url, RUNWAY_TOKEN: token });
  watchers.push(proc);
  return proc;
}

/** Resolves once the process's stdout matches `pattern`; fails with its output if it exits or time runs out. */
function waitForOutput(proc: RunwayProcess, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pattern.test(proc.stdout)) return done(null);
      if (proc.exit !== null) return done(new Error(`exited before printing ${pattern}:\n${proc.output()}`));
    };
    const done = (error: Error | null) => {
      clearTimeout(timer);
      proc.child.stdout!.off('data', check);
      proc.child.off('close', check);
      if (error === null) resolve();
      else reject(error);
    };
    const timer = setTimeout(() => done(new Error(`no ${pattern} within ${timeoutMs} ms:\n${proc.output()}`)), timeoutMs);
    proc.child.stdout!.on('data', check);
    proc.child.on('close', check);
    check();
  });
}

/** Retries `check` until it passes (a view that trails the log), failing with its last error. */
async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

/** The statuses of a piped watch's lines, in order, each once in a row. */
function statuses(stdout: string): string[] {
  const seen: string[] = [];
  for (const line of stdout.split('\n')) {
    const status = WATCH_LINE.exec(line)?.[1];
    if (status !== undefined && seen[seen.length - 1] !== status) seen.push(status);
  }
  return seen;
}

interface Job {
  id: string;
  status: string;
  [key: string]: unknown;
}

/** An organization with a key, a spec, a project (made with the CLI), and a runner for the spec. */
async function tenant() {
  const [org, spec, project] = [unique('org'), unique('spec'), unique('proj')];
  await Promise.all([
    json(['admin', 'orgs', 'create', org, '--plan', 'team']),
    json(['admin', 'specs', 'create', spec, '--arch', 'x86_64', '--cpu', '8', '--memory', '32GiB', '--disk', '512GiB']),
  ]);
  const [{ key }, runner] = await Promise.all([
    json<{ key: string }>(['admin', 'keys', 'create', '--org', org, '--name', 'ci']),
    json<{ id: string; token: string }>(['admin', 'runners', 'create', unique('runner'), '--spec', spec]),
  ]);
  await json(['projects', 'create', project], key);
  return { org, key, spec, project, runner };
}

/** A simulated runner that is connected and waiting for a job. */
async function readyRunner(token: string): Promise<TestRunner> {
  const runner = await TestRunner.hello(server.url, token);
  runners.push(runner);
  runner.send({ type: 'ready' });
  return runner;
}

describe('runway admin: organizations, keys, specs, runners (operator token)', () => {
  it('creates, lists, shows and updates organizations; issues, lists and revokes keys, with --json', async () => {
    const slug = unique('acme');
    const org = await json(['admin', 'orgs', 'create', slug, '--plan', 'free', '--name', 'Acme Inc.']);
    expect(org).toMatchObject({ slug, name: 'Acme Inc.', plan: 'free', maxConcurrency: null });

    expect((await json<{ items: { slug: string }[] }>(['admin', 'orgs', 'list'])).items.map((o) => o.slug)).toContain(slug);
    const updated = await json(['admin', 'orgs', 'update', slug, '--plan', 'team', '--max-concurrency', '4']);
    expect(updated).toMatchObject({ id: org.id, plan: 'team', maxConcurrency: 4 });
    expect(await json(['admin', 'orgs', 'update', slug, '--max-concurrency', 'none'])).toMatchObject({ maxConcurrency: null });
    expect(await json(['admin', 'orgs', 'show', slug])).toMatchObject({ id: org.id, plan: 'team' });

    const first = await json<{ id: string; key: string }>(['admin', 'keys', 'create', '--org', slug, '--name', 'ci']);
    expect(first.key).toMatch(/^runway_key_[0-9a-f]{64}$/);

    // Without --json the secret comes with a warning that it is shown once.
    const human = await ok(['admin', 'keys', 'create', '--org', slug, '--name', 'laptop']);
    expect(human).toMatch(/shown only now/);
    const second = /RUNWAY_TOKEN=(runway_key_[0-9a-f]{64})/.exec(human)?.[1];
    expect(second).toBeDefined();

    const keys = await json<{ items: { id: string; name: string; revokedAt: string | null }[] }>(['admin', 'keys', 'list', '--org', slug]);
    expect(keys.items.map((k) => k.name).sort()).toEqual(['ci', 'laptop']);
    expect(JSON.stringify(keys)).not.toContain(first.key);

    // The key works, for its organization only; once revoked it does not.
    expect(await json(['admin', 'orgs', 'show', slug], first.key)).toMatchObject({ slug });
    const revoked = await json<{ id: string; revokedAt: string | null }>(['admin', 'keys', 'revoke', first.id, '--org', slug]);
    expect(revoked).toMatchObject({ id: first.id, revokedAt: expect.any(String) });
    await refused(['admin', 'orgs', 'show', slug], first.key, 'unauthorized', 'the credential is not valid');
    expect(await json(['admin', 'orgs', 'show', slug], second)).toMatchObject({ slug });

    // A human list.
    const table = await ok(['admin', 'orgs', 'list']);
    expect(table.split('\n')[0]).toMatch(/^SLUG +PLAN +MAX CONCURRENCY +NAME +CREATED +ID$/);
    expect(table).toMatch(new RegExp(`^${slug} +team +none +Acme Inc\\.`, 'm'));
  }, 60_000);

  it('creates and lists specs; registers, rotates, archives and unarchives runners', async () => {
    const spec = unique('spec');
    const created = await json(['admin', 'specs', 'create', spec, '--arch', 'aarch64', '--cpu', '16', '--memory', '64GiB', '--disk', '1TB', '--network']);
    expect(created).toMatchObject({ slug: spec, name: spec, architecture: 'aarch64', cpu: 16, memory: 64 * 2 ** 30, disk: 1e12, network: true });
    expect((await json<{ items: { slug: string }[] }>(['admin', 'specs', 'list'])).items.map((s) => s.slug)).toContain(spec);
    expect(await ok(['admin', 'specs', 'list'])).toMatch(new RegExp(`^${spec} +aarch64 +16 +64 GiB +931\\.3 GiB +yes`, 'm'));

    const slug = unique('bench');
    const runner = await json<{ id: string; slug: string; token: string; state: string }>(['admin', 'runners', 'create', slug, '--spec', spec, '--name', 'Rack 3']);
    expect(runner).toMatchObject({ slug, name: 'Rack 3', specs: [spec], state: 'offline', archived: false });
    expect(runner.token).toMatch(/^runway_runner_[0-9a-f]{64}$/);

    const connected = await TestRunner.hello(server.url, runner.token);
    runners.push(connected);
    // Presence is a projection of the log: it follows the connection shortly.
    await eventually(async () => {
      const listed = await json<{ items: { slug: string; state: string }[] }>(['admin', 'runners', 'list']);
      expect(listed.items.find((r) => r.slug === slug)).toMatchObject({ state: 'idle' });
    });

    // Rotation: the new token is shown once; the old one stops working and its socket is closed.
    const rotated = await ok(['admin', 'runners', 'rotate', slug]);
    expect(rotated).toMatch(/shown only now/);
    const token = /^\s+(runway_runner_[0-9a-f]{64})$/m.exec(rotated)?.[1];
    expect(token).toBeDefined();
    expect(token).not.toBe(runner.token);
    await connected.whenClosed();
    await expect(TestRunner.connect(server.url, runner.token)).rejects.toMatchObject({ status: 401 });
    const again = await TestRunner.hello(server.url, token!);
    runners.push(again);

    const renamed = await json(['admin', 'runners', 'update', slug, '--name', 'Rack 4']);
    expect(renamed).toMatchObject({ slug, name: 'Rack 4' });
    expect(await json(['admin', 'runners', 'show', runner.id])).toMatchObject({ slug, name: 'Rack 4', fingerprint: { cpuModel: 'Test CPU' } });

    // Archived: disconnected and refused; unarchived: back.
    expect(await json(['admin', 'runners', 'archive', slug])).toMatchObject({ archived: true });
    await again.whenClosed();
    await expect(TestRunner.connect(server.url, token!)).rejects.toMatchObject({ status: 401 });
    expect(await json(['admin', 'runners', 'unarchive', slug])).toMatchObject({ archived: false });
    runners.push(await TestRunner.hello(server.url, token!));

    expect(await ok(['admin', 'runners', 'show', slug])).toMatch(/^fingerprint +(cores=4, cpuModel=Test CPU|cpuModel=Test CPU, cores=4)$/m);
  }, 60_000);
});

describe('runway jobs and projects (organization key)', () => {
  it('submits (everything after -- is the command), lists, shows, cancels and prints events', async () => {
    const t = await tenant();
    expect((await json<{ items: { slug: string }[] }>(['projects', 'list'], t.key)).items.map((p) => p.slug)).toEqual([t.project]);

    const submit = [
      'jobs', 'submit', '--project', t.project, '--spec', t.spec,
      '--env', 'A=1', '--env', 'RUSTFLAGS=-C target-cpu=native',
      '--timeout', '10m', '--max-attempts', '2', '--file-path', 'out/result.json',
      '--entrypoint', '/bin/sh', '--entrypoint', '-c', '--idempotency-key', 'build-1',
    ];
    const job = await json<Job>([...submit, '--', 'cargo', 'bench', '--features', 'a b'], t.key);
    expect(job).toMatchObject({ status: 'pending', spec: t.spec, maxAttempts: 2, timeout: 600 });
    expect(await json(['jobs', 'show', job.id], t.key)).toMatchObject({ queue: { position: 1, ahead: 0 } });

    const lines = (await ok(['jobs', 'events', job.id, '--json'], t.key)).trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toMatchObject({
      streamId: job.id,
      type: 'JobSubmitted',
      globalPosition: expect.any(Number),
      data: {
        cmd: ['cargo', 'bench', '--features', 'a b'],
        entrypoint: ['/bin/sh', '-c'],
        env: { A: '1', RUSTFLAGS: '-C target-cpu=native' },
        filePaths: ['out/result.json'],
        maxAttempts: 2,
        timeout: 600,
      },
    });

    // The same key and body: the same job.
    const replay = await ok([...submit, '--', 'cargo', 'bench', '--features', 'a b'], t.key);
    expect(replay).toContain(`job ${job.id} was already submitted with this idempotency key (pending)`);
    // Same key, another body: refused.
    await refused([...submit, '--', 'cargo', 'test'], t.key, 'conflict', /Idempotency-Key/);

    const other = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--', './bench'], t.key);
    const page = await json<{ items: Job[]; nextCursor: string | null }>(['jobs', 'list', '--project', t.project, '--limit', '1'], t.key);
    expect(page.items).toHaveLength(1);
    expect(page.nextCursor).toEqual(expect.any(String));
    const all = await json<{ items: Job[]; nextCursor: string | null }>(['jobs', 'list', '--project', t.project, '--limit', '1', '--all'], t.key);
    expect(all.items.map((j) => j.id).sort()).toEqual([job.id, other.id].sort());
    expect(all.nextCursor).toBeNull();

    const table = await ok(['jobs', 'list', '--project', t.project], t.key);
    expect(table.split('\n')[0]).toMatch(/^ID +STATUS +SPEC +CREATED +RAN +EXIT +FAILURE$/);
    expect(table).toMatch(new RegExp(`^${job.id} +pending +${t.spec} `, 'm'));

    const shown = await ok(['jobs', 'show', job.id], t.key);
    expect(shown).toMatch(/^status +pending$/m);
    expect(shown).toMatch(/^queue +position \d+ \(\d+ ahead\), .*waiting for: no runner of this spec is connected$/m);
    expect(await json(['jobs', 'show', job.id], t.key)).toMatchObject({ id: job.id, status: 'pending' });

    expect(await json(['jobs', 'cancel', job.id], t.key)).toMatchObject({ id: job.id, status: 'canceled' });
    await refused(['jobs', 'cancel', job.id], t.key, 'invalid_transition', /canceled/);
    const events = await ok(['jobs', 'events', job.id], t.key);
    expect(events).toMatch(/^1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +JobSubmitted +key:\S+ +submitted on spec \S+: cargo bench --features 'a b'$/m);
    expect(events).toMatch(/^2 +.* JobCanceled +key:\S+ +canceled by key:/m);

    // The other organization's key sees none of it.
    const stranger = await tenant();
    await refused(['jobs', 'show', job.id], stranger.key, 'not_found', 'job not found');
  }, 60_000);

  it('submits a matrix of jobs in one batch (NDJSON or a JSON array, over the options\' defaults), all or nothing', async () => {
    const t = await tenant();
    const dir = await mkdtemp(join(tmpdir(), 'runway-matrix-'));
    try {
      const ndjson = join(dir, 'commits.ndjson');
      await writeFile(ndjson, ['{"env": {"COMMIT": "aaa"}}', '', '{"env": {"COMMIT": "bbb"}, "timeout": 120}', '{"cmd": ["make", "bench"]}', ''].join('\n'));
      const { items } = await json<{ items: Job[] }>(
        ['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--env', 'RUSTFLAGS=-O', '--matrix', ndjson, '--', 'cargo', 'bench'],
        t.key,
      );
      expect(items.map((job) => job.timeout)).toEqual([3600, 120, 3600]);
      const definitions = await Promise.all(
        items.map(async (job) => JSON.parse((await ok(['jobs', 'events', job.id, '--json'], t.key)).trim()).data as { cmd: string[]; env: Record<string, string> }),
      );
      expect(definitions.map((d) => [d.cmd, d.env])).toEqual([
        [['cargo', 'bench'], { RUSTFLAGS: '-O', COMMIT: 'aaa' }],
        [['cargo', 'bench'], { RUSTFLAGS: '-O', COMMIT: 'bbb' }],
        [['make', 'bench'], { RUSTFLAGS: '-O' }],
      ]);

      // A JSON array, as text: one line per job. One bad job refuses the whole, named by its index.
      const array = join(dir, 'matrix.json');
      await writeFile(array, JSON.stringify([{ cmd: ['a'] }, { cmd: ['b'], spec: t.spec }]));
      const printed = await ok(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--matrix', array], t.key);
      expect(printed.split('\n')[0]).toBe('submitted 2 jobs:');
      expect(printed.trim().split('\n').slice(1)).toEqual([expect.stringMatching(new RegExp(`^\\S{36}  ${t.spec}  pending$`)), expect.any(String)]);
      await writeFile(array, JSON.stringify([{ cmd: ['a'] }, { cmd: ['b'], spec: 'no-such-spec' }]));
      await refused(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--matrix', array], t.key, 'validation_failed', /jobs\[1\]: spec "no-such-spec" does not exist/);
      const listed = await json<{ items: Job[] }>(['jobs', 'list', '--project', t.project, '--all'], t.key);
      expect(listed.items).toHaveLength(5);

      // Local mistakes are named before anything is sent.
      await writeFile(array, '{"cmd": ["a"]}\nnot json\n');
      const bad = await cli(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--matrix', array], t.key);
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/line 2: not valid JSON/);
      const none = await cli(['jobs', 'submit', '--project', t.project, '--spec', t.spec], t.key);
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/the command to run goes after --/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('audit, queue and usage', async () => {
    const t = await tenant();
    const job = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--', './bench'], t.key);

    const queue = await json<{ spec: string; total: number; items: { id: string; position: number }[] }>(['queue', '--spec', t.spec], t.key);
    expect(queue).toMatchObject({ spec: t.spec, total: 1, items: [{ id: job.id, position: 1 }] });
    expect(await ok(['queue', '--spec', t.spec], t.key)).toMatch(new RegExp(`^1 +${job.id} `, 'm'));

    // Run it to the end.
    const runner = await readyRunner(t.runner.token);
    await runner.next('job');
    await runner.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    await runner.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0, stdout: 'ok\n' }, 'ack');

    const audit = await json<{ verified: boolean; status: string; eventCount: number; chainValid: boolean }>(['jobs', 'audit', job.id], t.key);
    expect(audit).toMatchObject({ verified: true, status: 'completed', eventCount: 4, chainValid: true });
    expect(await ok(['jobs', 'audit', job.id], t.key)).toMatch(/^verified +yes$/m);

    const usage = await json<{ minutes: number; jobs: number; byProject: unknown[] }>(['usage', '--org', t.org], t.key);
    expect(usage).toMatchObject({ minutes: expect.any(Number), jobs: expect.any(Number), byProject: expect.any(Array) });
    expect(await ok(['usage', '--org', t.org, '--from', '2020-01-01', '--to', '2020-02-01'], t.key)).toMatch(/: 0 min over 0 jobs$/m);
    await refused(['usage', '--org', t.org, '--from', 'yesterday'], t.key, 'validation_failed', /from must be an ISO-8601/);
  }, 60_000);
});

describe('runway jobs watch', () => {
  it('follows a job a runner takes and completes: plain lines when piped, NDJSON with --json, exit 0', async () => {
    const t = await tenant();
    const job = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--file-path', 'out.json', '--', './bench'], t.key);
    const watch = await start(['jobs', 'watch', job.id], t.key);
    const ndjson = await start(['jobs', 'watch', job.id, '--json'], t.key);
    await waitForOutput(watch, /\bpending\b/);
    await waitForOutput(ndjson, /JobSubmitted/);

    const runner = await readyRunner(t.runner.token);
    expect((await runner.next('job')).job).toMatchObject({ id: job.id, attempt: 1 });
    await waitForOutput(watch, /\bclaimed\b/);
    await runner.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    await waitForOutput(watch, /\brunning\b/);
    const stdout = 'bench: 12.5 ns/iter\n';
    await runner.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0, stdout, stderr: 'warming up\n', files: { 'out.json': '{"mean":12.5}' } }, 'ack');

    const exit = await watch.exited;
    if (exit.code !== 0) throw new Error(`watch exited ${exit.code}:\n${watch.output()}`);
    expect(watch.stderr).toBe('');
    expect(watch.stdout).not.toMatch(CONTROL);
    expect(statuses(watch.stdout)).toEqual(['pending', 'claimed', 'running', 'completed']);
    expect(watch.stdout).toMatch(new RegExp(`claimed +claimed by runner ${t.runner.id}$`, 'm'));
    const last = watch.stdout.trimEnd().split('\n').pop();
    expect(last).toMatch(/^completed, exit 0, ran \S+, waited \S+, billed 1 min$/);

    expect((await ndjson.exited).code).toBe(0);
    const documents = ndjson.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type?: string; status?: string; globalPosition?: number });
    expect(documents.filter((d) => d.globalPosition !== undefined).map((d) => d.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
    expect(documents[documents.length - 1]).toMatchObject({ id: job.id, status: 'completed', exitCode: 0 });

    // The output, as it was sent back.
    expect((await cli(['jobs', 'output', job.id], t.key)).stdout).toBe(stdout);
    expect((await cli(['jobs', 'output', job.id, '--stderr'], t.key)).stdout).toBe('warming up\n');
    expect((await cli(['jobs', 'output', job.id, '--file', 'out.json'], t.key)).stdout).toBe('{"mean":12.5}');
    await refused(['jobs', 'output', job.id, '--file', 'nope.json'], t.key, 'not_found', 'the job sent back no file "nope.json" (its files: out.json)');

    // A finished job: the history and the outcome, at once.
    const replay = await cli(['jobs', 'watch', job.id], t.key);
    expect(replay.code).toBe(0);
    expect(statuses(replay.stdout)).toEqual(['pending', 'claimed', 'running', 'completed']);
  }, 60_000);

  it('exits 1 when the job it follows is canceled', async () => {
    const t = await tenant();
    const job = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--', './bench'], t.key);
    const watch = await start(['jobs', 'watch', job.id], t.key);
    await waitForOutput(watch, /\bpending\b/);
    expect(await ok(['jobs', 'cancel', job.id], t.key)).toBe(`canceled job ${job.id}\n`);
    const exit = await watch.exited;
    expect(exit.code).toBe(1);
    expect(statuses(watch.stdout)).toEqual(['pending', 'canceled']);
    expect(watch.stdout.trimEnd().split('\n').pop()).toBe('canceled, never ran');
    expect(watch.stdout).not.toMatch(CONTROL);
  }, 30_000);
});

describe('errors: the server refusing, bad usage, no server', () => {
  it('a bad token: unauthorized and the detail, exit 1; an unknown job: not_found, exit 1; no stack traces', async () => {
    const t = await tenant();
    const job = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--', './bench'], t.key);
    const wrong = `runway_key_${randomBytes(32).toString('hex')}`;
    await refused(['jobs', 'show', job.id], wrong, 'unauthorized', 'the credential is not valid');
    await refused(['jobs', 'watch', job.id], wrong, 'unauthorized', 'the credential is not valid');
    await refused(['admin', 'orgs', 'list'], t.key, 'forbidden', /.+/);
    const missing = '01900000-0000-7000-8000-000000000000';
    await refused(['jobs', 'show', missing], t.key, 'not_found', 'job not found');
    await refused(['jobs', 'watch', missing], t.key, 'not_found', 'job not found');
    await refused(['jobs', 'output', job.id], t.key, 'not_found', /did not finish/);

    // No token at all: the server's answer, and what to do about it.
    const none = await refused(['jobs', 'show', job.id], null, 'unauthorized', /Authorization: Bearer/);
    expect(none.stderr).toContain('set RUNWAY_TOKEN or pass --token');
  }, 60_000);

  it('usage errors exit 2', async () => {
    for (const args of [
      ['jobs', 'list'],
      ['jobs', 'submit', '--project', 'p', '--spec', 's', '--env', 'NOEQUALS', '--', 'x'],
      ['jobs', 'submit', '--project', 'p', '--spec', 's', '--max-attempts', '9', '--', 'x'],
      ['jobs', 'submit', '--project', 'p', '--spec', 's'],
      ['jobs', 'output', 'j', '--stderr', '--file', 'f'],
      ['admin', 'orgs', 'create', 'x', '--plan', 'platinum'],
      ['admin', 'orgs', 'update', 'x'],
      ['jobs', 'nope'],
      ['jobs', 'show', 'j', '--url', 'localhost:8080'],
    ]) {
      const result = await cli(args);
      if (result.code !== 2) throw new Error(`expected exit 2 for \`runway ${args.join(' ')}\`:\n${result.output}`);
      expect(result.stderr).not.toMatch(STACK_FRAME);
      expect(result.stdout).toBe('');
    }
  }, 60_000);

  it('an unreachable server: exit 2 with a message naming the URL; --url wins over RUNWAY_URL', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    for (const args of [['jobs', 'show', '01900000-0000-7000-8000-000000000000'], ['jobs', 'watch', '01900000-0000-7000-8000-000000000000'], ['admin', 'orgs', 'list']]) {
      const result = await cli(args, ADMIN, { RUNWAY_URL: nowhere });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(`runway: cannot reach Runway at ${nowhere}: connection refused (ECONNREFUSED)\n`);
      expect(result.stdout).toBe('');
    }
    const flagWins = await cli(['admin', 'orgs', 'list', '--json', '--url', server.url], ADMIN, { RUNWAY_URL: nowhere });
    expect(flagWins.code).toBe(0);
    expect(JSON.parse(flagWins.stdout)).toMatchObject({ items: expect.any(Array) });
    const tokenWins = await cli(['admin', 'orgs', 'list', '--token', ADMIN], 'runway_key_wrong');
    expect(tokenWins.code).toBe(0);
  }, 30_000);
});

// Last: it restarts the server the other tests share.
describe('runway jobs watch across a server restart', () => {
  it('reconnects after the server restarts and misses nothing', async () => {
    const t = await tenant();
    const job = await json<Job>(['jobs', 'submit', '--project', t.project, '--spec', t.spec, '--', './bench'], t.key);
    let runner = await readyRunner(t.runner.token);
    await runner.next('job');
    await runner.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    const watch = await start(['jobs', 'watch', job.id], t.key);
    await waitForOutput(watch, /\brunning\b/);

    // The server goes away while the job runs, and comes back on the same address.
    const port = server.port;
    await server.stop();
    await runner.whenClosed();
    server = await startServer(port);

    // The runner reconnects, says it still runs the job, and completes it.
    runner = await TestRunner.hello(server.url, t.runner.token);
    runners.push(runner);
    await runner.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    await runner.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');

    const exit = await watch.exited;
    if (exit.code !== 0) throw new Error(`watch exited ${exit.code}:\n${watch.output()}`);
    const lines = watch.stdout.split('\n').filter((line) => WATCH_LINE.test(line));
    expect(lines.map((line) => WATCH_LINE.exec(line)![1])).toEqual(['pending', 'claimed', 'running', 'completed']);
  }, 60_000);
});
