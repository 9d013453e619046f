import { Command } from 'commander';
import { runnerCommand } from './agent/command';
import { registerClientCommands } from './client';
import { UUID_PATTERN } from './common/ids';
import { ConfigError, loadConfig } from './config/config';
import { ROLES, RolesError, parseRoles } from './config/roles';

/**
 * The server side (Nest, TypeORM, pg: over a second to load) is loaded by the commands that use
 * it, not at start: `runway runner` runs on benchmark machines and imports none of it.
 */
async function serverSide() {
  // One at a time, and Nest (an ES module) last: Node 20 cannot `require` an ES module that an
  // `import()` is still loading, and these CommonJS modules require Nest.
  await import('reflect-metadata');
  const server = await import('./server.js');
  const { LOG_LEVELS } = await import('./app.js');
  const context = await import('./commands/context.js');
  const audit = await import('./commands/audit.js');
  const exporter = await import('./commands/export.js');
  const projections = await import('./commands/projections.js');
  const { Logger } = await import('@nestjs/common');
  return { Logger, LOG_LEVELS, ...context, ...audit, ...exporter, ...projections, ...server };
}

/** `runway`: the command line. Configuration comes from the environment (docs/protocol.md, "Configuration"). */
export function buildCli(): Command {
  const program = new Command('runway').description('Runway: benchmark jobs for bare-metal runners').showHelpAfterError();

  program
    .command('serve')
    .description('start the server on PORT/HOST (every role, or those given); applies migrations first')
    .option('--roles <roles>', `comma-separated roles to run: ${ROLES.join(', ')}`, ROLES.join(','))
    .action(async (options: { roles: string }) => {
      const { serve } = await serverSide();
      await serve(loadConfig(), parseRoles(options.roles));
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const { Logger, LOG_LEVELS, migrateOnly } = await serverSide();
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
      const { Logger, LOG_LEVELS, withDatabase, rebuildProjections, formatRebuildReport } = await serverSide();
      const config = loadConfig();
      Logger.overrideLogger(LOG_LEVELS[config.logLevel]);
      const report = await withDatabase(config, (context) => rebuildProjections(context, options.check === true));
      process.stdout.write(`${formatRebuildReport(report)}\n`);
      if (options.check && !report.equal) process.exitCode = 1;
    });

  program
    .command('audit')
    .description('audit every stream: hash chains, job events replayed through the job machine, folds against the views')
    .option('--json', 'print one machine-readable JSON report instead of lines')
    .addHelpText('after', '\nExit status: 0 all verified, 1 a divergence or a broken chain, 2 the audit could not run.\n')
    .action(async (options: { json?: boolean }) => {
      const { LOG_LEVELS, logToStderr, withDatabase, auditCommand } = await serverSide();
      const config = loadConfig();
      // stdout carries the report alone.
      logToStderr(LOG_LEVELS[config.logLevel]);
      try {
        const summary = await withDatabase(config, (context) =>
          auditCommand(context, { json: options.json === true }, (text) => process.stdout.write(text), process.stderr),
        );
        process.exitCode = summary.verified ? 0 : 1;
      } catch (error) {
        process.stderr.write(`runway: audit could not run: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = 2;
      }
    });

  const events = program.command('events').description('the event log');
  events
    .command('export')
    .description('write the log to stdout as NDJSON, one event envelope per line, in log order (a progress line on stderr when it is a terminal)')
    .option('--from <position|time>', 'start after the event with this global position (0: from the start), or at this time (ISO 8601)', '0')
    .option('--to <position|time>', 'end with the event with this global position, or before this time (ISO 8601); default: the end of the log')
    .option('--org <org>', "only this organization's events (its own stream and its jobs'), by id or slug")
    .option('--project <project>', "only this project's events (its jobs' and its ProjectCreated), by id, or by slug with --org")
    .option('--job <job>', "only this job's events")
    .option('--type <types...>', 'only events of these types (several, or comma-separated)')
    .action(async (options: { from: string; to?: string; org?: string; project?: string; job?: string; type?: string[] }) => {
      const { LOG_LEVELS, logToStderr, withDatabase, exportRange, parseBound, resolveOwners, ExportError } = await serverSide();
      const config = loadConfig();
      logToStderr(LOG_LEVELS[config.logLevel]);
      // A reader that goes away (`| head`) ends the export; exportRange stops at the next batch.
      process.stdout.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EPIPE') process.exitCode = 1;
      });
      try {
        const from = parseBound('--from', options.from) ?? { position: 0 };
        const to = parseBound('--to', options.to);
        const types = options.type?.flatMap((t) => t.split(',')).map((t) => t.trim()).filter((t) => t !== '');
        const job = options.job?.trim().toLowerCase();
        if (job !== undefined && !UUID_PATTERN.test(job)) {
          throw new ExportError(`--job must be a job id (a UUID) (got "${options.job}")`);
        }
        await withDatabase(config, async (context) => {
          const owners = await resolveOwners(context.database.db, options.org, options.project);
          await exportRange(
            context,
            { from, to, ...owners, ...(job === undefined ? {} : { jobId: job }), ...(types === undefined ? {} : { types: new Set(types) }) },
            process.stdout,
            undefined,
            process.stderr,
          );
        });
      } catch (error) {
        if (!(error instanceof ExportError)) throw error;
        process.stderr.write(`runway: events export: ${error.message}\n`);
        process.exitCode = 2;
      }
    });

  program.addCommand(runnerCommand(process.env));
  registerClientCommands(program);

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
