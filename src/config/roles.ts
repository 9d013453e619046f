/** What a process does; one process runs every role by default (docs/architecture.md, "Roles and scale"). */
export const ROLES = ['api', 'gateway', 'relay', 'projector'] as const;
export type Role = (typeof ROLES)[number];

export class RolesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolesError';
  }
}

/** `api,gateway` -> the roles, in a fixed order; unknown or empty names are refused. */
export function parseRoles(text: string): Role[] {
  const names = text.split(',').map((name) => name.trim()).filter((name) => name !== '');
  if (names.length === 0) throw new RolesError(`--roles needs one or more of ${ROLES.join(', ')}`);
  for (const name of names) {
    if (!(ROLES as readonly string[]).includes(name)) throw new RolesError(`unknown role "${name}": expected ${ROLES.join(', ')}`);
  }
  return ROLES.filter((role) => names.includes(role));
}
