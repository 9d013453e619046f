import { Injectable } from '@nestjs/common';
import type { EventMetadata } from '../../events/envelope';
import { decodeRunnerEvent } from '../../events/decoders';
import type { RunnerConnected, RunnerEvent } from '../../events/runner-events';
import { CommandHandler } from '../event-store/command-handler';
import { RUNNER_STREAM, type Runner, decideConnect, decideDisconnect, evolveRunner } from './runner';
import { runnerViews } from './runner.views';

/** Runner connections in the runner's stream: the gateway records them, liveness ends lost ones. */
@Injectable()
export class RunnerSessions {
  constructor(private readonly commands: CommandHandler) {}

  async connected(runnerId: string, data: RunnerConnected['data'], metadata: EventMetadata): Promise<void> {
    await this.run(runnerId, metadata, (state) => decideConnect(state, data));
  }

  /** Ends the connection if it is still the runner's current one. */
  async disconnected(runnerId: string, connectionId: string, reason: 'closed' | 'gateway_lost', metadata: EventMetadata): Promise<void> {
    await this.run(runnerId, metadata, (state) => decideDisconnect(state, connectionId, reason));
  }

  private async run(runnerId: string, metadata: EventMetadata, decide: (state: Runner | null) => RunnerEvent[]): Promise<void> {
    await this.commands.execute<Runner, RunnerEvent>({
      stream: { id: runnerId, type: RUNNER_STREAM },
      evolve: evolveRunner,
      decode: decodeRunnerEvent,
      decide,
      project: (tx, envelopes) => runnerViews.apply(tx, envelopes),
      metadata,
    });
  }
}
