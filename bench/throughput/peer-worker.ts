/**
 * The workers of a peer queue (graphile-worker or pg-boss) in a process of their own, as Runway's
 * runners are (forked by throughput.bench.ts). argv[2]: JSON `{kind, variant, url, concurrency,
 * settings}`. To the parent: `{type: 'started'}` once the workers run; `{type: 'handled', at}`
 * when the tasks of `target` jobs have run (the parent then waits for the database to show them
 * completed). From the parent: `{type: 'run', target}`, `{type: 'stop'}`.
 */
import { type PeerKind, type PeerSettings, type PeerVariant, startPeerWorker } from '../support/peers';
import { epochMs } from '../support/stats';

interface PeerWorkerConfig {
  kind: PeerKind;
  variant: PeerVariant;
  url: string;
  concurrency: number;
  settings: PeerSettings;
}

type ParentMessage = { type: 'run'; target: number } | { type: 'stop' };

const config = JSON.parse(process.argv[2] ?? '{}') as PeerWorkerConfig;
const send = (message: Record<string, unknown>) => process.send?.(message);

let target = Number.POSITIVE_INFINITY;
let handled = 0;

async function main(): Promise<void> {
  const worker = await startPeerWorker(config.kind, config.variant, config.url, config.concurrency, config.settings, () => {
    handled += 1;
    if (handled === target) send({ type: 'handled', at: epochMs() });
  });
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'run') {
      handled = 0;
      target = message.target;
    } else if (message.type === 'stop') {
      void worker.stop().then(
        () => process.exit(0),
        (error: unknown) => {
          console.error(error);
          process.exit(1);
        },
      );
    }
  });
  send({ type: 'started' });
}

main().catch((error: unknown) => {
  send({ type: 'failed', message: (error as Error).stack ?? String(error) });
  process.exit(1);
});
