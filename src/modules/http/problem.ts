import { type IncomingMessage, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { DomainError } from '../../common/errors';

/** An error as clients see it: application/problem+json (RFC 9457) with a stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: readonly { field: string; message: string }[];
}

const STATUS_BY_CODE: Record<string, number> = {
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  invalid_transition: 409,
  concurrency_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  unavailable: 503,
};

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** A code for an HTTP status that came without one (framework errors). */
export const CODE_BY_STATUS: Record<number, string> = {
  400: 'validation_failed',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'unavailable',
};

export function statusOf(code: string): number {
  return STATUS_BY_CODE[code] ?? 400;
}

export function problem(code: string, detail: string, status = statusOf(code), errors?: Problem['errors']): Problem {
  return {
    type: `https://runway.dev/problems/${code.replace(/_/g, '-')}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    code,
    ...(errors && errors.length > 0 ? { errors } : {}),
  };
}

export function problemOf(error: DomainError): Problem {
  const errors = (error as { errors?: Problem['errors'] }).errors;
  return problem(error.code, error.message, statusOf(error.code), errors);
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** A problem for an HTTP status: the contract's code where it has one, else the status's name. */
export function problemForStatus(status: number, detail: string, errors?: Problem['errors']): Problem {
  const name = STATUS_CODES[status] ?? 'Error';
  const code = CODE_BY_STATUS[status] ?? (status >= 500 ? 'internal_error' : name.toLowerCase().replace(/[^a-z0-9]+/g, '_'));
  const body = problem(code, detail, status, errors);
  return body.title === 'Error' ? { ...body, title: name } : body;
}

function headersOf(json: string, retryAfterSeconds: number | undefined): Record<string, string> {
  return {
    'Content-Type': `${PROBLEM_CONTENT_TYPE}; charset=utf-8`,
    'Content-Length': String(Buffer.byteLength(json)),
    ...(retryAfterSeconds === undefined ? {} : { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) }),
  };
}

/** Answers with `body` (and `Retry-After` when given): the one way a problem is written to a response. */
export function sendProblem(response: ServerResponse<IncomingMessage>, body: Problem, retryAfterSeconds?: number): void {
  const json = JSON.stringify(body);
  response.statusCode = body.status;
  for (const [name, value] of Object.entries(headersOf(json, retryAfterSeconds))) response.setHeader(name, value);
  response.end(json);
}

/**
 * Writes `body` as a whole HTTP response on a bare socket and closes it: for a refused WebSocket
 * upgrade, and for requests Node could not parse (no response object exists for either).
 */
export function writeProblem(socket: Duplex, body: Problem, retryAfterSeconds?: number): void {
  const json = JSON.stringify(body);
  const headers = Object.entries({ ...headersOf(json, retryAfterSeconds), Connection: 'close' })
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.end(`HTTP/1.1 ${body.status} ${STATUS_CODES[body.status] ?? 'Error'}\r\n${headers}\r\n${json}`);
}
