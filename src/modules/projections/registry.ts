import { billingViews, jobViews } from '../jobs/job.views';
import { orgViews } from '../orgs/org.views';
import { runnerStatusViews, runnerViews } from '../runners/runner.views';
import { specViews } from '../specs/specs';
import type { Projection } from './projection';

/** Views written in the transaction that appends their events (requests read them at once). */
export const INLINE_PROJECTIONS: readonly Projection[] = [orgViews, specViews, runnerViews, jobViews];

/** Views kept by projectors following the log, each with its checkpoint. */
export const ASYNC_PROJECTIONS: readonly Projection[] = [runnerStatusViews, billingViews];

/** Every view, in the order a replay applies them (later ones may read earlier ones' tables). */
export const ALL_PROJECTIONS: readonly Projection[] = [...INLINE_PROJECTIONS, ...ASYNC_PROJECTIONS];

/** The checkpoint (and leadership lock) name of an async projection. */
export const checkpointName = (projection: Projection) => `projection:${projection.name}`;
