import { EventStore1764489600000 } from './1764489600000-event-store';
import { Views1764489600001 } from './1764489600001-views';
import { Checkpoints1764489600002 } from './1764489600002-checkpoints';
import { Gateway1764489600003 } from './1764489600003-gateway';
import { Projections1764489600004 } from './1764489600004-projections';
import { QueueHistory1764489600005 } from './1764489600005-queue-history';
import { JobBatches1764489600006 } from './1764489600006-job-batches';
import { PendingByOrg1764489600007 } from './1764489600007-pending-by-org';
import { ClaimCheck1764489600008 } from './1764489600008-claim-check';
import { LogNotify1764489600009 } from './1764489600009-log-notify';

/** Every migration in order. Listed, not globbed, so the same list runs from .ts and from dist. */
export const MIGRATIONS = [
  EventStore1764489600000,
  Views1764489600001,
  Checkpoints1764489600002,
  Gateway1764489600003,
  Projections1764489600004,
  QueueHistory1764489600005,
  JobBatches1764489600006,
  PendingByOrg1764489600007,
  ClaimCheck1764489600008,
  LogNotify1764489600009,
];
