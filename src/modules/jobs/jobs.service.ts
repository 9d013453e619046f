import { Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { ConflictError, NotFoundError, ValidationError } from '../../common/errors';
import { IdGenerator, UUID_PATTERN } from '../../common/ids';
import { type EventEnvelope, canonicalJson, sha256Hex } from '../../events/envelope';
import { decodeJobEvent } from '../../events/decoders';
import { PLANS } from '../../events/plans';
import { type JobCommand, type JobState, isFinal } from '../../machines/job.machine';
import { canReadOrg, orgOf } from '../auth/principal';
import { EventStore } from '../event-store/event-store';
import type { RequestContext } from '../http/request-context';
import { OrgsRepository } from '../orgs/orgs.repository';
import { QueueService } from '../queue/queue.service';
import type { QueueInfo } from '../queue/queue-view';
import { SpecsService } from '../specs/specs';
import type { ListJobsQuery, SubmitJobDto } from './jobs.dto';
import { JobCommands, type JobCommandHooks } from './job-commands';
import { JobOutputRepository } from './job-output.repository';
import { jobRowOf } from './job.views';
import { JobsRepository, type JobRow } from './jobs.repository';

const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/**
 * The most a job's definition (cmd, entrypoint, env, file paths) may weigh as JSON: it travels in
 * its JobSubmitted event, to the runner and through JetStream, whose messages are 1 MiB at most.
 */
export const MAX_JOB_DEFINITION_BYTES = 256 * 1024;

class IdempotencyKeyTaken extends Error {}

export interface Submission {
  job: JobRow;
  /** false: an earlier request with the same Idempotency-Key and body made this job. */
  created: boolean;
}

/** Jobs: submission, reading, cancel. Every change is decided by the job machine. */
@Injectable()
export class JobsService {
  constructor(
    private readonly commands: JobCommands,
    private readonly store: EventStore,
    private readonly jobs: JobsRepository,
    private readonly outputs: JobOutputRepository,
    private readonly orgs: OrgsRepository,
    private readonly specs: SpecsService,
    private readonly queues: QueueService,
    private readonly clock: Clock,
    private readonly ids: IdGenerator,
  ) {}

  async submit(projectRef: string, dto: SubmitJobDto, idempotencyKey: string | undefined, ctx: RequestContext): Promise<Submission> {
    const orgId = orgOf(ctx.principal);
    const project = await this.orgs.findProject(orgId, projectRef);
    if (project === null) throw new NotFoundError('project not found');
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw new ValidationError('Idempotency-Key must be 1-255 visible ASCII characters');
    }
    const definition = canonicalJson({ cmd: dto.cmd, entrypoint: dto.entrypoint, env: dto.env, filePaths: dto.filePaths, image: dto.image });
    if (Buffer.byteLength(definition) > MAX_JOB_DEFINITION_BYTES) {
      throw new ValidationError(`cmd, entrypoint, env and filePaths together must be at most ${MAX_JOB_DEFINITION_BYTES / 1024} KiB of JSON`);
    }
    const requestHash = sha256Hex(canonicalJson({ project: project.id, body: dto }));
    const since = new Date(this.clock.now().getTime() - IDEMPOTENCY_WINDOW_MS);
    if (idempotencyKey !== undefined) {
      const earlier = await this.replay(orgId, idempotencyKey, requestHash, since);
      if (earlier !== null) return { job: earlier, created: false };
    }

    const org = await this.orgs.findOrg(orgId);
    if (org === null) throw new NotFoundError('organization not found');
    const spec = await this.specs.find(dto.spec);
    if (spec === null) {
      throw new ValidationError(`spec "${dto.spec}" does not exist`, [{ field: 'spec', message: 'unknown spec' }]);
    }
    const rules = PLANS[org.plan];
    const cap = rules.maxTimeout;
    const timeout = dto.timeout ?? rules.defaultTimeout;
    if (cap !== null && timeout > cap) {
      throw new ValidationError(`the ${org.plan} plan allows a timeout of at most ${cap} s`, [
        { field: 'timeout', message: `at most ${cap}` },
      ]);
    }

    const jobId = this.ids.next();
    const at = this.clock.now().toISOString();
    let submitted: JobState;
    try {
      ({ state: submitted } = await this.execute(jobId, ctx, {
        type: 'submit',
        at,
        job: {
          jobId,
          orgId,
          projectId: project.id,
          spec: spec.slug,
          specId: spec.id,
          plan: org.plan,
          priority: rules.priority,
          image: dto.image ?? null,
          cmd: dto.cmd,
          entrypoint: dto.entrypoint ?? null,
          env: dto.env ?? {},
          timeout,
          filePaths: dto.filePaths ?? [],
          maxAttempts: dto.maxAttempts ?? 1,
          sourceIp: ctx.sourceIp,
          idempotency: idempotencyKey === undefined ? null : { key: idempotencyKey, requestHash },
        },
      }, idempotencyKey === undefined ? {} : {
        // A transaction, since the key's claim may refuse the submission.
        alsoInTransaction: async (tx) => {
          const claimed = await this.jobs.claimIdempotencyKey(tx, { orgId, key: idempotencyKey, requestHash, jobId, at, since });
          if (!claimed) throw new IdempotencyKeyTaken();
        },
      }));
    } catch (error) {
      if (!(error instanceof IdempotencyKeyTaken) || idempotencyKey === undefined) throw error;
      // A concurrent request with the same key committed first: answer as its retry.
      const earlier = await this.replay(orgId, idempotencyKey, requestHash, since);
      if (earlier === null) throw new ConflictError('a request with this Idempotency-Key is in progress; retry', { cause: error });
      return { job: earlier, created: false };
    }
    // The job as it committed (pending): no read of the row just written.
    return { job: jobRowOf(submitted), created: true };
  }

  private async replay(orgId: string, key: string, requestHash: string, since: Date): Promise<JobRow | null> {
    const earlier = await this.jobs.findIdempotent(orgId, key, since);
    if (earlier === null) return null;
    if (earlier.request_hash !== requestHash) {
      throw new ConflictError('this Idempotency-Key was used with a different request in the last 24 hours');
    }
    return this.mustFind(earlier.job_id);
  }

  async get(ref: string, ctx: RequestContext): Promise<JobRow> {
    const job = UUID_PATTERN.test(ref) ? await this.jobs.find(ref) : null;
    if (job === null || !canReadOrg(ctx.principal, job.org_id)) throw new NotFoundError('job not found');
    return job;
  }

  /** Where the job stands in its spec's queue while it is pending; else undefined. */
  async queue(job: JobRow): Promise<QueueInfo | undefined> {
    return job.status === 'pending' ? ((await this.queues.forJob(job)) ?? undefined) : undefined;
  }

  async list(projectRef: string, query: ListJobsQuery, ctx: RequestContext): Promise<{ items: JobRow[]; nextCursor: string | null }> {
    const orgId = ctx.principal.kind === 'org' ? ctx.principal.orgId : null;
    const project = await this.orgs.findProject(orgId, projectRef);
    if (project === null) throw new NotFoundError('project not found');
    const beforeId = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    const limit = query.limit ?? 50;
    const items = await this.jobs.list(project.id, { status: query.status, limit: limit + 1, beforeId });
    const page = items.slice(0, limit);
    return { items: page, nextCursor: items.length > limit ? encodeCursor(page[page.length - 1].id) : null };
  }

  async cancel(ref: string, ctx: RequestContext): Promise<JobRow> {
    const job = await this.get(ref, ctx);
    await this.execute(job.id, ctx, { type: 'cancel', at: this.clock.now().toISOString(), reason: `canceled by ${ctx.metadata.actor}` });
    return this.mustFind(job.id);
  }

  /** What the job's last attempt sent back; 404 until it finished with output. */
  async output(ref: string, ctx: RequestContext) {
    const job = await this.get(ref, ctx);
    if (!isFinal(job.status)) throw new NotFoundError('the job has no output: it did not finish');
    const output = await this.outputs.find(job.id, job.attempt);
    const events = await this.store.readStream(job.id);
    const last = decodeJobEvent(events[events.length - 1]);
    const truncated = (last.type === 'JobCompleted' || last.type === 'JobFailed') && last.data.output?.truncated === true;
    return { exitCode: job.exit_code, ...output, truncated };
  }

  async events(ref: string, ctx: RequestContext): Promise<EventEnvelope[]> {
    const job = await this.get(ref, ctx);
    return this.store.readStream(job.id);
  }

  private execute(jobId: string, ctx: RequestContext, command: JobCommand, hooks?: JobCommandHooks) {
    return this.commands.execute(jobId, command, ctx.metadata, hooks);
  }

  private async mustFind(id: string): Promise<JobRow> {
    const job = await this.jobs.find(id);
    if (job === null) throw new NotFoundError('job not found');
    return job;
  }
}

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!UUID_PATTERN.test(id)) throw new ValidationError('cursor is not one this server gave out', [{ field: 'cursor', message: 'invalid' }]);
  return id;
}
