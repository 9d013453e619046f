import type { LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { NextFunction, Request, Response } from 'express';
import { json } from 'express';
import { AppModule } from './app.module';
import type { Clock } from './common/clock';
import type { Role } from './config/roles';
import type { RunwayConfig } from './config/config';
import { answerNodeErrorsWithProblems, checkJsonBody, checkUrl, clientErrors } from './modules/http/edge';
import { problem, sendProblem } from './modules/http/problem';
import { validationPipe } from './modules/http/validation';
import { RunwayWsAdapter } from './modules/websocket/runway-ws.adapter';

export const LOG_LEVELS: Record<RunwayConfig['logLevel'], LogLevel[]> = {
  error: ['fatal', 'error'],
  warn: ['fatal', 'error', 'warn'],
  log: ['fatal', 'error', 'warn', 'log'],
  debug: ['fatal', 'error', 'warn', 'log', 'debug'],
};

export interface AppOptions {
  adminTokenHash: string;
  /** The time; tests pass a ManualClock. */
  clock?: Clock;
  /** The roles this process runs; all by default. */
  roles?: readonly Role[];
  logger?: false;
}

/**
 * Builds the HTTP application: URL and body checks at the edge (modules/http/edge), body limits,
 * validation, problem+json errors (every one, Express's and Node's own too), OpenAPI, and the
 * WebSocket gateways on RunwayWsAdapter (upgrades refused with problem+json).
 */
export async function createApp(config: RunwayConfig, options: AppOptions): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot({ config, adminTokenHash: options.adminTokenHash, clock: options.clock, roles: options.roles }),
    { bodyParser: false, logger: options.logger ?? LOG_LEVELS[config.logLevel], abortOnError: false },
  );
  app.disable('x-powered-by');
  answerNodeErrorsWithProblems(app.getHttpServer());
  app.use(checkUrl);
  app.use(json({ limit: config.maxMessageBytes, strict: false, type: JSON_TYPES }));
  app.use(bodyErrors);
  app.use(requireJsonBodies);
  app.use(checkJsonBody);
  app.useGlobalPipes(validationPipe());
  app.useWebSocketAdapter(new RunwayWsAdapter(app, { maxPayload: config.maxMessageBytes }));
  app.enableShutdownHooks();

  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Runway')
      .setDescription('Benchmark jobs for bare-metal runners. Errors are application/problem+json with a stable `code`.')
      .setVersion('1')
      .addBearerAuth()
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'openapi.json', raw: ['json'] });
  // After the Swagger UI's routes and files, before the application's: their client errors.
  app.use(clientErrors);
  return app;
}

const JSON_TYPES = ['application/json', 'application/*+json'];

/** Body parser failures become problems: too large is 413, unreadable JSON is 400. */
function bodyErrors(error: unknown, _request: Request, response: Response, next: NextFunction): void {
  const failure = error as { type?: string; status?: number; message?: string } | undefined;
  if (failure?.type === 'entity.too.large') {
    sendProblem(response, problem('payload_too_large', 'the request body is over the size limit'));
  } else if (failure?.type === 'entity.parse.failed') {
    sendProblem(response, problem('validation_failed', 'the request body is not valid JSON'));
  } else if (failure?.status === 415) {
    sendProblem(response, problem('unsupported_media_type', failure.message ?? 'the request body has an unsupported encoding'));
  } else if (failure?.status !== undefined && failure.status >= 400 && failure.status < 500) {
    sendProblem(response, problem('validation_failed', 'the request body could not be read', 400));
  } else {
    next(error);
  }
}

/** A request that sends a body must send JSON: anything else is 415, not a confusing 400. */
function requireJsonBodies(request: Request, response: Response, next: NextFunction): void {
  const hasBody = Number(request.headers['content-length'] ?? 0) > 0 || request.headers['transfer-encoding'] !== undefined;
  if (hasBody && request.body === undefined && !request.is(JSON_TYPES)) {
    sendProblem(response, problem('unsupported_media_type', 'send the request body as application/json'));
    return;
  }
  next();
}
