import { type CanActivate, type ExecutionContext, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Clock } from '../../common/clock';
import { ForbiddenError, RateLimitedError } from '../../common/errors';
import { KeyedTokenBuckets } from '../../common/rate-limit';
import { RUNWAY_CONFIG, type RunwayConfig } from '../../config/config';
import { Metrics } from '../metrics/metrics';
import { ACCESS_KEY, type AuthenticatedRequest } from './access.decorator';
import { Authenticator } from './authenticator';
import { type PrincipalKind, actorOf } from './principal';

/**
 * Establishes the caller from `Authorization: Bearer <token>`, checks the route lets it in, and
 * holds each credential to its request rate (429 with `Retry-After` past it).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  private readonly requests: KeyedTokenBuckets;

  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: Authenticator,
    private readonly metrics: Metrics,
    @Inject(RUNWAY_CONFIG) config: RunwayConfig,
    clock: Clock,
  ) {
    this.requests = new KeyedTokenBuckets(config.rateLimits.apiRequests, () => clock.now().getTime());
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = this.reflector.getAllAndOverride<PrincipalKind[] | 'public' | undefined>(ACCESS_KEY, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (access === 'public') return true;
    const request = context
      .switchToHttp()
      .getRequest<AuthenticatedRequest & { headers: Record<string, string | undefined>; socket?: { remoteAddress?: string } }>();
    const principal = await this.authenticator.authenticate(request.headers.authorization, request.socket?.remoteAddress ?? 'unknown');
    const key = actorOf(principal); // one bucket per credential
    if (!this.requests.take(key)) {
      this.metrics.rateLimited.inc({ limit: 'api_requests' });
      throw new RateLimitedError('too many requests with this credential; slow down', this.requests.retryAfterSeconds(key));
    }
    if (access === undefined || !access.includes(principal.kind)) {
      throw new ForbiddenError('this credential may not use this route');
    }
    request.principal = principal;
    return true;
  }
}

