import type { EventEnvelope } from '../../events/envelope';
import type { OrgEvent } from '../../events/org-events';
import type { Sql } from '../database/db';
import type { Projection } from '../projections/projection';
import { ORG_STREAM } from './org';

/** Organizations, their keys and projects: kept inline, read at once by auth and submissions. */
export const orgViews: Projection = {
  name: 'orgs',
  tables: ['orgs', 'org_keys', 'projects'],
  async apply(tx: Sql, events: readonly EventEnvelope[]): Promise<void> {
    for (const envelope of events) {
      if (envelope.streamType !== ORG_STREAM) continue;
      const event = envelope as unknown as OrgEvent;
      const orgId = envelope.streamId;
      const at = envelope.occurredAt;
      switch (event.type) {
        case 'OrgCreated':
          await tx.query(
            `INSERT INTO orgs (id, slug, name, plan, max_concurrency, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)`,
            [orgId, event.data.slug, event.data.name, event.data.plan, event.data.maxConcurrency, at],
          );
          break;
        case 'OrgUpdated':
          await tx.query(
            `UPDATE orgs SET plan = COALESCE($2, plan),
               max_concurrency = CASE WHEN $3 THEN $4::int ELSE max_concurrency END, updated_at = $5
             WHERE id = $1`,
            [orgId, event.data.plan ?? null, 'maxConcurrency' in event.data, event.data.maxConcurrency ?? null, at],
          );
          break;
        case 'OrgKeyCreated':
          await tx.query(`INSERT INTO org_keys (id, org_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5)`, [
            event.data.keyId,
            orgId,
            event.data.name,
            event.data.keyHash,
            at,
          ]);
          break;
        case 'OrgKeyRevoked':
          await tx.query(`UPDATE org_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, [event.data.keyId, at]);
          break;
        case 'ProjectCreated':
          await tx.query(`INSERT INTO projects (id, org_id, slug, name, created_at) VALUES ($1, $2, $3, $4, $5)`, [
            event.data.projectId,
            orgId,
            event.data.slug,
            event.data.name,
            at,
          ]);
          break;
        default: {
          const _exhaustive: never = event;
          throw new Error(`unknown org event ${(_exhaustive as { type: string }).type}`);
        }
      }
    }
  },
};
