import { type Command, InvalidArgumentError, Option } from 'commander';
import { type ApiResult, RunwayApiError, RunwayClient, RunwayConnectionError } from './api';
import { ArgumentError } from './parse';
import { DEFAULT_URL, type Settings, resolveSettings } from './settings';

/**
 * What every client command shares: `--url`, `--token`, `--json`, the client, where output goes,
 * and one way errors end a command. Exit status: 0 done, 1 the server refused (its problem's code
 * and detail are printed), 2 a usage error or a server that cannot be reached.
 */

export interface ClientContext {
  readonly client: RunwayClient;
  readonly settings: Settings;
  /** `--json`: print the server's JSON, nothing else, on stdout. */
  readonly json: boolean;
  /** stdout is a terminal. */
  readonly tty: boolean;
  /** The terminal's width, or 0 when not a terminal. */
  readonly columns: number;
  /** A line (or lines) on stdout. */
  print(text: string): void;
  /** Text on stdout as is. */
  write(text: string): void;
  /** A line on stderr. */
  warn(text: string): void;
  /** The server's answer as it came, on one line of stdout. */
  printJson(result: ApiResult<unknown> | { text: string }): void;
  now(): Date;
}

export interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

/** An outcome worth a message and an exit status other than 0 that is not the server's problem. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** Commander's own usage errors (unknown option, missing argument) exit 2 like ours; help exits 0. */
export const usageExit = (error: { exitCode: number }): never => process.exit(error.exitCode === 0 ? 0 : 2);

/** A group of commands (`jobs`, `admin`): its usage errors exit 2, and so do those of the commands under it. */
export function group(parent: Command, name: string, description: string): Command {
  return withHeading(parent, parent.command(name).description(description).exitOverride(usageExit));
}

/** Under `runway --help`, the client's commands are listed apart from the server's. */
const CLIENT_COMMANDS_HEADING = 'Client commands ($RUNWAY_URL, $RUNWAY_TOKEN):';
const withHeading = (parent: Command, command: Command): Command => (parent.parent === null ? command.helpGroup(CLIENT_COMMANDS_HEADING) : command);

/** A command that talks to a server: with `--url`, `--token` and `--json` (listed apart, after its own options). */
const COMMON_OPTIONS_HEADING = 'Common options:';

export function clientCommand(parent: Command, nameAndArgs: string, description: string, options: { json?: string } = {}): Command {
  const common = COMMON_OPTIONS_HEADING;
  return withHeading(parent, parent.command(nameAndArgs).description(description).exitOverride(usageExit))
    .addOption(new Option('--url <url>', `Runway server (default: $RUNWAY_URL, else ${DEFAULT_URL})`).helpGroup(common))
    .addOption(new Option('--token <token>', 'an organization key, or the operator token for admin commands (default: $RUNWAY_TOKEN)').helpGroup(common))
    .addOption(new Option('--json', options.json ?? "print the server's JSON answer as is, for scripts").helpGroup(common));
}

/**
 * Help lists option groups in the order their first option was added: the common options are
 * added with the command, so this moves them after its own (parsing does not depend on the order).
 */
export function commonOptionsLast(command: Command): void {
  (command.options as Option[]).sort((a, b) => Number(a.helpGroupHeading === COMMON_OPTIONS_HEADING) - Number(b.helpGroupHeading === COMMON_OPTIONS_HEADING));
  command.commands.forEach(commonOptionsLast);
}

/** Turns a reader of `parse.ts` into a commander option parser (its errors become usage errors). */
export function parser<T, P = T>(read: (text: string, previous: P) => T): (text: string, previous: P) => T {
  return (text, previous) => {
    try {
      return read(text, previous);
    } catch (error) {
      if (error instanceof ArgumentError) throw new InvalidArgumentError(error.message);
      throw error;
    }
  };
}

let pipeGuardInstalled = false;

/** A reader that goes away (`| head`) ends the command quietly. */
function guardPipe(): void {
  if (pipeGuardInstalled) return;
  pipeGuardInstalled = true;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    process.exitCode = 1;
  });
}

function createContext(settings: Settings, json: boolean): ClientContext {
  const stdout = process.stdout;
  return {
    client: new RunwayClient({ baseUrl: settings.url, token: settings.token }),
    settings,
    json,
    tty: stdout.isTTY === true,
    columns: stdout.isTTY === true ? stdout.columns || 80 : 0,
    print: (text) => void stdout.write(`${text}\n`),
    write: (text) => void stdout.write(text),
    warn: (text) => void process.stderr.write(`${text}\n`),
    printJson: (result) => void stdout.write(`${result.text.trim()}\n`),
    now: () => new Date(),
  };
}

/** `runway: <code>: <detail>` and the exit status for an error that ended a command. */
export function describeFailure(error: unknown, settings: Settings | null): { message: string; exitCode: number } {
  if (error instanceof RunwayApiError) {
    const lines = [`runway: ${error.code}: ${error.detail}`];
    for (const { field, message } of error.problem?.errors ?? []) lines.push(`  ${field}: ${message}`);
    if (error.status === 401 && settings?.token === undefined) lines.push('runway: no token was sent: set RUNWAY_TOKEN or pass --token');
    return { message: lines.join('\n'), exitCode: 1 };
  }
  if (error instanceof RunwayConnectionError) return { message: `runway: ${error.message}`, exitCode: 2 };
  if (error instanceof ArgumentError) return { message: `runway: ${error.message}`, exitCode: 2 };
  if (error instanceof CommandError) return { message: `runway: ${error.code}: ${error.message}`, exitCode: error.exitCode };
  // A bug of this client: say what it was, without a stack trace.
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { message: `runway: unexpected error: ${text}`, exitCode: 1 };
}

/**
 * The action of a client command: resolves the settings, runs `handler` with the command's
 * positional arguments and options, and sets the exit status from what it returns (0 when
 * nothing) or from the error it throws. Nothing is thrown to the caller.
 */
export function run<O extends GlobalOptions>(
  handler: (ctx: ClientContext, args: string[], options: O, command: Command) => Promise<number | void>,
): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    const command = args[args.length - 1] as Command;
    const options = command.opts<O>();
    let settings: Settings | null = null;
    guardPipe();
    try {
      settings = resolveSettings(options, process.env);
      const code = await handler(createContext(settings, options.json === true), command.args, options, command);
      process.exitCode = code ?? 0;
    } catch (error) {
      const { message, exitCode } = describeFailure(error, settings);
      process.stderr.write(`${message}\n`);
      process.exitCode = exitCode;
    }
    // fetch keeps its idle connection open for a while, which would hold the process; the
    // command is done once what it wrote has been flushed.
    const code = Number(process.exitCode ?? 0);
    process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
  };
}
