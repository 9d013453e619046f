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
