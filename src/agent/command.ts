import { Command, Option } from 'commander';
import { EXIT, RunnerAgent } from './agent';
import { collectFingerprint } from './fingerprint';
import { createLog } from './log';
import { AgentOptionsError, type AgentFlags, DEFAULTS, resolveAgentOptions } from './options';
import { findOnPath } from './container';
import { agentVersion } from './version';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * `runway runner`: the agent for benchmark machines. Imports nothing of the server (no Nest, no
 * database): it starts in a fraction of a second and carries only what it needs.
 */
export function runnerCommand(env: Env): Command {
  return new Command('runner')
    .description('run the runner agent: connect to a Runway server, take jobs and run them on this machine')
    .option('--url <urls>', 'server URL(s), comma separated, tried in order (env RUNWAY_URL)')
    .option('--token <token>', 'runner token (env RUNWAY_RUNNER_TOKEN; prefer the environment or --token-file: flags show in ps)')
    .option('--token-file <path>', 'read the runner token from this file')
    .option('--work-dir <dir>', 'where job work directories are made (default: <tmpdir>/runway-runner)')
    .option('--keep-work-dirs', 'keep each job work directory after the job (default: removed)')
    .addOption(new Option('--executor <tool>', 'run jobs that have an image in containers with this engine').choices(['podman', 'docker']))
    .option('--container-network <network>', 'network of job containers', DEFAULTS.containerNetwork)
    .option('--max-output-bytes <n>', 'bytes of stdout and of stderr kept, each (the first ones)', String(DEFAULTS.maxOutputBytes))
    .option('--max-file-bytes <n>', 'bytes kept of each file in filePaths', String(DEFAULTS.maxFileBytes))
    .option('--max-files <n>', 'files of filePaths read back, at most', String(DEFAULTS.maxFiles))
    .option('--kill-grace-ms <n>', 'between SIGTERM and SIGKILL when a job is stopped', String(DEFAULTS.killGraceMs))
    .option('--drain-timeout-ms <n>', "on SIGTERM/SIGINT, how long a running job may go on before it is stopped (default: the job's remaining timeout)")
    .option('--reconnect-min-ms <n>', 'shortest delay before reconnecting', String(DEFAULTS.reconnectMinMs))
    .option('--reconnect-max-ms <n>', 'longest delay before reconnecting', String(DEFAULTS.reconnectMaxMs))
    .option('--json-logs', 'log one JSON object per line')
    .option('--verbose', 'log debug lines too')
    .addHelpText(
      'after',
      '\nExit status: 0 stopped by SIGTERM/SIGINT after the running job was reported, 1 stopped without reporting it,\n' +
        "2 bad flags or environment, 3 the server refused the runner's token (revoked, rotated, archived).",
    )
    .action(async (flags: AgentFlags) => {
      process.exit(await runAgent(flags, env));
    });
}

/** Resolves the options, runs the agent until it stops, and returns the exit status. */
export async function runAgent(flags: AgentFlags, env: Env): Promise<number> {
  let options;
  try {
    options = resolveAgentOptions(flags, env);
  } catch (error) {
    if (!(error instanceof AgentOptionsError)) throw error;
    process.stderr.write(`runway runner: ${error.message}\n`);
    return EXIT.usage;
  }
  const log = createLog({ json: options.jsonLogs, verbose: options.verbose, secrets: [options.token] });
  if (options.executor !== null && findOnPath(options.executor, options.jobEnv.PATH) === null) {
    log.warn(`--executor ${options.executor}: not found on PATH; jobs with an image will fail until it is installed`);
  }
  const agent = new RunnerAgent({ options, log, fingerprint: collectFingerprint(), version: agentVersion() });
  const onSignal = (signal: NodeJS.Signals) => agent.shutdown(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('exit', () => agent.killJobNow());
  return agent.run();
}
