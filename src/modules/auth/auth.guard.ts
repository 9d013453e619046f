import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ForbiddenError, UnauthorizedError } from '../../common/errors';
import { Db } from '../database/db';
import { ACCESS_KEY, type AuthenticatedRequest } from './access.decorator';
import type { Principal, PrincipalKind } from './principal';
import { TOKEN_PATTERN, hashToken, hashesEqual } from './tokens';

export const ADMIN_TOKEN_HASH = Symbol('ADMIN_TOKEN_HASH');

/** Establishes the caller from `Authorization: Bearer <token>` and checks the route lets it in. */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly db: Db,
    @Inject(ADMIN_TOKEN_HASH) private readonly adminTokenHash: string,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = this.reflector.getAllAndOverride<PrincipalKind[] | 'public' | undefined>(ACCESS_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (access === 'public') return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest & { headers: Record<string, string | undefined> }>();
    const principal = await this.authenticate(request.headers.authorization);
    if (access === undefined || !access.includes(principal.kind)) {
      throw new ForbiddenError('this credential may not use this route');
    }
    request.principal = principal;
    return true;
  }

  async authenticate(header: string | undefined): Promise<Principal> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (match === null) throw new UnauthorizedError('send a credential as Authorization: Bearer <token>');
    const token = match[1];
    const hash = hashToken(token);
    if (hashesEqual(hash, this.adminTokenHash)) return { kind: 'admin' };
    if (TOKEN_PATTERN.key.test(token)) {
      const { rows } = await this.db.query<{ id: string; org_id: string }>(
        `SELECT id, org_id FROM org_keys WHERE key_hash = $1 AND revoked_at IS NULL`,
        [hash],
      );
      if (rows[0]) return { kind: 'org', orgId: rows[0].org_id, keyId: rows[0].id };
    } else if (TOKEN_PATTERN.runner.test(token)) {
      const { rows } = await this.db.query<{ id: string }>(
        `SELECT id FROM runners WHERE token_hash = $1 AND NOT archived`,
        [hash],
      );
      if (rows[0]) return { kind: 'runner', runnerId: rows[0].id };
    }
    throw new UnauthorizedError('the credential is not valid');
  }
}
