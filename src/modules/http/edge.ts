import { type IncomingMessage, type Server, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { NextFunction, Request, Response } from 'express';
import { type Unstorable, findUnstorable, textProblem } from '../../common/storable';
import { problem, problemForStatus, sendProblem, writeProblem } from './problem';

/**
 * The edge of the HTTP server: what is checked of every request before any route sees it (the
 * URL, the JSON body), and the errors Express and Node would otherwise answer on their own (in
 * HTML, or with no body at all), answered as problem+json like every other error.
 */

const badRequest = (found: Unstorable, detail: string) =>
  problem('validation_failed', detail, 400, [{ field: found.field, message: found.message }]);

/**
 * What is wrong with a request target (`/path?query`): a malformed percent-encoding, or a NUL or
 * lone surrogate once decoded. Route parameters and queries are stored and compared as text, so
 * they are held to what text can hold. Null when the target is fine.
 */
export function urlProblem(url: string): Unstorable | null {
  const query = url.indexOf('?');
  const path = query < 0 ? url : url.slice(0, query);
  const decodedPath = decode(path);
  if (decodedPath === null) return { field: 'path', message: 'the path has a malformed percent-encoding' };
  const pathProblem = textProblem(decodedPath);
  if (pathProblem !== null) return { field: 'path', message: `the path ${pathProblem}` };
  if (query < 0) return null;
  for (const pair of url.slice(query + 1).split('&')) {
    const equals = pair.indexOf('=');
    const name = decode((equals < 0 ? pair : pair.slice(0, equals)).replace(/\+/g, ' '));
    const value = equals < 0 ? '' : decode(pair.slice(equals + 1).replace(/\+/g, ' '));
    if (name === null || value === null) return { field: 'query', message: 'the query has a malformed percent-encoding' };
    const nameProblem = textProblem(name);
    if (nameProblem !== null) return { field: 'query', message: `a query parameter name ${nameProblem}` };
    const valueProblem = textProblem(value);
    if (valueProblem !== null) return { field: name, message: `query parameter ${name} ${valueProblem}` };
  }
  return null;
}

function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** Refuses a request whose URL cannot be read as text (400), before routing. */
export function checkUrl(request: Request, response: Response, next: NextFunction): void {
  const found = urlProblem(request.originalUrl ?? request.url);
  if (found === null) return next();
  sendProblem(response, badRequest(found, found.message));
}

/**
 * Refuses a JSON body PostgreSQL could not store or that nests too deep (400), naming the field,
 * before any validator (class-transformer recurses without limit) or the database sees it.
 */
export function checkJsonBody(request: Request, response: Response, next: NextFunction): void {
  const found = request.body === undefined ? null : findUnstorable(request.body);
  if (found === null) return next();
  sendProblem(response, badRequest(found, `the request body cannot be accepted: ${found.message}`));
}

/**
 * Errors of the middlewares before the routes (the Swagger UI's static files answer 412 and 416
 * as errors): a client error keeps its status as problem+json; anything else goes on to the
 * exception filter.
 */
export function clientErrors(error: unknown, _request: Request, response: Response, next: NextFunction): void {
  const failure = error as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown } | null;
  const status = typeof failure?.status === 'number' ? failure.status : failure?.statusCode;
  if (typeof status !== 'number' || status < 400 || status >= 500 || response.headersSent) return next(error);
  const detail = failure?.expose !== false && typeof failure?.message === 'string' ? failure.message : (STATUS_CODES[status] ?? 'bad request');
  sendProblem(response, problemForStatus(status, detail));
}

/**
 * What Node answers by itself (no body, no type): requests it cannot parse (400, 431 for headers
 * too large, 408 when they take too long) and an `Expect` it does not know (417). Answered as
 * problem+json instead, then the connection is closed.
 */
export function answerNodeErrorsWithProblems(server: Server): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node does: nothing more can be said on a socket whose response has begun.
    const answering = (socket as { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || error.code === 'ECONNRESET' || answering?.headersSent === true) {
      socket.destroy();
      return;
    }
    const status =
      error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? 413 : 400;
    writeProblem(socket, problemForStatus(status, status === 400 ? 'the request is not valid HTTP' : (STATUS_CODES[status] ?? 'bad request')));
  });
  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    response.setHeader('Connection', 'close');
    sendProblem(response, problemForStatus(417, `only Expect: 100-continue is supported, not ${JSON.stringify(request.headers.expect ?? '')}`));
  });
}
