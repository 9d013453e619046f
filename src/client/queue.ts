import type { Command } from 'commander';
import type { QueueItem } from './api';
import { type GlobalOptions, clientCommand, parser, run } from './context';
import { formatRelative, formatTable, formatTime, formatWaitingFor } from './format';
import { parseInteger } from './parse';

/** `runway queue --spec S`: a spec's pending jobs in the order they will be claimed. */
export function registerQueueCommand(program: Command): void {
  clientCommand(program, 'queue', "a spec's pending jobs in claim order, with estimated starts (an organization key sees its own jobs)")
    .requiredOption('--spec <spec>', 'spec slug or id')
    .option('--limit <n>', 'jobs per page (1-1000, default 100)', parser((text) => parseInteger(text, 1, 1000)))
    .option('--all', 'follow nextCursor to the end (--json: one document with every item)')
    .action(
      run<GlobalOptions & { spec: string; limit?: number; all?: boolean }>(async (ctx, _args, options) => {
        let result = await ctx.client.queue({ spec: options.spec, limit: options.limit });
        const items: QueueItem[] = [...result.data.items];
        while (options.all === true && result.data.nextCursor !== null) {
          result = await ctx.client.queue({ spec: options.spec, limit: options.limit, cursor: result.data.nextCursor });
          items.push(...result.data.items);
        }
        if (ctx.json) {
          return ctx.printJson(options.all === true ? { text: JSON.stringify({ ...result.data, items, nextCursor: null }) } : result);
        }
        const now = ctx.now();
        const { spec, total } = result.data;
        ctx.print(`${spec}: ${total} pending${items.length < total ? `, ${items.length} listed` : ''}`);
        if (items.length > 0) {
          ctx.print(
            formatTable(
              ['pos', 'job', 'project', 'priority', 'submitted', 'eta', 'waiting for'],
              items.map((item) => [
                item.position,
                item.id,
                item.project,
                item.priority,
                formatTime(item.createdAt),
                item.eta === null ? null : formatRelative(item.eta, now),
                formatWaitingFor(item.waitingFor),
              ]),
            ),
          );
        }
        if (options.all !== true && result.data.nextCursor !== null) ctx.warn(`(more: --all, or a larger --limit)`);
      }),
    );
}
