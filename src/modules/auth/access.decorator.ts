import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Principal, PrincipalKind } from './principal';

export const ACCESS_KEY = 'runway:access';

/** Who may call a route. Routes without it are refused to everyone: access is opt-in. */
export const Access = (...kinds: PrincipalKind[]) => SetMetadata(ACCESS_KEY, kinds);

/** A route anyone may call (health, docs). */
export const Public = () => SetMetadata(ACCESS_KEY, 'public');

export interface AuthenticatedRequest {
  principal?: Principal;
}

/** The caller, as the auth guard established it. */
export const CurrentPrincipal = createParamDecorator((_: unknown, context: ExecutionContext): Principal => {
  const principal = context.switchToHttp().getRequest<AuthenticatedRequest>().principal;
  if (principal === undefined) throw new Error('route has no @Access(): no principal was established');
  return principal;
});
