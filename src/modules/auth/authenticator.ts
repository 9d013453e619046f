import { Inject, Injectable } from '@nestjs/common';
import { UnauthorizedError } from '../../common/errors';
import { Db } from '../database/db';
import type { Principal } from './principal';
import { TOKEN_PATTERN, hashToken, hashesEqual } from './tokens';

export const ADMIN_TOKEN_HASH = Symbol('ADMIN_TOKEN_HASH');

/** Turns `Authorization: Bearer <token>` into a principal: the operator, an org key or a runner. */
@Injectable()
export class Authenticator {
  constructor(
    private readonly db: Db,
    @Inject(ADMIN_TOKEN_HASH) private readonly adminTokenHash: string,
  ) {}

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
