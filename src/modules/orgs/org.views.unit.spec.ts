import type { EventEnvelope } from '../../events/envelope';
import type { OrgEvent } from '../../events/org-events';
import { foldOrgs } from './org.views';

const O1 = '00000000-0000-7000-8000-0000000000b1';
const O2 = '00000000-0000-7000-8000-0000000000b2';
const K1 = '00000000-0000-7000-8000-0000000000d1';
const K2 = '00000000-0000-7000-8000-0000000000d2';
const P1 = '00000000-0000-7000-8000-0000000000f1';

const t = (second: number) => new Date(Date.UTC(2026, 0, 5, 0, 0, second)).toISOString();

let position = 0;
function org(id: string, event: Omit<OrgEvent, 'schemaVersion'>, at: string): EventEnvelope {
  position++;
  return { id: `e${position}`, streamId: id, streamType: 'org', position, globalPosition: position, type: event.type, schemaVersion: 1, data: event.data, metadata: { correlationId: 'c', causationId: null, actor: 'admin' }, occurredAt: at, hash: '', prevHash: '' };
}
const created = (id: string, at: string) => org(id, { type: 'OrgCreated', data: { orgId: id, slug: 'acme', name: 'Acme', plan: 'free', maxConcurrency: null } }, at);
const keyCreated = (id: string, keyId: string, at: string) => org(id, { type: 'OrgKeyCreated', data: { keyId, name: null, keyHash: 'a'.repeat(64) } }, at);
const revoked = (id: string, keyId: string, at: string) => org(id, { type: 'OrgKeyRevoked', data: { keyId } }, at);

const none = { orgs: [], orgUpdates: [], keys: [], keyRevocations: [], projects: [] };

describe('foldOrgs', () => {
  it('inserts an organization, its keys and projects created in the batch, with what later events changed', () => {
    const events = [
      created(O1, t(0)),
      keyCreated(O1, K1, t(0)),
      org(O1, { type: 'ProjectCreated', data: { projectId: P1, slug: 'web', name: 'Web' } }, t(0)),
      org(O1, { type: 'OrgUpdated', data: { plan: 'team', maxConcurrency: 4 } }, t(1)),
      org(O1, { type: 'OrgUpdated', data: { plan: undefined } }, t(2)), // names neither: only updated_at
      revoked(O1, K1, t(3)),
      revoked(O1, K1, t(4)), // already revoked: the first holds
    ];
    expect(foldOrgs(events)).toEqual({
      orgs: [{ id: O1, slug: 'acme', name: 'Acme', plan: 'team', max_concurrency: 4, created_at: t(0), updated_at: t(2) }],
      orgUpdates: [],
      keys: [{ id: K1, org_id: O1, name: null, key_hash: 'a'.repeat(64), created_at: t(0), revoked_at: t(3) }],
      keyRevocations: [],
      projects: [{ id: P1, org_id: O1, slug: 'web', name: 'Web', created_at: t(0) }],
    });
  });

  it('updates organizations and keys created before the batch with the fold of its events', () => {
    const events = [
      org(O1, { type: 'OrgUpdated', data: { maxConcurrency: 10 } }, t(1)),
      org(O2, { type: 'OrgUpdated', data: { plan: 'enterprise' } }, t(2)),
      org(O1, { type: 'OrgUpdated', data: { plan: 'team', maxConcurrency: null } }, t(3)), // null lifts the limit
      revoked(O1, K1, t(4)),
      revoked(O1, K1.toUpperCase(), t(5)), // the same key: the first revocation is the one that applies
      revoked(O2, K2, t(6)),
    ];
    expect(foldOrgs(events)).toEqual({
      ...none,
      orgUpdates: [
        { id: O1, plan: 'team', set_max_concurrency: true, max_concurrency: null, updated_at: t(3) },
        { id: O2, plan: 'enterprise', set_max_concurrency: false, max_concurrency: null, updated_at: t(2) },
      ],
      keyRevocations: [
        { id: K1, revoked_at: t(4) },
        { id: K2, revoked_at: t(6) },
      ],
    });
  });

  it('sends an event on a key created later in the batch to the row already there, as one event alone would', () => {
    const { keys, keyRevocations } = foldOrgs([revoked(O1, K1, t(1)), keyCreated(O1, K1, t(2))]);
    expect(keyRevocations).toEqual([{ id: K1, revoked_at: t(1) }]);
    expect(keys).toEqual([expect.objectContaining({ id: K1, revoked_at: null })]);
  });

  it('ignores other streams', () => {
    const other = { ...created(O1, t(0)), streamType: 'runner' };
    expect(foldOrgs([other])).toEqual(none);
  });
});
