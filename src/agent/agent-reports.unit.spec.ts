import { type Frame, agentHarness, waitFor } from '../../test/support/fake-agent-server';
import { type AgentTiming, EXIT } from './agent';
import type { Log, LogFields, LogLevel } from './log';

/**
 * The agent's job report between the end of the job and the server's acknowledgement, against a
 * scripted server (test/support/fake-agent-server.ts): a cancel that arrives in that window, a
 * report refused as malformed, and stopping (SIGTERM) with the report not yet acknowledged.
 */

interface Line {
  level: LogLevel;
  message: string;
  fields: LogFields;
}

/** A log that keeps its lines, to assert what the agent said. */
function recordingLog(): Log & { lines: Line[]; has(level: LogLevel, message: string): boolean } {
  const lines: Line[] = [];
  const at = (level: LogLevel) => (message: string, fields: LogFields = {}) => void lines.push({ level, message, fields });
  return {
    lines,
    has: (level, message) => lines.some((line) => line.level === level && line.message === message),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
}

const harness = agentHarness('runway-agent-reports-');
const { server, job } = harness;

/** An agent with a log the test reads, and its delays shortened further by `timing`. */
function agent(urls: string[], timing: Partial<AgentTiming> = {}) {
  const log = recordingLog();
  return { ...harness.agent(urls, { timing, log }), log };
}

/** `promise`, or a failure if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

const reportsOf = (frames: Frame[], id: string) => frames.filter((frame) => (frame.type === 'completed' || frame.type === 'failed') && frame.job === id);

describe('RunnerAgent: a cancel after the job ended, before its report was acknowledged', () => {
  // The server canceled the job meanwhile: its machine refuses `completed` for a canceled job and
  // takes `canceled` as the acknowledgement of the cancel (docs/protocol.md, "The runner WebSocket"). So the agent
  // says `canceled`, drops the report and is free for work.

  it('answers canceled, drops the report for good, and asks for work', async () => {
    const s = await server();
    const { log } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    expect(await c.next('completed')).toMatchObject({ job: j.id, stdout: 'out\n' });
    c.send({ type: 'cancel', job: j.id, attempt: 1, reason: 'canceled' });
    // next() with no type takes whatever comes first (heartbeats aside): canceled, then ready.
    expect(await c.next()).toEqual({ type: 'canceled', job: j.id, attempt: 1 });
    expect(await c.next()).toEqual({ type: 'ready' });
    expect(log.has('info', 'cancel for a job that already ended; acknowledging')).toBe(true);
    // Let go for good: on the next connection it says it holds no job, and asks for work without the report.
    c.socket.close(1001, 'server shutting down');
    const next = await s.connection(1);
    expect(await next.welcome()).toMatchObject({ type: 'hello', jobs: [] });
    expect(await next.next()).toEqual({ type: 'ready' });
    expect(reportsOf([...c.received, ...next.received], j.id)).toHaveLength(1);
  });

  it('answers canceled when the report still waited for running to be acknowledged, and never sends it', async () => {
    const s = await server();
    const { log } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out');
    c.send({ type: 'job', job: j });
    await c.next('running'); // not acknowledged: the report waits for that
    await waitFor(() => log.has('info', 'job finished'));
    c.send({ type: 'cancel', job: j.id, attempt: 1, reason: 'canceled' });
    expect(await c.next()).toEqual({ type: 'canceled', job: j.id, attempt: 1 });
    expect(await c.next()).toEqual({ type: 'ready' });
    expect(reportsOf(c.received, j.id)).toEqual([]);
  });

  it('answers canceled on a new connection, where the server answers the resent report with cancel', async () => {
    const s = await server();
    agent([s.url]);
    const first = await s.connection(0);
    await first.welcome();
    await first.next('ready');
    const j = job('echo out');
    first.send({ type: 'job', job: j });
    first.ack(await first.next('running'));
    await first.next('completed');
    first.socket.terminate(); // gone before the ack; the job is canceled server-side meanwhile
    const second = await s.connection(1);
    expect(await second.welcome()).toMatchObject({ type: 'hello', jobs: [{ job: j.id, attempt: 1 }] });
    // running was acknowledged on the first connection: running and the report again, which the
    // server answers with `cancel` (its answer to a message about a job canceled under the runner).
    await second.next('running');
    await second.next('completed');
    second.send({ type: 'cancel', job: j.id, attempt: 1, reason: 'canceled' });
    expect(await second.next()).toEqual({ type: 'canceled', job: j.id, attempt: 1 });
    expect(await second.next()).toEqual({ type: 'ready' });
    expect(reportsOf(second.received, j.id)).toHaveLength(1);
  });
});

describe('RunnerAgent: a report refused as malformed (bad_message)', () => {
  it('sends it again without its output; the stripped report is taken and the agent asks for work', async () => {
    const s = await server();
    const { log } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out; echo err >&2; echo result > r', { filePaths: ['r'] });
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    expect(await c.next('completed')).toEqual({ type: 'completed', job: j.id, attempt: 1, exitCode: 0, stdout: 'out\n', stderr: 'err\n', files: { r: 'result\n' }, truncated: false });
    c.send({ type: 'error', code: 'bad_message', message: 'stdout: invalid string', job: j.id });
    const stripped = await c.next();
    expect(stripped).toEqual({ type: 'completed', job: j.id, attempt: 1, exitCode: 0, truncated: true });
    c.ack(stripped);
    expect(await c.next()).toEqual({ type: 'ready' });
    expect(log.has('warn', 'the server refused the job report as malformed; sending it without output')).toBe(true);
    expect(log.lines).toContainEqual({ level: 'info', message: 'job reported', fields: { job: j.id, outcome: 'completed' } });
  });

  it('gives the report up after a second refusal: no third report, and it asks for work', async () => {
    const s = await server();
    const { log } = agent([s.url]);
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out; exit 3');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    expect(await c.next('failed')).toMatchObject({ job: j.id, error: 'exit status 3', exitCode: 3, stdout: 'out\n' });
    c.send({ type: 'error', code: 'bad_message', message: 'unknown field', job: j.id });
    // Without output, but still saying how the job failed.
    expect(await c.next()).toEqual({ type: 'failed', job: j.id, attempt: 1, error: 'exit status 3', exitCode: 3, truncated: true });
    c.send({ type: 'error', code: 'bad_message', message: 'unknown field', job: j.id });
    expect(await c.next()).toEqual({ type: 'ready' });
    expect(log.lines).toContainEqual({ level: 'error', message: 'the server refused the job report twice; giving it up', fields: { job: j.id, message: 'unknown field' } });
    // Given up for good: on the next connection it says it holds no job, and sends no report.
    c.socket.close(1001, 'server shutting down');
    const next = await s.connection(1);
    expect(await next.welcome()).toMatchObject({ type: 'hello', jobs: [] });
    expect(await next.next()).toEqual({ type: 'ready' });
    expect(reportsOf([...c.received, ...next.received], j.id)).toHaveLength(2);
  });
});

describe('RunnerAgent: stopping (SIGTERM) with a report not yet acknowledged', () => {
  const DEADLINE_MS = 500;

  it('waits the report deadline, then exits 1 saying it stopped without delivering the report', async () => {
    const s = await server();
    const { agent: a, exit, log } = agent([s.url], { shutdownReportMs: DEADLINE_MS });
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    await c.next('completed'); // never acknowledged
    const signaled = Date.now();
    a.shutdown('SIGTERM');
    expect(await within(exit, DEADLINE_MS + 2_500, 'exit')).toBe(EXIT.failed);
    // It waited for the ack until the deadline, not less (timers do not fire early; 5 ms for clock rounding).
    expect(Date.now() - signaled).toBeGreaterThanOrEqual(DEADLINE_MS - 5);
    expect(log.lines).toContainEqual({ level: 'info', message: 'stopping once the job report is delivered', fields: { signal: 'SIGTERM', job: j.id } });
    expect(log.lines).toContainEqual({ level: 'error', message: 'stopping without having delivered the job report', fields: { job: j.id } });
    expect(log.lines).toContainEqual({ level: 'info', message: 'runner agent stopped', fields: { exitCode: EXIT.failed } });
    expect((await c.closed).code).toBe(1000);
    expect(c.received.filter((frame) => frame.type === 'ready')).toHaveLength(1);
  });

  it('exits 0 when the ack comes within the deadline', async () => {
    const s = await server();
    const { agent: a, exit, log } = agent([s.url], { shutdownReportMs: 5_000 });
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    c.send({ type: 'job', job: job('echo out') });
    c.ack(await c.next('running'));
    const completed = await c.next('completed');
    a.shutdown('SIGTERM');
    c.ack(completed);
    expect(await within(exit, 2_500, 'exit')).toBe(EXIT.ok);
    expect(log.has('error', 'stopping without having delivered the job report')).toBe(false);
  });

  it('counts the deadline from the end of a job that was still running at the signal', async () => {
    const s = await server();
    const { agent: a, exit, log } = agent([s.url], { shutdownReportMs: DEADLINE_MS });
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('sleep 0.3; echo done');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    a.shutdown('SIGTERM');
    expect(await c.next('completed')).toMatchObject({ job: j.id, stdout: 'done\n' }); // never acknowledged
    expect(await within(exit, DEADLINE_MS + 2_500, 'exit')).toBe(EXIT.failed);
    expect(log.lines).toContainEqual({ level: 'error', message: 'stopping without having delivered the job report', fields: { job: j.id } });
  });

  it('keeps the deadline while the server cannot be reached', async () => {
    const s = await server();
    const { agent: a, exit, log } = agent([s.url], { shutdownReportMs: DEADLINE_MS });
    const c = await s.connection(0);
    await c.welcome();
    await c.next('ready');
    const j = job('echo out');
    c.send({ type: 'job', job: j });
    c.ack(await c.next('running'));
    await c.next('completed');
    s.refusals.push(...Array<number>(1_000).fill(503));
    c.socket.close(1001, 'server shutting down');
    await waitFor(() => log.has('warn', 'the server refused the connection'));
    a.shutdown('SIGTERM');
    expect(await within(exit, DEADLINE_MS + 2_500, 'exit')).toBe(EXIT.failed);
    expect(log.lines).toContainEqual({ level: 'error', message: 'stopping without having delivered the job report', fields: { job: j.id } });
    expect(s.connections).toHaveLength(1);
  });
});
