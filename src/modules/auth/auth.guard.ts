import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ForbiddenError } from '../../common/errors';
import { ACCESS_KEY, type AuthenticatedRequest } from './access.decorator';
import { Authenticator } from './authenticator';
import type { PrincipalKind } from './principal';

/** Establishes the caller from `Authorization: Bearer <token>` and checks the route lets it in. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: Authenticator,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = this.reflector.getAllAndOverride<PrincipalKind[] | 'public' | undefined>(ACCESS_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (access === 'public') return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest & { headers: Record<string, string | undefined> }>();
    const principal = await this.authenticator.authenticate(request.headers.authorization);
    if (access === undefined || !access.includes(principal.kind)) {
      throw new ForbiddenError('this credential may not use this route');
    }
    request.principal = principal;
    return true;
  }
}
