/**
 * The idle runners of the memory benchmark, in a process of their own (forked by
 * memory.bench.ts): one WebSocket per runner that says hello and then, as a runner agent does,
 * `ready`, and waits for work that never comes.
 *
 * argv[2]: JSON `{url, ready}` (`ready: false`: hello only). From the parent:
 * `{type: 'connect', tokens}` connects a runner for each token (over IPC: thousands of tokens do
 * not fit in argv) and answers `{type: 'connected', runners}` (how many are connected in all)
 * once each new one is welcomed and has sent `ready`;
 * `{type: 'stop'}` closes every socket and exits. To the parent: `{type: 'started'}`, and
 * `{type: 'failed', message}` on anything unexpected (any frame after `welcome`, a socket closed
 * by the server).
 */
import { type Frame, type RunnerSocket, helloAll } from '../support/runner-socket';

interface SwarmConfig {
  url: string;
  ready: boolean;
}

type ParentMessage = { type: 'connect'; tokens: string[] } | { type: 'stop' };

const config = JSON.parse(process.argv[2] ?? '{}') as SwarmConfig;
const send = (message: Record<string, unknown>) => process.send?.(message);

const runners: RunnerSocket[] = [];
let stopping = false;

function fail(message: string): void {
  if (stopping) return;
  send({ type: 'failed', message });
}

async function connect(tokens: readonly string[]): Promise<void> {
  const fresh = await helloAll(config.url, tokens, 8, runners.length);
  for (const runner of fresh) {
    const index = runners.length;
    runners.push(runner);
    runner.onFrame = (frame: Frame) => fail(`runner ${index}: unexpected ${JSON.stringify(frame)}`);
    runner.socket.on('close', (code: number) => fail(`runner ${index}: socket closed (${code})`));
    if (config.ready) runner.send({ type: 'ready' });
  }
}

process.on('message', (message: ParentMessage) => {
  if (message.type === 'connect') {
    connect(message.tokens).then(
      () => send({ type: 'connected', runners: runners.length }),
      (error: unknown) => fail(`connecting: ${(error as Error).stack ?? String(error)}`),
    );
  } else if (message.type === 'stop') {
    stopping = true;
    void Promise.all(runners.map((runner) => runner.close())).then(() => process.exit(0));
  }
});
send({ type: 'started' });
