import { Injectable } from '@nestjs/common';
import { ConflictError, NotFoundError, ValidationError } from '../../common/errors';
import { IdGenerator } from '../../common/ids';
import { decodeRunnerEvent } from '../../events/decoders';
import type { RunnerEvent } from '../../events/runner-events';
import { generateToken, hashToken } from '../auth/tokens';
import { UNIQUE_VIOLATION, sqlState } from '../database/db';
import { CommandHandler } from '../event-store/command-handler';
import { Bus } from '../messaging/bus';
import type { ControlMessage } from '../messaging/messages';
import { Subjects } from '../messaging/subjects';
import type { RequestContext } from '../http/request-context';
import { SpecsService } from '../specs/specs';
import { runnerViews } from './runner.views';
import { RUNNER_STREAM, type Runner, decideRegister, decideRotateToken, decideUpdate, evolveRunner } from './runner';
import type { CreateRunnerDto, UpdateRunnerDto } from './runners.dto';
import { RunnersRepository, type RunnerRow } from './runners.repository';

/** Runners: registration, token rotation, specs and archiving. Each runner is an event stream. */
@Injectable()
export class RunnersService {
  constructor(
    private readonly commands: CommandHandler,
    private readonly repository: RunnersRepository,
    private readonly specs: SpecsService,
    private readonly ids: IdGenerator,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
  ) {}

  /** Registers a runner; its token is in the answer only, the log and views keep its SHA-256. */
  async create(dto: CreateRunnerDto, ctx: RequestContext): Promise<{ runner: RunnerRow; token: string }> {
    // Anything but a list goes to the decider as it is, which refuses it.
    const specIds = Array.isArray(dto.specs) ? await this.specIds(dto.specs) : dto.specs;
    const runnerId = this.ids.next();
    const token = generateToken('runner');
    await this.run(runnerId, ctx, (state) => decideRegister(state, { runnerId, slug: dto.slug, name: dto.name, specIds, tokenHash: hashToken(token) }));
    return { runner: await this.find(runnerId), token };
  }

  async rotateToken(ref: string, ctx: RequestContext): Promise<{ token: string }> {
    const runner = await this.find(ref);
    const token = generateToken('runner');
    await this.run(runner.id, ctx, (state) => decideRotateToken(state, hashToken(token)));
    await this.revokeConnections(runner.id);
    return { token };
  }

  async update(ref: string, dto: UpdateRunnerDto, ctx: RequestContext): Promise<RunnerRow> {
    if (dto.name === undefined && dto.specs === undefined && dto.archived === undefined) {
      throw new ValidationError('send name, specs or archived');
    }
    const runner = await this.find(ref);
    // Anything but a list (null) goes to the decider as it is, which refuses it.
    const specIds = Array.isArray(dto.specs) ? await this.specIds(dto.specs) : dto.specs;
    await this.run(runner.id, ctx, (state) => decideUpdate(state, { name: dto.name, specIds, archived: dto.archived }));
    if (dto.archived === true) await this.revokeConnections(runner.id);
    return this.find(runner.id);
  }

  list(): Promise<RunnerRow[]> {
    return this.repository.list();
  }

  async find(ref: string): Promise<RunnerRow> {
    const runner = await this.repository.find(ref);
    if (runner === null) throw new NotFoundError('runner not found');
    return runner;
  }

  /** The runner's open socket, wherever it is, closes: its credential no longer holds. */
  private async revokeConnections(runnerId: string): Promise<void> {
    const message: ControlMessage = { runner: runnerId, type: 'revoked' };
    await this.bus.publish(this.subjects.runnerControl(runnerId), message);
  }

  private async specIds(refs: readonly string[]): Promise<string[]> {
    const { specs, missing } = await this.specs.findAll(refs);
    if (missing !== null) throw new ValidationError(`spec "${missing}" does not exist`, [{ field: 'specs', message: `unknown spec ${missing}` }]);
    return [...new Set(specs.map((s) => s.id))];
  }

  private async run(runnerId: string, ctx: RequestContext, decide: (state: Runner | null) => RunnerEvent[]): Promise<void> {
    try {
      await this.commands.execute<Runner, RunnerEvent>({
        stream: { id: runnerId, type: RUNNER_STREAM },
        evolve: evolveRunner,
        decode: decodeRunnerEvent,
        decide,
        project: (tx, envelopes) => runnerViews.apply(tx, envelopes),
        metadata: ctx.metadata,
      });
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) throw new ConflictError('a runner with this slug already exists', { cause: error });
      throw error;
    }
  }
}
