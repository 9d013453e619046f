import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { Response } from 'express';
import { DomainError, retryAfterOf } from '../../common/errors';
import { CODE_BY_STATUS, type Problem, problem, problemForStatus, problemOf, sendProblem } from './problem';

/**
 * The one place errors become HTTP responses. Domain errors keep their code (and a
 * `Retry-After` where they say when to try again: 503 while the database is down, 429); framework errors
 * get the code of their status; anything else is logged and answered with a generic 500 that
 * says nothing of its cause.
 */
@Catch()
export class ProblemFilter implements ExceptionFilter {
  private readonly logger = new Logger('HTTP');

  catch(error: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const body = this.toProblem(error);
    if (response.headersSent) return;
    sendProblem(response, body, retryAfterOf(error));
  }

  private toProblem(error: unknown): Problem {
    if (error instanceof DomainError) return problemOf(error);
    if (error instanceof HttpException) {
      const status = error.getStatus();
      const code = CODE_BY_STATUS[status];
      if (code !== undefined) return problem(code, error.message, status);
      // Any other client error a framework part raises (412, 416 from static files): its own status.
      if (status >= 400 && status < 500) return problemForStatus(status, error.message);
    }
    this.logger.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    return problem('internal_error', 'the server could not handle this request', 500);
  }
}
