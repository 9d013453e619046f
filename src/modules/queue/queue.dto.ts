import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsString, Length, Max, Min } from 'class-validator';
import { IsOmittable } from '../../common/optional';
import type { QueuedJob } from './queue.repository';
import type { QueueInfo, QueueItem, WaitingFor } from './queue-view';

export class QueueQuery {
  @ApiProperty({ description: 'spec slug or id', example: 'x86-64-8c-32g' })
  @IsString()
  @Length(1, 64)
  spec: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 1000, default: 100 })
  @IsOmittable()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(1000)
  limit?: number;

  @ApiPropertyOptional({ description: 'nextCursor of the previous page: the items after the position it ended at' })
  @IsOmittable()
  @IsString()
  @Length(1, 64)
  cursor?: string;
}

export class WaitingForResponse {
  @ApiProperty({
    enum: ['no_runner', 'org_limit', 'higher_priority', 'runner_busy'],
    description:
      'the first that holds, in this order: no runner of the spec is connected; the organization (or, unclaimed plan, ' +
      'the source IP) is at its in-flight limit; jobs of a higher tier are ahead; runners are busy or jobs of its tier are ahead',
  })
  reason: WaitingFor['reason'];

  @ApiPropertyOptional({ enum: ['org', 'ip'], description: 'org_limit: the limit of the organization, or per source IP (unclaimed plan)' })
  scope?: 'org' | 'ip';

  @ApiPropertyOptional({ description: 'org_limit: jobs claimed or running now' })
  inFlight?: number;

  @ApiPropertyOptional({ description: 'org_limit: the in-flight limit' })
  limit?: number;

  @ApiPropertyOptional({ description: 'org_limit: jobs of the same organization (IP) ahead in this queue that take the slots still free' })
  queuedAhead?: number;

  @ApiPropertyOptional({ description: 'higher_priority: jobs of higher tiers ahead; runner_busy: all jobs ahead' })
  ahead?: number;
}

export class QueueInfoResponse {
  @ApiProperty({ description: '1-based, in the order the scheduler will claim the spec’s jobs' })
  position: number;

  @ApiProperty({ description: 'position - 1' })
  ahead: number;

  @ApiProperty({
    type: String,
    nullable: true,
    description:
      'estimated start (ISO-8601): now + floor((busy runners + ahead) / runners) rounds of the mean run time of the spec’s last ' +
      '20 runs, less the time the first round has already run; later for a job held by its limit. Null without history or runner.',
  })
  eta: string | null;

  @ApiProperty({ type: WaitingForResponse })
  waitingFor: WaitingFor;
}

export class QueueItemResponse extends QueueInfoResponse {
  @ApiProperty({ description: 'job id' })
  id: string;

  @ApiProperty({ description: 'organization id' })
  org: string;

  @ApiProperty({ description: 'project id' })
  project: string;

  @ApiProperty()
  priority: number;

  @ApiProperty()
  createdAt: string;
}

export class QueueResponse {
  @ApiProperty({ description: 'spec slug' })
  spec: string;

  @ApiProperty({ description: 'pending jobs of the spec, every organization’s' })
  total: number;

  @ApiProperty({
    type: [QueueItemResponse],
    description: 'in claim order; the operator sees every job, an organization key only its own (their ahead counts the others)',
  })
  items: QueueItemResponse[];

  @ApiProperty({ type: String, nullable: true })
  nextCursor: string | null;
}

export const mapQueueInfo = (item: QueueInfo): QueueInfo => ({
  position: item.position,
  ahead: item.ahead,
  eta: item.eta,
  waitingFor: item.waitingFor,
});

export const mapQueueItem = (item: QueueItem<QueuedJob>): QueueItemResponse => ({
  ...mapQueueInfo(item),
  id: item.job.id,
  org: item.job.orgId,
  project: item.job.projectId,
  priority: item.job.priority,
  createdAt: item.job.createdAt.toISOString(),
});
