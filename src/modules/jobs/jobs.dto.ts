import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsIn,
  IsInt,
  IsString,
  Length,
  Matches,
  Max,
  Min,
  ValidateNested,
} from 'class-validator';
import { refuseFilePath } from '../../common/file-path';
import { IsOmittable } from '../../common/optional';
import type { JobStatus } from '../../machines/job.machine';
import { IsEnvMap, NoNullCharacters } from '../http/dto';
import { EachString } from '../http/each-element';
import type { QueueInfo } from '../queue/queue-view';
import type { JobRow } from './jobs.repository';

/** An OCI image reference pinned by digest: `registry/name[:tag]@sha256:<64 hex>`. */
export const PINNED_IMAGE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$/;

export const JOB_STATUSES: readonly JobStatus[] = ['pending', 'claimed', 'running', 'completed', 'failed', 'canceled'];

export class SubmitJobDto {
  @ApiProperty({ description: 'spec slug or id', example: 'x86-64-8c-32g' })
  @IsString()
  @Length(1, 64)
  spec: string;

  @ApiPropertyOptional({ description: 'OCI image pinned by digest', example: 'ghcr.io/acme/bench@sha256:' + '0'.repeat(64) })
  @IsOmittable()
  @IsString()
  @Matches(PINNED_IMAGE, { message: 'image must be an OCI reference pinned by digest (...@sha256:<64 hex>)' })
  image?: string;

  @ApiProperty({ type: [String], example: ['cargo', 'bench'] })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(1024)
  @IsString({ each: true })
  @Length(0, 65_536, { each: true })
  @NoNullCharacters()
  cmd: string[];

  @ApiPropertyOptional({ type: [String] })
  @IsOmittable()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(64)
  @IsString({ each: true })
  @Length(1, 4096, { each: true })
  @NoNullCharacters()
  entrypoint?: string[];

  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' } })
  @IsOmittable()
  @IsEnvMap(256)
  @NoNullCharacters()
  env?: Record<string, string>;

  @ApiPropertyOptional({ description: 'seconds; capped by the plan (free 900, unclaimed 300)', minimum: 1 })
  @IsOmittable()
  @IsInt()
  @Min(1)
  @Max(2_147_483_647)
  timeout?: number;

  @ApiPropertyOptional({ type: [String], description: 'files the runner reads back after the job: paths relative to its work directory' })
  @IsOmittable()
  @IsArray()
  @ArrayMaxSize(255)
  @IsString({ each: true })
  @Length(1, 4096, { each: true })
  @NoNullCharacters()
  @EachString('relativeFilePath', refuseFilePath, 'must be a relative path inside the work directory (no leading /, no .. or empty segments)')
  filePaths?: string[];

  @ApiPropertyOptional({ minimum: 1, maximum: 5, default: 1 })
  @IsOmittable()
  @IsInt()
  @Min(1)
  @Max(5)
  maxAttempts?: number;
}

/** The most jobs one batch submission may hold. */
export const MAX_BATCH_JOBS = 1000;

export class SubmitJobBatchDto {
  @ApiProperty({ type: [SubmitJobDto], description: `1 to ${MAX_BATCH_JOBS} submissions, each as POST /v1/projects/{project}/jobs takes it` })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(MAX_BATCH_JOBS)
  @ValidateNested({ each: true })
  @Type(() => SubmitJobDto)
  jobs: SubmitJobDto[];
}

export class ListJobsQuery {
  @ApiPropertyOptional({ enum: JOB_STATUSES })
  @IsOmittable()
  @IsIn(JOB_STATUSES)
  status?: JobStatus;

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 50 })
  @IsOmittable()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  limit?: number;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page' })
  @IsOmittable()
  @IsString()
  @Length(1, 64)
  cursor?: string;
}

export const billedMinutes = (row: Pick<JobRow, 'started_at' | 'finished_at'>): number | null =>
  row.started_at !== null && row.finished_at !== null
    ? Math.ceil((row.finished_at.getTime() - row.started_at.getTime()) / 60_000)
    : null;

/** A job as the API shows it; `queue` (its place in its spec's queue) only while it is pending. */
export function mapJob(row: JobRow, queue?: QueueInfo) {
  return {
    id: row.id,
    project: row.project_id,
    org: row.org_id,
    spec: row.spec,
    status: row.status,
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    timeout: row.timeout,
    runner: row.runner_id,
    createdAt: row.created_at.toISOString(),
    claimedAt: row.claimed_at?.toISOString() ?? null,
    startedAt: row.started_at?.toISOString() ?? null,
    finishedAt: row.finished_at?.toISOString() ?? null,
    exitCode: row.exit_code,
    failure: row.failure,
    billedMinutes: billedMinutes(row),
    ...(row.status === 'pending' && queue
      ? { queue: { position: queue.position, ahead: queue.ahead, eta: queue.eta, waitingFor: queue.waitingFor } }
      : {}),
  };
}
