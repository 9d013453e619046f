import { existsSync, readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { TOKEN, agentHarness, waitFor } from '../../test/support/fake-agent-server';
import { EXIT } from './agent';
import { NO_EXECUTOR_ERROR } from './job-run';
import type { AgentFlags } from './options';
import { processGone as gone } from './process-group';

/**
 * The agent against a scripted server: a real WebSocket server in this process that plays the
 * server's side frame by frame (test/support/fake-agent-server.ts), and real job processes.
 */

const harness = agentHarness('runway-agent-');
const { server, job } = harness;
const agent = (urls: string[], flags: AgentFlags = {}) => harness.agent(urls, { flags });

describe('RunnerAgent against a scripted server', () => {
  it('says hello with its token and fingerprint, asks for work, runs a job with heartbeats, reports it, asks again', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    expect(c.request.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(c.request.url).toBe('/v1/runner/connect');
    expect(await c.welcome()).toEqual({ type: 'hello', version: 'runway-runner/test', capacity: 1, fingerprint: { cpuModel: 'Test CPU', cores: 2 }, jobs: [] });
    await c.next('ready');
    const j = job('echo out; echo err >&2; echo "${RUNWAY_RUNNER_TOKEN:-none}" > f; sleep 0.3', { filePaths: ['f'] });
    c.send({ type: 'job', job: j });
    const running = await c.next('running');
    expect(running).toEqual({ type: 'running', job: j.id, attempt: 1 });
    c.ack(running);
    const completed = await c.next('completed');
    expect(completed).toEqual({ type: 'completed', job: j.id, attempt: 1, exitCode: 0, stdout: 'out\n', stderr: 'err\n', files: { f: 'none\n' }, truncated: false });
    expect(c.received.filter((frame) => frame.type === 'heartbeat').length).toBeGreaterThanOrEqual(3);
    expect(c.received.filter((frame) => frame.type === 'heartbeat').every((frame) => frame.job === j.id && frame.attempt === 1)).toBe(true);
    c.ack(completed);
    await c.next('ready');
  });

  it('reports a non-zero exit as failed with its code, and a command that cannot start as failed without one', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const exits3 = job('exit 3');
    c.send({ type: 'job', job: exits3 });
    c.ack(await c.next('running'));
    const failed = await c.next('failed');
    expect(failed).toMatchObject({ type: 'failed', job: exits3.id, error: 'exit status 3', exitCode: 3 });
    c.ack(failed);
    await c.next('ready');
    const missing = { ...job(''), cmd: ['./does-not-exist'] };
    c.send({ type: 'job', job: missing });
    const notStarted = await c.next('failed'); // no `running` before it
    expect(notStarted).toMatchObject({ job: missing.id, exitCode: null, error: expect.stringContaining('ENOENT') });
  });

  it('fails an image job at once without a container executor', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo never', { image: `ghcr.io/a/b@sha256:${'0'.repeat(64)}` });
    c.send({ type: 'job', job: j });
    expect(await c.next('failed')).toEqual({ type: 'failed', job: j.id, attempt: 1, error: NO_EXECUTOR_ERROR, exitCode: null });
  });

  it('never asks for a second job while busy, and leaves alone one pushed anyway', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const first = job('sleep 0.5');
    const second = job('echo second');
    c.send({ type: 'job', job: first });
    c.ack(await c.next('running'));
    c.send({ type: 'job', job: second });
    const completed = await c.next('completed');
    expect(completed.job).toBe(first.id);
    c.ack(completed);
    await c.next('ready');
    expect(c.received.filter((frame) => frame.job === second.id)).toEqual([]);
    expect(c.received.filter((frame) => frame.type === 'ready')).toHaveLength(2);
  });

  it('cancel: the whole process group is gone before it says canceled; a cancel for a job it does not run is acknowledged at once', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const pidFile = harness.file('pids');
    const j = job(`sleep 300 & echo $! > ${pidFile}; echo $$ >> ${pidFile}; wait`);
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim().split('\n').length === 2);
    c.send({ type: 'cancel', job: j.id, attempt: 1, reason: 'canceled' });
    expect(await c.next('canceled')).toEqual({ type: 'canceled', job: j.id, attempt: 1 });
    expect(readFileSync(pidFile, 'utf8').trim().split('\n').map(Number).every(gone)).toBe(true);
    await c.next('ready');
    const other = harness.jobId();
    c.send({ type: 'cancel', job: other, attempt: 2, reason: 'canceled' });
    expect(await c.next('canceled')).toEqual({ type: 'canceled', job: other, attempt: 2 });
  });

  it('keeps a job running across a reconnect: running again after the new welcome, then the report', async () => {
    const s = await server();
    agent([s.url]);
    const first = await s.connection(0);
    await first.welcome();
    await first.next('ready');
    const j = job('sleep 0.8; echo finished');
    first.send({ type: 'job', job: j });
    first.ack(await first.next('running'));
    first.socket.close(1001, 'server shutting down');
    const second = await s.connection(1);
    // It says it still holds the job, so the server does not take it for lost.
    expect(await second.welcome()).toMatchObject({ type: 'hello', jobs: [{ job: j.id, attempt: j.attempt }] });
    second.ack(await second.next('running'));
    const completed = await second.next('completed');
    expect(completed).toMatchObject({ job: j.id, stdout: 'finished\n' });
    expect(second.received.some((frame) => frame.type === 'heartbeat')).toBe(true);
    second.ack(completed);
    await second.next('ready');
  });

  it('holds the report until running is acknowledged: running refused while the server was without its database', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo done');
    c.send({ type: 'job', job: j });
    const running = await c.next('running');
    c.send({ type: 'error', code: 'unavailable', message: 'the database is not available; try again shortly', job: j.id });
    // The job ends meanwhile; what comes next is running again, not the report (next() fails on any other frame).
    expect(await c.next('running')).toEqual(running);
    c.ack(running);
    const completed = await c.next('completed');
    expect(completed).toMatchObject({ job: j.id, exitCode: 0, stdout: 'done\n' });
    c.ack(completed);
    await c.next('ready');
  });

  it('sends the report again on the next connection when the first dropped before its ack', async () => {
    const s = await server();
    agent([s.url]);
    const first = await s.connection(0);
    await first.welcome();
    await first.next('ready');
    const j = job('echo result');
    first.send({ type: 'job', job: j });
    first.ack(await first.next('running'));
    const lost = await first.next('completed');
    first.socket.terminate(); // gone before the ack
    const second = await s.connection(1);
    // Finished but not yet acknowledged: still held, with its report to deliver.
    expect(await second.welcome()).toMatchObject({ type: 'hello', jobs: [{ job: j.id, attempt: j.attempt }] });
    expect(await second.next('running')).toMatchObject({ job: j.id });
    expect(await second.next('completed')).toEqual(lost);
    second.ack(lost);
    await second.next('ready');
  });

  it('drops a report the server refuses because the job is over there, and asks for work again', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('true');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    await c.next('completed');
    c.send({ type: 'error', code: 'invalid_transition', message: 'cannot complete a job that is failed', job: j.id });
    expect(await c.next()).toEqual({ type: 'ready' });
    // Dropped for good: on the next connection it holds no job, and asks for work without the report.
    c.socket.close(1001, 'server shutting down');
    const second = await s.connection(1);
    expect(await second.welcome()).toMatchObject({ type: 'hello', jobs: [] });
    expect(await second.next()).toEqual({ type: 'ready' });
    expect([...c.received, ...second.received].filter((frame) => frame.type === 'completed')).toHaveLength(1);
  });

  it('stops a job the server says it no longer holds (invalid_transition on running), without reporting it', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('sleep 300');
    c.send({ type: 'job', job: j });
    await c.next('running');
    c.send({ type: 'error', code: 'invalid_transition', message: 'attempt 1 is not the current attempt 2', job: j.id });
    await c.next('ready', 5_000);
    expect(c.received.filter((frame) => ['completed', 'failed', 'canceled'].includes(frame.type))).toEqual([]);
  });

  it('cuts the report to the frame limit announced in welcome', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome({ maxMessageBytes: 8_192 });
    await c.next('ready');
    c.send({ type: 'job', job: job('head -c 100000 /dev/zero | tr "\\0" x; echo result > r', { filePaths: ['r'] }) });
    c.ack(await c.next('running'));
    const completed = await c.next('completed');
    expect(Buffer.byteLength(JSON.stringify(completed))).toBeLessThanOrEqual(8_192);
    expect(completed).toMatchObject({ truncated: true, files: { r: 'result\n' } });
  });

  it('fails over to the next URL when a server refuses, and backs off after 429', async () => {
    const [a, b] = [await server(), await server()];
    a.refusals.push(503, 429, 503, 503, 503);
    b.refusals.push(429);
    agent([a.url, b.url]);
    // a: 503 -> b: 429 -> a: 429 -> b: accepted.
    const c = await b.connection(0);
    await c.welcome();
    await c.next('ready');
    expect(a.refusals).toEqual([503, 503, 503]);
  });

  it.each([401, 403])('exits with %i at the upgrade: the token is refused (exit 3), without retrying', async (status) => {
    const s = await server();
    s.refusals.push(status, status, status);
    const { exit } = agent([s.url]);
    expect(await exit).toBe(EXIT.refused);
    expect(s.refusals).toHaveLength(2);
  });

  it('exits 3 when the server closes with 1008 (revoked), stopping the running job', async () => {
    const s = await server();
    const { exit } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const pidFile = harness.file('pid');
    c.send({ type: 'job', job: job(`echo $$ > ${pidFile}; exec sleep 300`) });
    await c.next('running');
    await waitFor(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').endsWith('\n'));
    c.socket.close(1008, 'the runner token was revoked');
    expect(await exit).toBe(EXIT.refused);
    expect(gone(Number(readFileSync(pidFile, 'utf8')))).toBe(true);
  });

  it('on SIGTERM: asks for nothing more, lets the running job finish, reports it, exits 0', async () => {
    const s = await server();
    const { agent: a, exit } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('sleep 0.5; echo done');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    a.shutdown('SIGTERM');
    const completed = await c.next('completed');
    expect(completed).toMatchObject({ job: j.id, stdout: 'done\n' });
    c.ack(completed);
    expect(await exit).toBe(EXIT.ok);
    expect(c.received.filter((frame) => frame.type === 'ready')).toHaveLength(1);
  });

  it('on SIGTERM with a drain timeout: stops the job after it, reports it failed, exits 0', async () => {
    const s = await server();
    const { agent: a, exit } = agent([s.url], { drainTimeoutMs: '200' });
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('sleep 300');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    a.shutdown('SIGTERM');
    const failed = await c.next('failed');
    expect(failed).toMatchObject({ job: j.id, exitCode: null, error: expect.stringContaining('drain timeout') });
    c.ack(failed);
    expect(await exit).toBe(EXIT.ok);
  });

  it('exits 0 at once on SIGTERM when idle', async () => {
    const s = await server();
    const { agent: a, exit } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    a.shutdown('SIGTERM');
    expect(await exit).toBe(EXIT.ok);
    expect((await c.closed).code).toBe(1000);
  });

  it('asks again after a ready was refused as rate limited', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    c.send({ type: 'error', code: 'rate_limited', message: 'too many claims; back off and retry' });
    expect(await c.next(undefined, 2_000)).toEqual({ type: 'ready' });
    expect(c.received.filter((frame) => frame.type === 'ready')).toHaveLength(2);
  });

  it('reconnects when the server goes silent', async () => {
    const s = await server();
    agent([s.url]);
    const c = await s.connection(0);
    await c.welcome({ heartbeatTimeoutMs: 300 });
    await c.next('ready');
    // The server stops reading: no frames, no pongs.
    (c.socket as unknown as { _socket: Duplex })._socket.pause();
    const second = await s.connection(1, 3_000);
    expect(await second.welcome()).toMatchObject({ type: 'hello', jobs: [] });
    expect(await second.next()).toEqual({ type: 'ready' });
    expect(s.connections).toHaveLength(2);
  });
});
