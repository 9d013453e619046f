import type { Command } from 'commander';
import { registerAdminCommands } from './admin';
import { commonOptionsLast } from './context';
import { registerJobCommands } from './jobs';
import { registerProjectCommands } from './projects';
import { registerQueueCommand } from './queue';
import { registerUsageCommand } from './usage';

/**
 * The commands people run against a Runway server from their own machines: `jobs`, `projects`,
 * `queue`, `usage` (organization key) and `admin` (operator token). They speak the public API
 * (docs/protocol.md) only: this tree imports no Nest and no server module, so it starts fast.
 */
export function registerClientCommands(program: Command): void {
  const before = new Set(program.commands);
  registerJobCommands(program);
  registerProjectCommands(program);
  registerQueueCommand(program);
  registerUsageCommand(program);
  registerAdminCommands(program);
  for (const command of program.commands) if (!before.has(command)) commonOptionsLast(command);
  program.addHelpText(
    'after',
    '\nClient commands talk to $RUNWAY_URL (default http://127.0.0.1:8080) with $RUNWAY_TOKEN; --url and --token win.' +
      '\nEvery one takes --json. Exit status: 0 done, 1 the server refused (its code and detail are printed), 2 usage or connection error.',
  );
}
