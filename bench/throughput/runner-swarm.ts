/**
 * The runners of the throughput benchmark, in a process of their own (forked by
 * throughput.bench.ts): one WebSocket per runner, each a closed loop of `ready` -> `job` ->
 * `running` (ack) -> `completed {exitCode: 0}` (ack) -> `ready`. The job itself is a no-op.
 *
 * argv[2]: JSON `{ url, tokens }`. IPC from the parent: `{type: 'run', target}` counts completions
 * from then on and answers `{type: 'done', at, count}` when `target` were acknowledged;
 * `{type: 'stop'}` closes the sockets and exits. To the parent: `{type: 'connected'}` once every
 * runner is welcomed and has sent its first `ready`; `{type: 'failed', message}` on anything
 * unexpected (an `error` or `cancel` frame, a closed socket).
 */
import { type Frame, type PushedJob, RunnerSocket } from '../support/runner-socket';
import { epochMs } from '../support/stats';

interface SwarmConfig {
  url: string;
  tokens: string[];
}

type ParentMessage = { type: 'run'; target: number } | { type: 'stop' };

const config = JSON.parse(process.argv[2] ?? '{}') as SwarmConfig;
const send = (message: Record<string, unknown>) => process.send?.(message);

let target = Number.POSITIVE_INFINITY;
let count = 0;
let stopping = false;

function fail(message: string): void {
  if (stopping) return;
  send({ type: 'failed', message });
}

function work(runner: RunnerSocket, index: number): void {
  let current: PushedJob | null = null;
  runner.onFrame = (frame: Frame) => {
    switch (frame.type) {
      case 'job': {
        current = frame.job as PushedJob;
        runner.send({ type: 'running', job: current.id, attempt: current.attempt });
        return;
      }
      case 'ack': {
        if (current === null || frame.job !== current.id) return fail(`runner ${index}: ack for a job it does not hold: ${JSON.stringify(frame)}`);
        if (frame.of === 'running') {
          runner.send({ type: 'completed', job: current.id, attempt: current.attempt, exitCode: 0 });
        } else if (frame.of === 'completed') {
          current = null;
          count += 1;
          if (count === target) send({ type: 'done', at: epochMs(), count });
          runner.send({ type: 'ready' });
        }
        return;
      }
      default:
        return fail(`runner ${index}: unexpected ${JSON.stringify(frame)}`);
    }
  };
  runner.socket.on('close', (code: number) => fail(`runner ${index}: socket closed (${code})`));
  runner.send({ type: 'ready' });
}

async function main(): Promise<void> {
  // Connect a few at a time: every hello is a write on the server.
  const runners: RunnerSocket[] = [];
  for (let i = 0; i < config.tokens.length; i += 8) {
    const batch = config.tokens.slice(i, i + 8);
    runners.push(...(await Promise.all(batch.map((token, j) => RunnerSocket.hello(config.url, token, `swarm-${i + j}`)))));
  }
  runners.forEach((runner, index) => work(runner, index));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'run') {
      count = 0;
      target = message.target;
    } else if (message.type === 'stop') {
      stopping = true;
      void Promise.all(runners.map((runner) => runner.close())).then(() => process.exit(0));
    }
  });
  send({ type: 'connected', runners: runners.length });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: (error as Error).stack ?? String(error) });
  process.exit(1);
});
