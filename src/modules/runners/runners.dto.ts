import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { ArrayMaxSize, ArrayMinSize, ArrayUnique, IsArray, IsBoolean, IsString, Length, Matches } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import { NoNullCharacters, SLUG_PATTERN } from '../http/dto';
import type { RunnerRow } from './runners.repository';

export class CreateRunnerDto {
  @ApiProperty({ example: 'bench-01' })
  @IsString()
  @Matches(SLUG_PATTERN, { message: 'slug must be 1-64 lower-case letters, digits and dashes' })
  slug: string;

  @ApiProperty({ example: 'Rack 3, machine 1' })
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name: string;

  @ApiProperty({ type: [String], description: 'spec slugs or ids this runner serves' })
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(64)
  @ArrayUnique()
  @IsString({ each: true })
  @Length(1, 64, { each: true })
  specs: string[];
}

export class UpdateRunnerDto {
  @ApiPropertyOptional()
  @IsOmittable()
  @IsString()
  @Length(1, 200)
  @NoNullCharacters()
  name?: string;

  @ApiPropertyOptional({ type: [String] })
  @IsOmittable()
  @IsArray()
  @ArrayMinSize(1)
  @ArrayMaxSize(64)
  @ArrayUnique()
  @IsString({ each: true })
  @Length(1, 64, { each: true })
  specs?: string[];

  @ApiPropertyOptional({ description: 'an archived runner cannot connect or claim' })
  @IsOmittable()
  @IsBoolean()
  archived?: boolean;
}

export type RunnerState = 'offline' | 'idle' | 'busy';

/**
 * offline: not connected; busy: holds a job (claimed or running); idle: connected and free.
 * `lastSeenAt` is the later of the last thing the log has from the runner (connecting, claiming,
 * reporting) and its last heartbeat, which is not written to the log.
 */
export const mapRunner = (row: RunnerRow, lastHeard: Date | null = null) => {
  const seen = [row.last_seen_at, lastHeard].filter((d): d is Date => d !== null).sort((a, b) => b.getTime() - a.getTime())[0];
  const state: RunnerState = !row.connected ? 'offline' : row.current_job !== null ? 'busy' : 'idle';
  return {
    id: row.id,
    slug: row.slug,
    name: row.name,
    specs: row.specs,
    archived: row.archived,
    state,
    lastSeenAt: seen?.toISOString() ?? null,
    currentJob: row.current_job,
    fingerprint: row.fingerprint,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
};
