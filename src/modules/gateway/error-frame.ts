import { DomainError } from '../../common/errors';
import { BadMessage, type ServerMessage } from './protocol';

export type ErrorFrame = Extract<ServerMessage, { type: 'error' }>;

/**
 * The `error` frame a runner gets for a message refused with `error`, naming the message's job
 * when it has one: a malformed message is `bad_message`, a domain error gives its own code, and
 * anything else is `internal_error`, its details never shown to the runner.
 */
export function errorFrame(error: unknown, job: string | undefined): ErrorFrame {
  const about = job ? { job } : {};
  if (error instanceof BadMessage) return { type: 'error', code: 'bad_message', message: error.message, ...about };
  if (error instanceof DomainError) return { type: 'error', code: error.code, message: error.message, ...about };
  return { type: 'error', code: 'internal_error', message: 'the server could not handle this message', ...about };
}
