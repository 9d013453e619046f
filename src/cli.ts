import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { Command } from 'commander';
import { LOG_LEVELS } from './app';
import { ConfigError, loadConfig } from './config/config';
import { ROLES, RolesError, parseRoles } from './config/roles';
import { withDatabase } from './commands/context';
import { formatRebuildReport, rebuildProjections } from './commands/projections';
import { migrateOnly, serve } from './server';

/** `runway`: the command line. Configuration comes from the environment (PROTOCOL.md). */
export function buildCli(): Command {
  const program = new Command('runway').description('Runway: benchmark jobs for bare-metal runners').showHelpAfterError();

  program
    .command('serve')
    .description('start the server on PORT/HOST (every role, or those given); applies migrations first')
    .option('--roles <roles>', `comma-separated roles to run: ${ROLES.join(', ')}`, ROLES.join(','))
    .action(async (options: { roles: string }) => {
      await serve(loadConfig(), parseRoles(options.roles));
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const config = loadConfig();
      Logger.overrideLogger(LOG_LEVELS[config.logLevel]);
      const applied = await migrateOnly(config);
      process.stdout.write(applied.length === 0 ? 'database is up to date\n' : `applied ${applied.join(', ')}\n`);
    });

  const projections = program.command('projections').description('the views derived from the event log');
  projections
    .command('rebuild')
    .description('replay the whole log into fresh views, compare them with the live ones, and swap them in')
    .option('--check', 'only compare: change nothing, exit 1 if the views differ')
    .action(async (options: { check?: boolean }) => {
      const config = loadConfig();
      Logger.overrideLogger(LOG_LEVELS[config.logLevel]);
      const report = await withDatabase(config, (context) => rebuildProjections(context, options.check === true));
      process.stdout.write(`${formatRebuildReport(report)}\n`);
      if (options.check && !report.equal) process.exitCode = 1;
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof RolesError) {
      process.stderr.write(`runway: configuration: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`runway: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

if (require.main === module) void main(process.argv);
