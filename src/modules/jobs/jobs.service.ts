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
import type { Sql } from '../database/db';
import type { ListJobsQuery, SubmitJobBatchDto, SubmitJobDto } from './jobs.dto';
import { JobCommands } from './job-commands';
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

/** A refused field of a submission: `message` says it in full, `short` in the field's entry. */
interface Refusal {
  field: string;
  message: string;
  short: string;
}

/** How many refusals a batch's answer lists at most (its message says how many there were). */
const MAX_LISTED_REFUSALS = 100;

/** Throws the refusals as one 400 naming each field (a single submission names none for its size). */
function throwRefusals(refusals: readonly Refusal[], kind: 'one' | 'batch'): void {
  if (refusals.length === 0) return;
  const listed = refusals.slice(0, MAX_LISTED_REFUSALS);
  const more = refusals.length - listed.length;
  const message = listed.map((r) => r.message).join('; ') + (more > 0 ? `; and ${more} more` : '');
  const fields = listed.filter((r) => r.field !== '').map((r) => ({ field: r.field, message: kind === 'one' ? r.short : r.message }));
  throw new ValidationError(message, fields.length > 0 ? fields : undefined);
}

/** The jobs a batch made, in the order given. */
export interface BatchSubmission {
  jobs: JobRow[];
  /** false: an earlier request with the same Idempotency-Key and body made these jobs. */
  created: boolean;
}

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

  /** `POST /v1/projects/{project}/jobs`: one job. */
  async submit(projectRef: string, dto: SubmitJobDto, idempotencyKey: string | undefined, ctx: RequestContext): Promise<Submission> {
    const { jobs, created } = await this.submitJobs(projectRef, [dto], idempotencyKey, ctx, 'one');
    return { job: jobs[0], created };
  }

  /** `POST /v1/projects/{project}/job-batches`: 1 to 1,000 jobs, all or nothing, in the order given. */
  submitBatch(projectRef: string, dto: SubmitJobBatchDto, idempotencyKey: string | undefined, ctx: RequestContext): Promise<BatchSubmission> {
    return this.submitJobs(projectRef, dto.jobs, idempotencyKey, ctx, 'batch');
  }

  /**
   * Submits jobs, all or nothing. Every job is checked first (definition size, spec, the plan's
   * timeout cap); a batch names a refused job's fields by its index (`jobs[3].timeout`). Without
   * an Idempotency-Key one job is one statement; a batch, or a key's claim, one transaction.
   */
  private async submitJobs(
    projectRef: string,
    dtos: readonly SubmitJobDto[],
    idempotencyKey: string | undefined,
    ctx: RequestContext,
    kind: 'one' | 'batch',
  ): Promise<BatchSubmission> {
    const orgId = orgOf(ctx.principal);
    // The project and its organization's plan now, in one read.
    const found = await this.orgs.findProjectForSubmission(orgId, projectRef);
    if (found === null) throw new NotFoundError('project not found');
    const project = { id: found.project_id };
    const org = { plan: found.plan };
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw new ValidationError('Idempotency-Key must be 1-255 visible ASCII characters');
    }
    const field = (i: number, name?: string) => (kind === 'one' ? (name ?? '') : `jobs[${i}]${name === undefined ? '' : `.${name}`}`);
    const refusals: Refusal[] = [];
    const refuse = (i: number, name: string | undefined, message: string, short: string) => {
      refusals.push({ field: field(i, name), message: kind === 'one' ? message : `${field(i)}: ${message}`, short });
    };
    dtos.forEach((dto, i) => {
      const definition = canonicalJson({ cmd: dto.cmd, entrypoint: dto.entrypoint, env: dto.env, filePaths: dto.filePaths, image: dto.image });
      if (Buffer.byteLength(definition) > MAX_JOB_DEFINITION_BYTES) {
        refuse(i, undefined, `cmd, entrypoint, env and filePaths together must be at most ${MAX_JOB_DEFINITION_BYTES / 1024} KiB of JSON`, 'too large');
      }
    });
    throwRefusals(refusals, kind);
    // A single submission's hash is what it always was (keys stay valid across the upgrade); a
    // batch's covers the whole list, and differs from any single submission's.
    const requestHash = sha256Hex(canonicalJson(kind === 'one' ? { project: project.id, body: dtos[0] } : { project: project.id, batch: dtos }));
    const since = new Date(this.clock.now().getTime() - IDEMPOTENCY_WINDOW_MS);
    if (idempotencyKey !== undefined) {
      const earlier = await this.replay(orgId, idempotencyKey, requestHash, since);
      if (earlier !== null) return { jobs: earlier, created: false };
    }

    const rules = PLANS[org.plan];
    const specs = new Map<string, Awaited<ReturnType<SpecsService['find']>>>();
    for (const dto of dtos) if (!specs.has(dto.spec)) specs.set(dto.spec, await this.specs.find(dto.spec));
    const at = this.clock.now().toISOString();
    const submissions = dtos.map((dto, i) => {
      const spec = specs.get(dto.spec) ?? null;
      if (spec === null) refuse(i, 'spec', `spec "${dto.spec}" does not exist`, 'unknown spec');
      const cap = rules.maxTimeout;
      const timeout = dto.timeout ?? rules.defaultTimeout;
      if (cap !== null && timeout > cap) refuse(i, 'timeout', `the ${org.plan} plan allows a timeout of at most ${cap} s`, `at most ${cap}`);
      if (spec === null) return null;
      const jobId = this.ids.next();
      const command: Extract<JobCommand, { type: 'submit' }> = {
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
      };
      return { jobId, command };
    });
    throwRefusals(refusals, kind);
    const valid = submissions as { jobId: string; command: Extract<JobCommand, { type: 'submit' }> }[];

    const jobIds = valid.map((submission) => submission.jobId);
    // Claimed in the transaction that submits: a concurrent request with the key loses one or the other.
    const claimKey =
      idempotencyKey === undefined
        ? undefined
        : async (tx: Sql) => {
            const claimed = await this.jobs.claimIdempotencyKey(tx, { orgId, key: idempotencyKey, requestHash, jobIds, at, since });
            if (!claimed) throw new IdempotencyKeyTaken();
          };
    let submitted: JobState[];
    try {
      submitted =
        kind === 'one'
          ? [(await this.commands.execute(valid[0].jobId, valid[0].command, ctx.metadata, claimKey === undefined ? {} : { alsoInTransaction: claimKey })).state]
          : await this.commands.submitAll(valid, ctx.metadata, claimKey);
    } catch (error) {
      if (!(error instanceof IdempotencyKeyTaken) || idempotencyKey === undefined) throw error;
      // A concurrent request with the same key committed first: answer as its retry.
      const earlier = await this.replay(orgId, idempotencyKey, requestHash, since);
      if (earlier === null) throw new ConflictError('a request with this Idempotency-Key is in progress; retry', { cause: error });
      return { jobs: earlier, created: false };
    }
    // The jobs as they committed (pending): no read of the rows just written.
    return { jobs: submitted.map(jobRowOf), created: true };
  }

  /** The jobs an earlier request with the key made, in its order; null if the key is free. */
  private async replay(orgId: string, key: string, requestHash: string, since: Date): Promise<JobRow[] | null> {
    const earlier = await this.jobs.findIdempotent(orgId, key, since);
    if (earlier === null) return null;
    if (earlier.request_hash !== requestHash) {
      throw new ConflictError('this Idempotency-Key was used with a different request in the last 24 hours');
    }
    const jobs = await this.jobs.findAll(earlier.job_ids);
    if (jobs.length !== earlier.job_ids.length) throw new NotFoundError('job not found');
    return jobs;
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
    const { state } = await this.commands.execute(job.id, { type: 'cancel', at: this.clock.now().toISOString(), reason: `canceled by ${ctx.metadata.actor}` }, ctx.metadata);
    // The job as the cancel committed it, as a submission answers: no read of the row just written.
    return jobRowOf(state);
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
}

function encodeCursor(id: string): string {
  return Buffer.from(id, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const id = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!UUID_PATTERN.test(id)) throw new ValidationError('cursor is not one this server gave out', [{ field: 'cursor', message: 'invalid' }]);
  return id;
}
