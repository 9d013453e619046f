import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { type DomainError, retryAfterOf } from '../../common/errors';
import { urlProblem } from './edge';
import { problem, statusOf, writeProblem } from './problem';

export type UpgradeHandler = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * The one listener for WebSocket upgrades: hands each request to the endpoint registered for its
 * path (runner sockets, the events feed), and answers any other path with 404.
 */
@Injectable()
export class UpgradeRouter implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly routes = new Map<string, UpgradeHandler>();

  constructor(private readonly adapterHost: HttpAdapterHost) {}

  register(path: string, handler: UpgradeHandler): void {
    this.routes.set(path, handler);
  }

  unregister(path: string): void {
    this.routes.delete(path);
  }

  onApplicationBootstrap(): void {
    this.adapterHost.httpAdapter.getHttpServer().on('upgrade', this.onUpgrade);
  }

  onApplicationShutdown(): void {
    this.adapterHost.httpAdapter.getHttpServer().off('upgrade', this.onUpgrade);
  }

  private readonly onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    // Query parameters (a project, a job) are looked up as text: held to what text can hold.
    const unreadable = urlProblem(request.url ?? '/');
    if (unreadable !== null) return refuseUpgrade(socket, 400, 'validation_failed', unreadable.message);
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const handler = this.routes.get(path);
    if (handler === undefined) return refuseUpgrade(socket, 404, 'not_found', `no WebSocket endpoint at ${path}`);
    handler(request, socket, head);
  };
}

/** Answers an upgrade request with a problem+json HTTP response and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, code: string, detail: string, retryAfterSeconds?: number): void {
  writeProblem(socket, problem(code, detail, status), retryAfterSeconds);
}

/** Refuses an upgrade for a domain error, with its code's status (and `Retry-After` where it says when). */
export function refuseUpgradeFor(socket: Duplex, error: DomainError): void {
  refuseUpgrade(socket, statusOf(error.code), error.code, error.message, retryAfterOf(error));
}
