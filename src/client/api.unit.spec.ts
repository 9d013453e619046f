import { RunwayApiError, RunwayClient, RunwayConnectionError, describeNetworkError } from './api';

interface Sent {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string | undefined;
}

/** A fetch that records what it was asked and answers `status` with `body`. */
function fakeFetch(status: number, body: string, contentType = 'application/json') {
  const sent: Sent[] = [];
  const fetch = (async (url: URL, init: RequestInit) => {
    sent.push({ url: url.toString(), method: String(init.method), headers: init.headers as Record<string, string>, body: init.body as string | undefined });
    return new Response(status === 204 ? null : body, { status, headers: { 'content-type': contentType } });
  }) as unknown as typeof globalThis.fetch;
  return { fetch, sent };
}

describe('RunwayClient requests', () => {
  it('joins paths to the base URL (keeping a prefix), encodes path parts and sets the query', async () => {
    const { fetch, sent } = fakeFetch(200, '{"items":[],"nextCursor":null}');
    const client = new RunwayClient({ baseUrl: 'https://ci.example.com/runway/', token: 'runway_key_x', fetch });
    const result = await client.listJobs('my project', { status: 'pending', limit: 10, cursor: undefined });
    expect(sent[0].url).toBe('https://ci.example.com/runway/v1/projects/my%20project/jobs?status=pending&limit=10');
    expect(sent[0].method).toBe('GET');
    expect(sent[0].headers.authorization).toBe('Bearer runway_key_x');
    expect(result).toEqual({ status: 200, data: { items: [], nextCursor: null }, text: '{"items":[],"nextCursor":null}' });
  });

  it('sends JSON bodies and the Idempotency-Key header', async () => {
    const { fetch, sent } = fakeFetch(201, '{"id":"j"}');
    const client = new RunwayClient({ baseUrl: 'http://127.0.0.1:8080', token: 't', fetch });
    await client.submitJob('compiler', { spec: 'x86', cmd: ['cargo', 'bench'] }, 'build-1');
    expect(sent[0]).toMatchObject({
      url: 'http://127.0.0.1:8080/v1/projects/compiler/jobs',
      method: 'POST',
      body: '{"spec":"x86","cmd":["cargo","bench"]}',
      headers: expect.objectContaining({ 'content-type': 'application/json', 'idempotency-key': 'build-1' }),
    });
  });

  it('sends no Authorization header without a token; 204 answers have no data', async () => {
    const { fetch, sent } = fakeFetch(204, '');
    const client = new RunwayClient({ baseUrl: 'http://h', fetch });
    expect(await client.revokeKey('acme', 'k1')).toEqual({ status: 204, data: undefined, text: '' });
    expect(sent[0].headers.authorization).toBeUndefined();
  });

  it('turns a problem answer into a RunwayApiError with its code, detail and field errors', async () => {
    const problem = { type: 't', title: 'Bad Request', status: 400, detail: 'spec "nope" does not exist', code: 'validation_failed', errors: [{ field: 'specs', message: 'unknown spec nope' }] };
    const { fetch } = fakeFetch(400, JSON.stringify(problem), 'application/problem+json');
    const error = await new RunwayClient({ baseUrl: 'http://h', fetch }).createRunner({ slug: 'r', name: 'r', specs: ['nope'] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunwayApiError);
    expect(error).toMatchObject({ status: 400, code: 'validation_failed', detail: 'spec "nope" does not exist', problem, message: 'validation_failed: spec "nope" does not exist' });
  });

  it('an answer that is not Runway’s (a proxy page) still says what it was', async () => {
    const { fetch } = fakeFetch(502, '<html>Bad Gateway</html>', 'text/html');
    const error = await new RunwayClient({ baseUrl: 'http://h', fetch }).getJob('j').catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 502, code: 'http_502', detail: expect.stringContaining('not a Runway answer: text/html') });
  });

  it('a 200 that is not JSON is a bad_response', async () => {
    const { fetch } = fakeFetch(200, 'hello', 'text/plain');
    await expect(new RunwayClient({ baseUrl: 'http://h', fetch }).getJob('j')).rejects.toMatchObject({ code: 'bad_response' });
  });

  it('a failed connection is a RunwayConnectionError naming the server and why', async () => {
    const fetch = (async () => {
      throw new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }) });
    }) as unknown as typeof globalThis.fetch;
    const error = await new RunwayClient({ baseUrl: 'http://127.0.0.1:9', fetch }).listOrgs().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunwayConnectionError);
    expect((error as Error).message).toBe('cannot reach Runway at http://127.0.0.1:9: connection refused (ECONNREFUSED)');
  });

  it('no answer in time is a RunwayConnectionError too', async () => {
    const fetch = ((_url: URL, init: RequestInit) =>
      new Promise((_resolve, reject) => init.signal!.addEventListener('abort', () => reject(init.signal!.reason)))) as unknown as typeof globalThis.fetch;
    const error = await new RunwayClient({ baseUrl: 'http://h', fetch, timeoutMs: 20 }).listOrgs().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RunwayConnectionError);
    expect((error as RunwayConnectionError).reason).toBe('no answer within 20 ms');
  });

  it('the events feed URL is the WebSocket form of the base URL', () => {
    expect(new RunwayClient({ baseUrl: 'https://h/runway' }).eventsUrl({ job: 'j', after: 0 }).toString()).toBe('wss://h/runway/v1/events?job=j&after=0');
    expect(new RunwayClient({ baseUrl: 'http://h:8080' }).eventsUrl({ job: 'j' }).toString()).toBe('ws://h:8080/v1/events?job=j');
  });
});

describe('network errors in words', () => {
  it('looks through causes and aggregate errors for a code', () => {
    const aggregate = Object.assign(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]), {});
    expect(describeNetworkError(new TypeError('fetch failed', { cause: aggregate }))).toBe('connection refused (ECONNREFUSED)');
    expect(describeNetworkError(new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' }) }))).toBe(
      'host not found (ENOTFOUND)',
    );
    expect(describeNetworkError(new Error('socket hang up'))).toBe('socket hang up');
  });
});
