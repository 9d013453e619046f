import { InvalidTransitionError, NotFoundError, RateLimitedError } from '../../common/errors';
import { errorFrame } from './error-frame';
import { BadMessage } from './protocol';

describe('errorFrame', () => {
  const job = '00000000-0000-7000-8000-000000000000';

  it('names a malformed message bad_message, with the job when there is one', () => {
    expect(JSON.stringify(errorFrame(new BadMessage('send hello first'), undefined))).toBe(
      '{"type":"error","code":"bad_message","message":"send hello first"}',
    );
    expect(JSON.stringify(errorFrame(new BadMessage('truncated must be true or false', job), job))).toBe(
      `{"type":"error","code":"bad_message","message":"truncated must be true or false","job":"${job}"}`,
    );
  });

  it('gives a domain error its own code and message', () => {
    const refused = new InvalidTransitionError('job is completed', { state: 'completed', command: 'heartbeat' });
    expect(errorFrame(refused, job)).toEqual({ type: 'error', code: 'invalid_transition', message: 'job is completed', job });
    expect(errorFrame(new NotFoundError(`job ${job} not found`), job)).toEqual({ type: 'error', code: 'not_found', message: `job ${job} not found`, job });
    expect(JSON.stringify(errorFrame(new RateLimitedError('too many messages; slow down'), undefined))).toBe(
      '{"type":"error","code":"rate_limited","message":"too many messages; slow down"}',
    );
  });

  it('shows nothing of any other error', () => {
    expect(errorFrame(new Error('connection to 10.0.0.5 refused'), job)).toEqual({
      type: 'error',
      code: 'internal_error',
      message: 'the server could not handle this message',
      job,
    });
    expect(errorFrame('a thrown string', undefined)).toEqual({ type: 'error', code: 'internal_error', message: 'the server could not handle this message' });
  });
});
