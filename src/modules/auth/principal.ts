import type { Actor } from '../../events/envelope';

/** Who is calling, as the auth guard established it. */
export type Principal =
  | { kind: 'admin' }
  | { kind: 'org'; orgId: string; keyId: string }
  | { kind: 'runner'; runnerId: string };

export type PrincipalKind = Principal['kind'];

export function actorOf(principal: Principal): Actor {
  switch (principal.kind) {
    case 'admin':
      return 'admin';
    case 'org':
      return `key:${principal.keyId}`;
    case 'runner':
      return `runner:${principal.runnerId}`;
    default: {
      const _exhaustive: never = principal;
      return _exhaustive;
    }
  }
}

/** The org a principal may act in: its own for a key, the one it names for the operator. */
export function canReadOrg(principal: Principal, orgId: string): boolean {
  return principal.kind === 'admin' || (principal.kind === 'org' && principal.orgId === orgId);
}

/** The org of an org-key caller; routes for org keys only call this. */
export function orgOf(principal: Principal): string {
  if (principal.kind !== 'org') throw new Error(`expected an organization key, got ${principal.kind}`);
  return principal.orgId;
}

/** The runner of a runner-token caller; routes for runners only call this. */
export function runnerOf(principal: Principal): string {
  if (principal.kind !== 'runner') throw new Error(`expected a runner token, got ${principal.kind}`);
  return principal.runnerId;
}
