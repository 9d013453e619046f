import { ConflictError, NotFoundError, invalidField } from '../../common/errors';
import type { RunnerEvent } from '../../events/runner-events';

/** A runner's state, folded from its stream. */
export interface Runner {
  runnerId: string;
  slug: string;
  name: string;
  specIds: string[];
  archived: boolean;
  /** The connection the runner holds now, if any. */
  connection: string | null;
}

export const RUNNER_STREAM = 'runner';

export function evolveRunner(state: Runner | null, event: RunnerEvent): Runner {
  if (event.type === 'RunnerRegistered') {
    const { runnerId, slug, name, specIds } = event.data;
    return { runnerId, slug, name, specIds, archived: false, connection: null };
  }
  if (state === null) throw new Error(`${event.type} before RunnerRegistered`);
  switch (event.type) {
    case 'RunnerTokenRotated':
      return state;
    case 'RunnerUpdated':
      return { ...state, ...event.data };
    case 'RunnerArchived':
      return { ...state, archived: true };
    case 'RunnerUnarchived':
      return { ...state, archived: false };
    case 'RunnerConnected':
      return { ...state, connection: event.data.connectionId };
    case 'RunnerDisconnected':
      return state.connection === event.data.connectionId ? { ...state, connection: null } : state;
    default: {
      const _exhaustive: never = event;
      return _exhaustive;
    }
  }
}

function requireRunner(state: Runner | null): Runner {
  if (state === null) throw new NotFoundError('runner not found');
  return state;
}

export function decideRotateToken(state: Runner | null, tokenHash: string): RunnerEvent[] {
  if (requireRunner(state).archived) throw new ConflictError('an archived runner gets no new token; unarchive it first');
  return [{ type: 'RunnerTokenRotated', schemaVersion: 1, data: { tokenHash } }];
}

/** A new runner (the stream must be empty), serving at least one spec. */
export function decideRegister(state: Runner | null, runner: { runnerId: string; slug: string; name: string; specIds: readonly string[]; tokenHash: string }): RunnerEvent[] {
  if (state !== null) throw new ConflictError('this runner already exists');
  if (typeof runner.slug !== 'string') throw invalidField('slug', 'slug must be a string');
  if (typeof runner.name !== 'string') throw invalidField('name', 'name must be a string');
  const specIds = specList(runner.specIds);
  const { runnerId, slug, name, tokenHash } = runner;
  return [{ type: 'RunnerRegistered', schemaVersion: 1, data: { runnerId, slug, name, specIds, tokenHash } }];
}

/**
 * What an update asks for: a member left out keeps its value. Never null (the views keep the
 * name and the specs a null would leave, while the fold would take the null): refused. Only
 * what changes is appended; an update that changes nothing appends nothing.
 */
export function decideUpdate(
  state: Runner | null,
  change: { name?: string | null; specIds?: readonly string[] | null; archived?: boolean | null },
): RunnerEvent[] {
  const runner = requireRunner(state);
  if (change.name !== undefined && typeof change.name !== 'string') throw invalidField('name', 'name must be a string');
  if (change.archived !== undefined && typeof change.archived !== 'boolean') throw invalidField('archived', 'archived must be true or false');
  const specIds = change.specIds === undefined ? undefined : specList(change.specIds);
  const events: RunnerEvent[] = [];
  const data: { name?: string; specIds?: string[] } = {};
  if (change.name !== undefined && change.name !== runner.name) data.name = change.name;
  if (specIds !== undefined && !sameSet(specIds, runner.specIds)) data.specIds = specIds;
  if (Object.keys(data).length > 0) events.push({ type: 'RunnerUpdated', schemaVersion: 1, data });
  if (change.archived === true && !runner.archived) events.push({ type: 'RunnerArchived', schemaVersion: 1, data: {} });
  if (change.archived === false && runner.archived) events.push({ type: 'RunnerUnarchived', schemaVersion: 1, data: {} });
  return events;
}

/**
 * A runner's specs as the runner_specs view keeps them: spec ids (uuids compare in lower case
 * there), each once, at least one.
 */
function specList(specIds: readonly string[] | null | undefined): string[] {
  if (!Array.isArray(specIds) || specIds.some((id) => typeof id !== 'string')) throw invalidField('specs', 'specs must be a list of specs');
  const list = [...new Set(specIds.map((id: string) => id.toLowerCase()))];
  if (list.length === 0) throw invalidField('specs', 'a runner serves at least one spec');
  return list;
}


function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** A connection that said hello; a newer one replaces the one before. */
export function decideConnect(state: Runner | null, data: Extract<RunnerEvent, { type: 'RunnerConnected' }>['data']): RunnerEvent[] {
  const runner = requireRunner(state);
  if (runner.archived) throw new ConflictError('an archived runner cannot connect');
  const { connectionId, gateway, agentVersion, capacity, fingerprint } = data;
  return [{ type: 'RunnerConnected', schemaVersion: 1, data: { connectionId, gateway, agentVersion, capacity, fingerprint } }];
}

/** Ends the connection if it is still the runner's current one; an older one ends silently. */
export function decideDisconnect(state: Runner | null, connectionId: string, reason: 'closed' | 'gateway_lost'): RunnerEvent[] {
  const runner = requireRunner(state);
  return runner.connection === connectionId ? [{ type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId, reason } }] : [];
}
