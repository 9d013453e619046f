import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { processGone } from '../../src/agent/process-group';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Tenant, type JobView, RestFixtures, call, clusterEnv, deleteStream, jobsStreamName, natsConnect, randomPrefix, waitFor } from '../support/cluster';
import { type TestDatabase, createTestDatabase } from '../support/postgres';
import { type ChildEnv, type Exit, type RunwayProcess, assertBuilt, startRunway, stopAll } from '../support/process';

/**
 * The runner agent as it is deployed: `node bin/runway.js runner` (the compiled build) against
 * `runway serve` processes, real jobs (sh, sleep) on this machine. Two servers share one
 * database and one NATS, so the agent can fail over from one to the other; everything is checked
 * through the public REST API.
 */

const PREFIX = randomPrefix();
const IMAGE = `ghcr.io/acme/bench@sha256:${'ab'.repeat(32)}`;

let database: TestDatabase;
let nc: NatsConnection;
let jsm: JetStreamManager;
let scratch: string;
let a: RunwayProcess;
let b: RunwayProcess;
let api: RestFixtures;
let tenant: Tenant;
const agents: RunwayProcess[] = [];
const tokens = new Map<RunwayProcess, string>();

const serverEnv = (extra: ChildEnv = {}): ChildEnv =>
  clusterEnv(database.url, PREFIX, { RUNWAY_HEARTBEAT_INTERVAL_MS: '200', RUNWAY_LOG_LEVEL: 'warn', ...extra });

/** `runway runner` for a fresh runner of a fresh spec; resolves once it is connected. */
async function startAgent(
  urls: string[],
  options: { args?: string[]; env?: ChildEnv; tokenVia?: 'flag' | 'env' } = {},
): Promise<{ agent: RunwayProcess; spec: string; runnerId: string }> {
  const spec = (await api.spec()).slug;
  const runner = await api.runner([spec]);
  const viaEnv = options.tokenVia === 'env';
  const agent = await startRunway(
    [
      'runner',
      '--url',
      urls.join(','),
      ...(viaEnv ? [] : ['--token', runner.token]),
      '--work-dir',
      join(scratch, 'work'),
      '--reconnect-max-ms',
      '1000',
      '--kill-grace-ms',
      '2000',
      ...(options.args ?? []),
    ],
    { ...(viaEnv ? { RUNWAY_RUNNER_TOKEN: runner.token } : {}), ...options.env },
  );
  agents.push(agent);
  tokens.set(agent, runner.token);
  await waitFor(() => `the agent to connect:\n${agent.output()}`, async () => (/ connected /.test(agent.stderr) ? true : undefined), 10_000);
  return { agent, spec, runnerId: runner.id };
}

/** SIGTERM twice (the second stops a running job at once), SIGKILL if it does not go. */
async function stopAgent(agent: RunwayProcess): Promise<void> {
  if (agent.exit === null) {
    agent.child.kill('SIGTERM');
    setTimeout(() => agent.exit === null && agent.child.kill('SIGTERM'), 100).unref();
    const timer = setTimeout(() => agent.child.kill('SIGKILL'), 10_000);
    await agent.exited;
    clearTimeout(timer);
  }
  await agent.stop();
}

const submit = (spec: string, body: Record<string, unknown>) => api.submit(tenant, spec, { timeout: 120, ...body });
const job = (id: string) => api.job(id);
const output = async (id: string) => (await call(api.url, 'GET', `/v1/jobs/${id}/output`, { token: tenant.key, expect: 200 })).body;
const events = async (id: string) =>
  (await call<{ items: { type: string; data: Record<string, unknown> }[] }>(api.url, 'GET', `/v1/jobs/${id}/events`, { token: tenant.key, expect: 200 })).body.items;

async function until(id: string, statuses: string[], agent: RunwayProcess, timeoutMs = 15_000): Promise<JobView> {
  let last: JobView | undefined;
  return waitFor(
    () => `job ${id} to be ${statuses.join(' or ')} (it is ${last?.status}); agent:\n${agent.output()}`,
    async () => {
      last = await job(id);
      return statuses.includes(last.status) ? last : undefined;
    },
    timeoutMs,
    50,
  );
}

async function pidFrom(file: string): Promise<number> {
  await waitFor(`${file} to be written`, async () => (existsSync(file) && readFileSync(file, 'utf8').endsWith('\n') ? true : undefined), 10_000);
  return Number((await readFile(file, 'utf8')).trim());
}


beforeAll(async () => {
  assertBuilt();
  scratch = await mkdtemp(join(os.tmpdir(), 'runway-agent-e2e-'));
  database = await createTestDatabase();
  ({ nc, jsm } = await natsConnect());
  [a, b] = await Promise.all([startRunway(['serve'], serverEnv()), startRunway(['serve'], serverEnv())]);
  await Promise.all([a.waitReady(), b.waitReady()]);
  // REST goes to B, which stays up; agents connect to A, which is killed and restarted.
  api = new RestFixtures(b.url);
  tenant = await api.tenant('team');
}, 60_000);

afterEach(() => {
  // Whatever happened, no agent ever printed its token.
  for (const [agent, token] of tokens) expect(agent.stdout + agent.stderr).not.toContain(token);
});

afterAll(async () => {
  const steps: (() => Promise<unknown>)[] = [
    () => Promise.all(agents.map(stopAgent)),
    () => stopAll(),
    () => (jsm ? deleteStream(jsm, jobsStreamName(PREFIX)) : Promise.resolve()),
    () => (nc ? nc.close() : Promise.resolve()),
    () => (database ? database.drop() : Promise.resolve()),
    () => (scratch ? rm(scratch, { recursive: true, force: true }) : Promise.resolve()),
  ];
  for (const step of steps) await step().catch((error: unknown) => process.stderr.write(`cleanup: ${(error as Error).message}\n`));
}, 30_000);

describe('runway runner (the agent process) against runway serve', () => {
  it('runs a job that prints to stdout and stderr and writes a file: completed, everything stored, the real fingerprint recorded', async () => {
    const { agent, spec } = await startAgent([a.url], { tokenVia: 'env' });
    const submitted = await submit(spec, {
      cmd: ['sh', '-c', 'echo "to stdout $GREETING"; echo to stderr >&2; mkdir -p out; printf \'{"mean": 12.5}\' > out/result.json'],
      env: { GREETING: 'hello' },
      filePaths: ['out/result.json', 'not/written.txt'],
    });
    expect(await until(submitted.id, ['completed', 'failed'], agent)).toMatchObject({ status: 'completed', exitCode: 0, failure: null });
    expect(await output(submitted.id)).toEqual({
      exitCode: 0,
      stdout: 'to stdout hello\n',
      stderr: 'to stderr\n',
      files: { 'out/result.json': '{"mean": 12.5}' },
      truncated: false,
    });
    const started = (await events(submitted.id)).find((event) => event.type === 'JobStarted')!;
    expect(started.data.fingerprint).toMatchObject({
      cpuModel: os.cpus()[0].model.trim(),
      cores: os.cpus().length,
      memory: os.totalmem(),
      kernel: os.release(),
      arch: os.arch(),
      os: os.platform(),
      hostname: os.hostname(),
    });
    expect(Object.values(started.data.fingerprint as object)).not.toContain(null);
    expect(agent.stderr).toMatch(/job finished .*outcome=completed exitCode=0 durationMs=\d+/);
    expect(readdirSync(join(scratch, 'work'))).toEqual([]); // the job's work directory is gone
  });

  it('reports a job exiting 3 as failed with exit code 3 (nonzero_exit)', async () => {
    const { agent, spec } = await startAgent([a.url]);
    const submitted = await submit(spec, { cmd: ['sh', '-c', 'echo about to fail >&2; exit 3'] });
    expect(await until(submitted.id, ['completed', 'failed'], agent)).toMatchObject({ status: 'failed', exitCode: 3, failure: 'nonzero_exit' });
    expect(await output(submitted.id)).toMatchObject({ exitCode: 3, stderr: 'about to fail\n' });
  });

  it('cancels a running sleep 300 for real: canceled, JobCancelAcknowledged, and every process of it gone', async () => {
    const { agent, spec } = await startAgent([a.url]);
    const dir = await mkdtemp(join(scratch, 'cancel-'));
    const submitted = await submit(spec, {
      cmd: ['sh', '-c', 'sleep 300 & echo $! > "$DIR/child"; echo $$ > "$DIR/pid"; exec sleep 300'],
      env: { DIR: dir },
    });
    await until(submitted.id, ['running'], agent);
    const pid = await pidFrom(join(dir, 'pid'));
    const child = await pidFrom(join(dir, 'child'));
    expect(processGone(pid)).toBe(false);
    await api.cancel(submitted.id);
    await waitFor(
      () => `JobCancelAcknowledged for ${submitted.id}; agent:\n${agent.output()}`,
      async () => ((await events(submitted.id)).some((event) => event.type === 'JobCancelAcknowledged') ? true : undefined),
      10_000,
    );
    expect(await job(submitted.id)).toMatchObject({ status: 'canceled' });
    expect((await events(submitted.id)).map((event) => event.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCanceled', 'JobCancelAcknowledged']);
    // The agent acknowledges only once the group is gone: the sleep was its own child, so ESRCH.
    expect(() => process.kill(pid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    expect(processGone(child)).toBe(true);
  });

  it('fails a job with an image at once with runner_error when the runner has no container executor', async () => {
    const { agent, spec } = await startAgent([a.url]);
    const marker = join(scratch, `ran-on-host-${randomUUID()}`);
    const submitted = await submit(spec, { image: IMAGE, cmd: ['sh', '-c', `touch ${marker}`] });
    const failed = await until(submitted.id, ['completed', 'failed'], agent);
    expect(failed).toMatchObject({ status: 'failed', failure: 'runner_error', exitCode: null, startedAt: null });
    // At once: never started (no JobStarted, no startedAt), failed straight from claimed.
    const types = (await events(submitted.id)).map((event) => event.type);
    expect(types).toEqual(['JobSubmitted', 'JobClaimed', 'JobFailed']);
    const error = (await events(submitted.id))[2].data.error;
    expect(error).toBe('runner_error: job has an image but this runner has no container executor (--executor podman|docker)');
    expect(existsSync(marker)).toBe(false);
  });

  it('runs an image job through the container engine (a fake docker on PATH): the command line, the env, the mount; a cancel kills the container', async () => {
    const bin = await mkdtemp(join(scratch, 'bin-'));
    const log = join(bin, 'docker.log');
    // Records its argv, then plays `docker run`: exports -e, goes to the mounted directory, runs the command.
    await writeFile(
      join(bin, 'docker'),
      `#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg"; done >> '${log}'
echo '--end--' >> '${log}'
[ "$1" = run ] || exit 0
shift
ep=
while [ $# -gt 0 ]; do
  case "$1" in
    --rm) shift ;;
    -v) dir="\${2%%:*}"; shift 2 ;;
    -e) export "$2"; shift 2 ;;
    --entrypoint) ep="$2"; shift 2 ;;
    --name|--network|-w) shift 2 ;;
    *) break ;;
  esac
done
shift # the image
cd "$dir" || exit 125
if [ -n "$ep" ]; then exec "$ep" "$@"; else exec "$@"; fi
`,
    );
    await chmod(join(bin, 'docker'), 0o755);
    const { agent, spec } = await startAgent([a.url], { args: ['--executor', 'docker'], env: { PATH: `${bin}:${process.env.PATH}` } });
    const submitted = await submit(spec, { image: IMAGE, cmd: ['-c', 'echo "in the container: $GREETING" > out.txt; echo ran'], entrypoint: ['sh'], env: { GREETING: 'hi' }, filePaths: ['out.txt'] });
    expect(await until(submitted.id, ['completed', 'failed'], agent)).toMatchObject({ status: 'completed', exitCode: 0 });
    expect(await output(submitted.id)).toMatchObject({ stdout: 'ran\n', files: { 'out.txt': 'in the container: hi\n' } });
    const calls = () => readFileSync(log, 'utf8').split('--end--\n').filter((call) => call !== '').map((call) => call.trimEnd().split('\n'));
    const [run] = calls();
    expect(run).toEqual([
      'run', '--rm', '--name', `runway-${submitted.id}-1`, '--network', 'none', '-w', '/work',
      '-v', expect.stringMatching(/^\/.+:\/work$/), '-e', 'GREETING=hi', '--entrypoint', 'sh',
      IMAGE, '-c', 'echo "in the container: $GREETING" > out.txt; echo ran',
    ]);

    const sleeper = await submit(spec, { image: IMAGE, cmd: ['sleep', '300'] });
    await until(sleeper.id, ['running'], agent);
    await api.cancel(sleeper.id);
    await waitFor(
      () => `JobCancelAcknowledged for ${sleeper.id}`,
      async () => ((await events(sleeper.id)).some((event) => event.type === 'JobCancelAcknowledged') ? true : undefined),
      10_000,
    );
    const name = `runway-${sleeper.id}-1`;
    expect(calls().slice(1)).toEqual(expect.arrayContaining([['kill', '--signal', 'TERM', name], ['rm', '-f', name]]));
  });

  it('on SIGTERM lets the running job finish, reports it, and exits 0', async () => {
    const { agent, spec } = await startAgent([a.url]);
    const submitted = await submit(spec, { cmd: ['sh', '-c', 'sleep 1.5; echo finished'] });
    await until(submitted.id, ['running'], agent);
    agent.child.kill('SIGTERM');
    const exit: Exit = await agent.exited;
    expect({ exit, output: exit.code === 0 ? '' : agent.output() }).toEqual({ exit: { code: 0, signal: null }, output: '' });
    // Reported before the agent exited.
    expect(await job(submitted.id)).toMatchObject({ status: 'completed', exitCode: 0 });
    expect(await output(submitted.id)).toMatchObject({ stdout: 'finished\n' });
  });

  it('on SIGTERM with --drain-timeout-ms stops a job that runs on, reports it failed, and exits 0', async () => {
    const { agent, spec } = await startAgent([a.url], { args: ['--drain-timeout-ms', '300'] });
    const dir = await mkdtemp(join(scratch, 'drain-'));
    const submitted = await submit(spec, { cmd: ['sh', '-c', 'echo $$ > "$DIR/pid"; exec sleep 300'], env: { DIR: dir } });
    await until(submitted.id, ['running'], agent);
    const pid = await pidFrom(join(dir, 'pid'));
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    expect(await job(submitted.id)).toMatchObject({ status: 'failed', failure: 'runner_error' });
    expect(processGone(pid)).toBe(true);
  });

  it('keeps a job running while its server is killed and restarted: reconnects, says running again, the job completes once', async () => {
    const { agent, spec } = await startAgent([a.url]);
    // The job runs until the test lets it end, after the agent is back: however slow the
    // restart, the job is still running when the agent reconnects.
    const go = join(scratch, `go-${randomUUID()}`);
    const submitted = await submit(spec, { cmd: ['sh', '-c', 'while [ ! -e "$GO" ]; do sleep 0.05; done; echo survived'], env: { GO: go } });
    await until(submitted.id, ['running'], agent);
    a.child.kill('SIGKILL');
    await a.exited;
    a = await startRunway(['serve'], serverEnv({ PORT: String(a.port) }));
    await a.waitReady();
    await waitFor(
      () => `the agent to resume the job on the new server:\n${agent.output()}`,
      async () => (agent.stderr.includes(`job still running; resuming it here job=${submitted.id}`) ? true : undefined),
      15_000,
    );
    await writeFile(go, '');
    expect(await until(submitted.id, ['completed', 'failed', 'canceled'], agent, 20_000)).toMatchObject({ status: 'completed', exitCode: 0 });
    expect(await output(submitted.id)).toMatchObject({ stdout: 'survived\n' });
    const types = (await events(submitted.id)).map((event) => event.type);
    expect(types).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCompleted']);
    expect(agent.stderr.match(/ connected /g)?.length).toBeGreaterThanOrEqual(2);
    expect(agent.stderr).toContain(`job still running; resuming it here job=${submitted.id}`);
    expect(agent.stderr).toMatch(/reconnecting inMs=\d+/);
  }, 40_000);

  it('fails over: given both URLs, it moves to the second server when the first is killed and takes the next job there', async () => {
    const { agent, spec } = await startAgent([a.url, b.url]);
    expect(agent.stderr).toContain(`connected url=ws://127.0.0.1:${a.port}/`);
    a.child.kill('SIGKILL');
    await a.exited;
    await waitFor(
      () => `the agent to connect to B:\n${agent.output()}`,
      async () => (agent.stderr.includes(`connected url=ws://127.0.0.1:${b.port}/`) ? true : undefined),
      10_000,
    );
    const submitted = await submit(spec, { cmd: ['sh', '-c', 'echo on b'] });
    expect(await until(submitted.id, ['completed', 'failed'], agent)).toMatchObject({ status: 'completed' });
    expect(await output(submitted.id)).toMatchObject({ stdout: 'on b\n' });
  }, 30_000);
});
