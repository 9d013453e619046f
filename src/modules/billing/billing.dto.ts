import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsString, Length } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import type { ProjectUsageRow } from './billing.repository';

export class UsageQuery {
  @ApiPropertyOptional({
    description: 'ISO-8601 date or time, inclusive; default: the start of the current UTC month',
    example: '2026-05-01T00:00:00Z',
  })
  @IsOmittable()
  @IsString()
  @Length(1, 64)
  from?: string;

  @ApiPropertyOptional({ description: 'ISO-8601 date or time, exclusive; default: now; at most 366 days after from', example: '2026-06-01T00:00:00Z' })
  @IsOmittable()
  @IsString()
  @Length(1, 64)
  to?: string;
}

export class ProjectUsageResponse {
  @ApiProperty({ description: 'project id' })
  project: string;

  @ApiProperty({ nullable: true, type: String })
  projectSlug: string | null;

  @ApiProperty({ description: 'billed minutes of the jobs that finished in the range' })
  minutes: number;

  @ApiProperty({ description: 'jobs that ran and finished in the range' })
  jobs: number;
}

export class UsageResponse {
  @ApiProperty({ description: 'organization id' })
  org: string;

  @ApiProperty({ description: 'start of the range, inclusive' })
  from: string;

  @ApiProperty({ description: 'end of the range, exclusive' })
  to: string;

  @ApiProperty({ description: 'sum over the jobs of ceil((finishedAt - startedAt) / 60 s)' })
  minutes: number;

  @ApiProperty()
  jobs: number;

  @ApiProperty({ type: [ProjectUsageResponse], description: 'most minutes first, then by project id' })
  byProject: ProjectUsageResponse[];
}

export function mapUsage(orgId: string, from: Date, to: Date, rows: readonly ProjectUsageRow[]): UsageResponse {
  return {
    org: orgId,
    from: from.toISOString(),
    to: to.toISOString(),
    minutes: rows.reduce((sum, r) => sum + r.minutes, 0),
    jobs: rows.reduce((sum, r) => sum + r.jobs, 0),
    byProject: rows.map((r) => ({ project: r.project_id, projectSlug: r.project_slug, minutes: r.minutes, jobs: r.jobs })),
  };
}
