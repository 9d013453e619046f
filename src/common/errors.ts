/**
 * Domain errors: named classes with a stable snake_case `code`. One exception filter maps them
 * to problem+json (HTTP) and, later, to `error` frames (WebSocket). Anything that is not a
 * DomainError is an internal error and is never shown to a client.
 */
export abstract class DomainError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The job machine refused a command in the job's current state. */
export class InvalidTransitionError extends DomainError {
  readonly code = 'invalid_transition';
  constructor(
    message: string,
    readonly details: { state: string; command: string },
  ) {
    super(message);
  }
}

/** Another writer appended to the stream since it was read. */
export class ConcurrencyError extends DomainError {
  readonly code = 'concurrency_conflict';
  constructor(
    readonly streamId: string,
    readonly expectedVersion: number,
    readonly actualVersion: number | null,
    options?: { cause?: unknown },
  ) {
    super(
      `stream ${streamId} is at version ${actualVersion ?? 'none'}, expected ${expectedVersion}`,
      options,
    );
  }
}

export class NotFoundError extends DomainError {
  readonly code = 'not_found';
}

export class ConflictError extends DomainError {
  readonly code = 'conflict';
}

export class ValidationError extends DomainError {
  readonly code = 'validation_failed';
  constructor(
    message: string,
    readonly errors: readonly { field: string; message: string }[] = [],
  ) {
    super(message);
  }
}

/** A validation error about one field, the message saying both what is wrong and where. */
export function invalidField(field: string, message: string): ValidationError {
  return new ValidationError(message, [{ field, message }]);
}

export class UnauthorizedError extends DomainError {
  readonly code = 'unauthorized';
}

export class ForbiddenError extends DomainError {
  readonly code = 'forbidden';
}

/**
 * A dependency the request needs (the database) does not answer now: the request changed
 * nothing and may be sent again after `retryAfterSeconds` (503, `Retry-After`).
 */
export class UnavailableError extends DomainError {
  readonly code = 'unavailable';
  constructor(
    message: string,
    readonly retryAfterSeconds = 5,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Too many requests of one kind from one caller: try again after `retryAfterSeconds` (429, `Retry-After`). */
export class RateLimitedError extends DomainError {
  readonly code = 'rate_limited';
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
  ) {
    super(message);
  }
}

/** When the caller may try again, in seconds, for the errors that say so (`Retry-After`). */
export function retryAfterOf(error: unknown): number | undefined {
  return error instanceof UnavailableError || error instanceof RateLimitedError ? error.retryAfterSeconds : undefined;
}
