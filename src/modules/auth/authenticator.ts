import { Inject, Injectable } from '@nestjs/common';
import { Clock } from '../../common/clock';
import { RateLimitedError, UnauthorizedError } from '../../common/errors';
import { KeyedTokenBuckets } from '../../common/rate-limit';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { Db } from '../database/db';
import { Metrics } from '../metrics/metrics';
import type { Principal } from './principal';
import { TOKEN_PATTERN, hashToken, hashesEqual } from './tokens';

export const ADMIN_TOKEN_HASH = Symbol('ADMIN_TOKEN_HASH');

/**
 * Turns `Authorization: Bearer <token>` into a principal: the operator, an org key or a runner.
 * Failed attempts are counted per source address: one that keeps guessing is refused (429)
 * before its credentials are looked at, until its limit refills.
 */
@Injectable()
export class Authenticator {
  private readonly failures: KeyedTokenBuckets;

  constructor(
    private readonly db: Db,
    @Inject(ADMIN_TOKEN_HASH) private readonly adminTokenHash: string,
    @Inject(RUNWAY_CONFIG) config: RunwayConfig,
    clock: Clock,
    private readonly metrics: Metrics,
  ) {
    this.failures = new KeyedTokenBuckets(config.rateLimits.authFailures, () => clock.now().getTime());
  }

  /** `source`: the caller's address, whose failed attempts are limited. */
  async authenticate(header: string | undefined, source: string): Promise<Principal> {
    if (!this.failures.has(source)) {
      this.metrics.rateLimited.inc({ limit: 'auth_failures' });
      throw new RateLimitedError('too many failed authentications from this address; try again later', this.failures.retryAfterSeconds(source));
    }
    try {
      return await this.check(header);
    } catch (error) {
      if (error instanceof UnauthorizedError) this.failures.take(source);
      throw error;
    }
  }

  private async check(header: string | undefined): Promise<Principal> {
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
