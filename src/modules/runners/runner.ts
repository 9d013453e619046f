import { ConflictError, NotFoundError } from '../../common/errors';
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

export function decideUpdate(
  state: Runner | null,
  change: { name?: string; specIds?: string[]; archived?: boolean },
): RunnerEvent[] {
  const runner = requireRunner(state);
  const events: RunnerEvent[] = [];
  const data: { name?: string; specIds?: string[] } = {};
  if (change.name !== undefined && change.name !== runner.name) data.name = change.name;
  if (change.specIds !== undefined && !sameSet(change.specIds, runner.specIds)) data.specIds = change.specIds;
  if (Object.keys(data).length > 0) events.push({ type: 'RunnerUpdated', schemaVersion: 1, data });
  if (change.archived === true && !runner.archived) events.push({ type: 'RunnerArchived', schemaVersion: 1, data: {} });
  if (change.archived === false && runner.archived) events.push({ type: 'RunnerUnarchived', schemaVersion: 1, data: {} });
  return events;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** A connection that said hello; a newer one replaces the one before. */
export function decideConnect(state: Runner | null, data: Extract<RunnerEvent, { type: 'RunnerConnected' }>['data']): RunnerEvent[] {
  const runner = requireRunner(state);
  if (runner.archived) throw new ConflictError('an archived runner cannot connect');
  return [{ type: 'RunnerConnected', schemaVersion: 1, data }];
}

/** Ends the connection if it is still the runner's current one; an older one ends silently. */
export function decideDisconnect(state: Runner | null, connectionId: string, reason: 'closed' | 'gateway_lost'): RunnerEvent[] {
  const runner = requireRunner(state);
  return runner.connection === connectionId ? [{ type: 'RunnerDisconnected', schemaVersion: 1, data: { connectionId, reason } }] : [];
}
