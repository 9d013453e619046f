import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import type { Divergence } from './divergence';
import type { JobAudit } from './audit.service';

export class DivergenceDto {
  @ApiPropertyOptional({ description: 'the stream position of the event concerned', example: 3 })
  position?: number;

  @ApiPropertyOptional({ description: 'the value concerned: an event member, a view column, a chain link', example: 'jobs.status' })
  field?: string;

  @ApiPropertyOptional({ description: 'what the log (or the job machine) says it should be' })
  expected?: unknown;

  @ApiPropertyOptional({ description: 'what is stored' })
  actual?: unknown;

  @ApiProperty({ example: 'the jobs view does not match the log' })
  reason: string;
}

export class JobAuditDto {
  @ApiProperty({ description: 'the hash chain is valid and nothing diverges' })
  verified: boolean;

  @ApiProperty({ description: 'the status the events fold to', nullable: true, example: 'completed' })
  status: string | null;

  @ApiProperty({ example: 4 })
  eventCount: number;

  @ApiProperty({ description: "positions 1..n, every hash recomputed and linked to the one before, the stream's head at the last" })
  chainValid: boolean;

  @ApiProperty({ type: [DivergenceDto] })
  divergences: DivergenceDto[];

  @ApiProperty({
    type: [DivergenceDto],
    description: 'billing differences while the billing projector has not reached the job’s last event: lag, not divergence',
  })
  pending: DivergenceDto[];
}

const mapDivergence = (d: Divergence): DivergenceDto => ({
  ...(d.position !== undefined ? { position: d.position } : {}),
  ...(d.field !== undefined ? { field: d.field } : {}),
  ...(d.expected !== undefined ? { expected: d.expected } : {}),
  ...(d.actual !== undefined ? { actual: d.actual } : {}),
  reason: d.reason,
});

export const mapJobAudit = (audit: JobAudit): JobAuditDto => ({
  verified: audit.verified,
  status: audit.status,
  eventCount: audit.eventCount,
  chainValid: audit.chainValid,
  divergences: audit.divergences.map(mapDivergence),
  pending: audit.pending.map(mapDivergence),
});
