import { randomUUID } from 'node:crypto';
import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { EventMetadata } from '../../events/envelope';
import type { AuthenticatedRequest } from '../auth/access.decorator';
import { actorOf, type Principal } from '../auth/principal';

/** What a service needs to know of the request it serves. */
export interface RequestContext {
  principal: Principal;
  metadata: EventMetadata;
  sourceIp: string | null;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller and the metadata its events carry (correlation id from X-Request-Id when sane). */
export const Ctx = createParamDecorator((_: unknown, context: ExecutionContext): RequestContext => {
  const request = context
    .switchToHttp()
    .getRequest<AuthenticatedRequest & { headers: Record<string, string | undefined>; ip?: string }>();
  const principal = request.principal;
  if (principal === undefined) throw new Error('route has no @Access(): no principal was established');
  const requestId = request.headers['x-request-id'];
  return {
    principal,
    metadata: {
      correlationId: requestId !== undefined && REQUEST_ID.test(requestId) ? requestId : randomUUID(),
      causationId: null,
      actor: actorOf(principal),
    },
    sourceIp: request.ip ?? null,
  };
});
