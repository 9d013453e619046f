import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsIn, IsInt, IsOptional, IsString, Length, Matches, Max, Min, ValidateIf } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import type { Plan } from '../../events/job-events';
import { PLAN_NAMES } from '../../events/plans';
import { NoNullCharacters, SLUG_PATTERN } from '../http/dto';
import type { KeyRow, OrgRow, ProjectRow } from './orgs.repository';

export const PLANS: readonly Plan[] = PLAN_NAMES;

export class CreateOrgDto {
  @ApiProperty({ example: 'acme', pattern: SLUG_PATTERN.source })
  @IsString()
  @Matches(SLUG_PATTERN, { message: 'slug must be 1-64 lower-case letters, digits and dashes' })
  slug: string;

  @ApiProperty({ example: 'Acme Inc.' })
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name: string;

  @ApiProperty({ enum: PLANS })
  @IsIn(PLANS)
  plan: Plan;

  @ApiPropertyOptional({ minimum: 1, nullable: true, description: 'in-flight limit for team and enterprise orgs' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(100_000)
  maxConcurrency?: number | null;
}

export class UpdateOrgDto {
  @ApiPropertyOptional({ enum: PLANS })
  @IsOmittable()
  @IsIn(PLANS)
  plan?: Plan;

  @ApiPropertyOptional({ minimum: 1, nullable: true, description: 'null removes the limit' })
  @ValidateIf((_, value) => value !== null && value !== undefined)
  @IsInt()
  @Min(1)
  @Max(100_000)
  maxConcurrency?: number | null;
}

export class CreateKeyDto {
  @ApiPropertyOptional({ example: 'ci' })
  @IsOmittable()
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name?: string;
}

export class CreateProjectDto {
  @ApiProperty({ example: 'compiler', pattern: SLUG_PATTERN.source })
  @IsString()
  @Matches(SLUG_PATTERN, { message: 'slug must be 1-64 lower-case letters, digits and dashes' })
  slug: string;

  @ApiProperty({ example: 'Compiler' })
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name: string;
}

export interface OrgResponse {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  maxConcurrency: number | null;
  createdAt: string;
  updatedAt: string;
}

export const mapOrg = (row: OrgRow): OrgResponse => ({
  id: row.id,
  slug: row.slug,
  name: row.name,
  plan: row.plan,
  maxConcurrency: row.max_concurrency,
  createdAt: row.created_at.toISOString(),
  updatedAt: row.updated_at.toISOString(),
});

export const mapKey = (row: KeyRow) => ({
  id: row.id,
  org: row.org_id,
  name: row.name,
  createdAt: row.created_at.toISOString(),
  revokedAt: row.revoked_at?.toISOString() ?? null,
});

export const mapProject = (row: ProjectRow) => ({
  id: row.id,
  org: row.org_id,
  slug: row.slug,
  name: row.name,
  createdAt: row.created_at.toISOString(),
});
