import { type ArgumentsHost, Catch, Logger, type WsExceptionFilter } from '@nestjs/common';
import type { WebSocket } from 'ws';
import { errorFrame } from './error-frame';

/**
 * Where what the handling of a runner message throws becomes a frame, as ProblemFilter is for
 * HTTP: the runner gets the `error` frame errorFrame() gives (its job named when the message had
 * one), and the socket stays open; an error that is not the runner's doing is logged, and shown to
 * it only as `internal_error`. (A frame refused before it is handled, over the socket's rate limit
 * or not a runner message at all, is answered at once by the gateway's `read` with errorFrame()
 * too: it must not wait behind the frames before it.)
 */
@Catch()
export class ErrorFrameFilter implements WsExceptionFilter {
  private readonly logger = new Logger('RunnerGateway');

  catch(error: unknown, host: ArgumentsHost): void {
    const socket = host.switchToWs().getClient<WebSocket>();
    const message = host.switchToWs().getData<unknown>();
    const job = typeof message === 'object' && message !== null && 'job' in message && typeof message.job === 'string' ? message.job : undefined;
    const frame = errorFrame(error, job);
    if (frame.code === 'internal_error') this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(frame));
  }
}
