import type { Command } from 'commander';
import { type GlobalOptions, clientCommand, run } from './context';
import { formatTable, formatTime } from './format';

/** `runway usage --org O`: billed minutes of the jobs that finished in a range. */
export function registerUsageCommand(program: Command): void {
  clientCommand(program, 'usage', "an organization's billed minutes, in all and per project")
    .requiredOption('--org <org>', 'organization slug or id (an organization key may read its own)')
    .option('--from <time>', 'ISO-8601 date or time, inclusive (default: the start of the current UTC month)')
    .option('--to <time>', 'ISO-8601 date or time, exclusive (default: now)')
    .addHelpText('after', '\nA job is billed ceil(run time / 1 min) minutes, in the range it finished in. Example: runway usage --org acme --from 2026-05-01 --to 2026-06-01')
    .action(
      run<GlobalOptions & { org: string; from?: string; to?: string }>(async (ctx, _args, options) => {
        const result = await ctx.client.usage(options.org, { from: options.from, to: options.to });
        if (ctx.json) return ctx.printJson(result);
        const usage = result.data;
        const range = usage.from !== undefined && usage.to !== undefined ? ` from ${formatTime(usage.from)} to ${formatTime(usage.to)}` : '';
        ctx.print(`${options.org}${range}: ${usage.minutes} min over ${usage.jobs} jobs`);
        if (usage.byProject.length > 0) {
          ctx.print(
            formatTable(
              ['project', 'jobs', 'minutes'],
              [...usage.byProject.map((p) => [p.projectSlug ?? p.project, p.jobs, p.minutes]), ['total', usage.jobs, usage.minutes]],
            ),
          );
        }
      }),
    );
}
