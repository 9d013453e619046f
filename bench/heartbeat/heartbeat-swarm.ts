/**
 * The runners of the heartbeat benchmark, in a process of their own (forked by
 * heartbeat.bench.ts): one WebSocket per runner, each holding one running job and heartbeating
 * for it (`heartbeat {job, attempt}`, answered by `ack {of: 'heartbeat'}`).
 *
 * argv[2]: JSON `{url, serverPid}`. From the parent:
 * - `{type: 'connect', tokens}`: a runner for each token (over IPC: thousands of tokens do not
 *   fit in argv), 8 saying hello at a time; answers `{type: 'connected', runners}` once every
 *   one is welcomed.
 * - `{type: 'take', batch}`: runners ask for work (`ready`) `batch` at a time; each takes the job
 *   pushed to it, reports it `running` and waits for the `ack`. Answers `{type: 'taken', jobs}`
 *   (the job ids, runner by runner).
 * - `{type: 'beat', rate, seconds}`: one measured window (see `beat`); answers `{type: 'beaten',
 *   ...WindowResult}`.
 * - `{type: 'stop'}`: closes the sockets and exits.
 * `{type: 'failed', message}` on anything unexpected (a frame other than the heartbeat's `ack`, a
 * closed socket).
 */
import { processCpuSplitMs } from '../support/cpu';
import { type Frame, type PushedJob, type RunnerSocket, helloAll } from '../support/runner-socket';
import { epochMs, percentile } from '../support/stats';

interface SwarmConfig {
  url: string;
  serverPid: number;
}

type ParentMessage = { type: 'connect'; tokens: string[] } | { type: 'take'; batch: number } | { type: 'beat'; rate: number | null; seconds: number } | { type: 'stop' };

/** One window, as the runners saw it. Times are ms since the epoch. */
export interface WindowResult {
  /** Heartbeats sent during the window. */
  sent: number;
  /** Of them, acknowledged (the rest were refused with an `error`, or not answered in time). */
  acked: number;
  refused: number;
  /** The first refusal, verbatim. */
  firstRefusal: string | null;
  startedAt: number;
  /** When the last heartbeat was sent. */
  endedAt: number;
  /** When the last one was answered (or the drain gave up). */
  drainedAt: number;
  /** Round trip of a heartbeat, from sending it to reading its ack, ms. */
  ackP50Ms: number;
  ackP99Ms: number;
  /** The server's CPU time over [startedAt, drainedAt], from /proc, ms. */
  serverUserMs: number;
  serverSystemMs: number;
  /** This process's CPU time over the same span, ms. */
  swarmCpuMs: number;
}

/** How long the answers to a window's last heartbeats may take before the window gives up on them. */
const DRAIN_LIMIT_MS = 60_000;

const config = JSON.parse(process.argv[2] ?? '{}') as SwarmConfig;
const send = (message: Record<string, unknown>) => process.send?.(message);

let runners: RunnerSocket[] = [];
/** The job each runner holds, by runner (after `take`). */
let held: PushedJob[] = [];
let stopping = false;

function fail(message: string): void {
  if (stopping) return;
  send({ type: 'failed', message });
}

/** Every runner asks for work, `batch` at a time, and reports the job it is given as running. */
async function take(batch: number): Promise<string[]> {
  const jobs: PushedJob[] = [];
  for (let i = 0; i < runners.length; i += batch) {
    const part = runners.slice(i, i + batch);
    jobs.push(
      ...(await Promise.all(
        part.map(async (runner) => {
          runner.send({ type: 'ready' });
          const job = (await runner.next('job', 60_000)).job as PushedJob;
          runner.send({ type: 'running', job: job.id, attempt: job.attempt });
          const ack = await runner.next('ack', 60_000);
          if (ack.job !== job.id || ack.of !== 'running') throw new Error(`expected the ack of running ${job.id}, got ${JSON.stringify(ack)}`);
          return job;
        }),
      )),
    );
  }
  held = jobs;
  return jobs.map((job) => job.id);
}

/**
 * One window of `seconds`. With a `rate`, open loop: heartbeats go out at that aggregate rate
 * whatever the answers, runner after runner in turn (so each runner beats every
 * runners / rate seconds), checked every 5 ms against the clock, so a late tick catches up.
 * Without one (`null`), closed loop: every runner sends a heartbeat, and the next as soon as its
 * ack arrives: as fast as the server (or this process) goes with one heartbeat in flight per
 * runner. Then no more are sent, and the window waits for the answers to those sent.
 */
function beat(rate: number | null, seconds: number): Promise<WindowResult> {
  // One frame per runner, the same each time: serialized once.
  const frames = held.map((job) => JSON.stringify({ type: 'heartbeat', job: job.id, attempt: job.attempt }));
  // Send times of each runner's heartbeats in flight: a socket's frames are answered in order.
  const inFlight = runners.map(() => [] as number[]);
  const latencies: number[] = [];
  let sent = 0;
  let acked = 0;
  let refused = 0;
  let firstRefusal: string | null = null;
  let sending = true;
  let endedAt = 0;
  const beatOn = (index: number) => {
    inFlight[index].push(performance.now());
    runners[index].socket.send(frames[index]);
    sent += 1;
  };
  const serverBefore = processCpuSplitMs(config.serverPid);
  const swarmBefore = process.cpuUsage();
  const startedAt = epochMs();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;

  return new Promise<WindowResult>((resolve) => {
    let drainTimer: NodeJS.Timeout | null = null;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (drainTimer !== null) clearTimeout(drainTimer);
      const drainedAt = epochMs();
      const serverAfter = processCpuSplitMs(config.serverPid);
      const swarm = process.cpuUsage(swarmBefore);
      for (const runner of runners) runner.onFrame = unexpected;
      latencies.sort((a, b) => a - b);
      resolve({
        sent,
        acked,
        refused,
        firstRefusal,
        startedAt,
        endedAt,
        drainedAt,
        ackP50Ms: percentile(latencies, 0.5),
        ackP99Ms: percentile(latencies, 0.99),
        serverUserMs: (serverAfter?.user ?? 0) - (serverBefore?.user ?? 0),
        serverSystemMs: (serverAfter?.system ?? 0) - (serverBefore?.system ?? 0),
        swarmCpuMs: (swarm.user + swarm.system) / 1000,
      });
    };
    const stopSending = () => {
      sending = false;
      endedAt = epochMs();
      if (acked + refused === sent) return finish();
      drainTimer = setTimeout(finish, DRAIN_LIMIT_MS);
    };
    runners.forEach((runner, index) => {
      runner.onFrame = (frame: Frame) => {
        const at = performance.now();
        const since = inFlight[index].shift();
        if (frame.type === 'ack' && frame.of === 'heartbeat' && frame.job === held[index].id && since !== undefined) {
          acked += 1;
          latencies.push(at - since);
        } else {
          refused += 1;
          firstRefusal ??= JSON.stringify(frame);
        }
        if (sending && rate === null) {
          if (at < end) beatOn(index);
          else stopSending();
        }
        if (!sending && acked + refused === sent) finish();
      };
    });

    if (rate === null) {
      runners.forEach((_, index) => beatOn(index));
      // A server that answers nothing must still end the window.
      setTimeout(() => sending && stopSending(), seconds * 1000 + 100);
      return;
    }
    let next = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      const due = Math.floor((rate * (Math.min(now, end) - t0)) / 1000);
      while (sent < due) {
        beatOn(next);
        next = (next + 1) % runners.length;
      }
      if (now >= end) {
        clearInterval(tick);
        stopSending();
      }
    }, 5);
  });
}

function unexpected(frame: Frame): void {
  fail(`unexpected frame between windows: ${JSON.stringify(frame)}`);
}

async function connect(tokens: readonly string[]): Promise<void> {
  runners = await helloAll(config.url, tokens);
  runners.forEach((runner, index) => runner.socket.on('close', (code: number) => fail(`runner ${index}: socket closed (${code})`)));
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'connect') {
    connect(message.tokens).then(
      () => send({ type: 'connected', runners: runners.length }),
      (error: unknown) => fail(`connecting: ${(error as Error).stack ?? String(error)}`),
    );
  } else if (message.type === 'take') {
    take(message.batch).then(
      (jobs) => {
        for (const runner of runners) runner.onFrame = unexpected;
        send({ type: 'taken', jobs });
      },
      (error: unknown) => fail(`taking jobs: ${(error as Error).message}`),
    );
  } else if (message.type === 'beat') {
    void beat(message.rate, message.seconds).then((result) => send({ type: 'beaten', ...result }));
  } else if (message.type === 'stop') {
    stopping = true;
    void Promise.all(runners.map((runner) => runner.close())).then(() => process.exit(0));
  }
});
