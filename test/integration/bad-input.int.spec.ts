import WebSocket from 'ws';
import { type TestApp, ADMIN_TOKEN, admin, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { type RawResponse, rawHttp } from '../support/raw-http';
import { appSuite } from '../support/suite';
import { TestRunner } from '../support/runner-client';

const PROBLEM = /^application\/problem\+json/;

/** A JSON text as a client could send it: `\ud800` stays a lone surrogate, `\u0000` a NUL. */
const jsonText = (fields: Record<string, string>) => `{${Object.entries(fields).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

/**
 * Input PostgreSQL cannot store or parsers cannot take (lone surrogates, NUL, deep nesting),
 * refused at the edge as 400 problem+json (or `bad_message` on a runner socket) before anything
 * is written; and every error the server gives, Express's and Node's own too, as problem+json.
 */
describe('bad input at the edge', () => {
  const suite = appSuite({ RUNWAY_MAX_MESSAGE_BYTES: String(512 * 1024) });
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => ({ t, f } = suite));

  const countEvents = async () => Number((await t.db.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0].n);

  function expectProblem(res: { status: number; headers: Record<string, string>; body: unknown }, status: number, code: string) {
    expect({ status: res.status, type: res.headers['content-type'], code: (res.body as { code?: string }).code }).toEqual({
      status,
      type: expect.stringMatching(PROBLEM),
      code,
    });
    expect((res.body as { status?: number }).status).toBe(status);
  }

  describe('JSON bodies', () => {
    it('refuses lone surrogates and NUL in any string or field name with 400 naming the field, writing nothing', async () => {
      const spec = await f.spec();
      const team = await f.tenant();
      const slug = JSON.stringify(spec.slug);
      const cases: [string, string, Record<string, string>, string, string][] = [
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key), jsonText({ spec: slug, cmd: '["ok", "\\ud800"]' }), 'cmd[1]'],
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key), jsonText({ spec: slug, cmd: '["x"]', env: '{"A": "\\udc00x"}' }), 'env.A'],
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key), jsonText({ spec: slug, cmd: '["x"]', env: '{"A\\ud800": "x"}' }), 'env.A\ufffd'],
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key), jsonText({ spec: '"a\\u0000"', cmd: '["x"]' }), 'spec'],
        ['post', `/v1/projects/${team.project.id}/jobs`, bearer(team.key), jsonText({ spec: slug, cmd: '["x"]', filePaths: '["\\ud800"]' }), 'filePaths[0]'],
        ['post', '/v1/orgs', admin, jsonText({ slug: '"surrogate"', name: '"\\ud800"', plan: '"free"' }), 'name'],
        ['post', '/v1/orgs', admin, jsonText({ slug: '"nul"', name: '"x"', plan: '"free"', 'a\u0000': '1' }), 'a\ufffd'],
        ['patch', `/v1/orgs/${team.org.id}`, admin, jsonText({ name: '"\\udfff"' }), 'name'],
        ['post', '/v1/projects', bearer(team.key), jsonText({ slug: '"p-surrogate"', name: '"\\ud83d"' }), 'name'],
        ['post', '/v1/specs', admin, jsonText({ slug: '"s-surrogate"', name: '"\\udbff"' }), 'name'],
        ['post', '/v1/runners', admin, jsonText({ slug: '"r-surrogate"', name: '"\\ud800\\ud800"', specs: slug.replace(/^/, '[').replace(/$/, ']') }), 'name'],
      ];
      const before = await countEvents();
      for (const [method, url, headers, body, field] of cases) {
        const http = t.http as unknown as Record<string, (u: string) => import('supertest').Test>;
        const call = http[method].bind(http);
        const res = await call(url)
          .set(headers)
          .set('Content-Type', 'application/json')
          .send(body);
        expect({ url, body, status: res.status, code: res.body.code, fields: res.body.errors?.map((e: { field: string }) => e.field) }).toEqual({
          url,
          body,
          status: 400,
          code: 'validation_failed',
          fields: [field],
        });
        expect(res.headers['content-type']).toMatch(PROBLEM);
      }
      expect(await countEvents()).toBe(before);
      // A well-formed pair (an emoji) is text like any other.
      await t.http
        .post(`/v1/projects/${team.project.id}/jobs`)
        .set(bearer(team.key))
        .set('Content-Type', 'application/json')
        .send(jsonText({ spec: slug, cmd: '["\\ud83d\\udca5"]' }))
        .expect(201);
    });

    it('refuses JSON nested deeper than 64 levels with 400, however deep', async () => {
      const team = await f.tenant();
      const before = await countEvents();
      for (const depth of [65, 10_000, 50_000]) {
        for (const body of [`${'['.repeat(depth)}${']'.repeat(depth)}`, `{"spec":"x","cmd":${'['.repeat(depth)}${']'.repeat(depth)}}`, `{"env":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`]) {
          const res = await t.http.post(`/v1/projects/${team.project.id}/jobs`).set(bearer(team.key)).set('Content-Type', 'application/json').send(body);
          expectProblem(res, 400, 'validation_failed');
          expect(res.body.detail).toMatch(/nested deeper than 64 levels/);
        }
      }
      // 64 levels are fine as far as nesting goes (the fields are then checked as usual).
      const res = await t.http
        .post('/v1/orgs')
        .set(admin)
        .set('Content-Type', 'application/json')
        .send(`{"slug":"deep-ok","name":"n","plan":"free","x":${'['.repeat(63)}${']'.repeat(63)}}`);
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.detail).toBe('property x should not exist');
      expect(await countEvents()).toBe(before);
    });
  });

  describe('filePaths', () => {
    it('refuses absolute paths, .. and empty segments, and NUL at submission, naming filePaths[i]', async () => {
      const spec = await f.spec();
      const team = await f.tenant();
      const submit = (filePaths: unknown) =>
        t.http.post(`/v1/projects/${team.project.id}/jobs`).set(bearer(team.key)).send({ spec: spec.slug, cmd: ['x'], filePaths });
      const before = await countEvents();
      const res = await submit(['out/ok.json', '../../etc/passwd', '/etc/passwd', 'a//b', 'out/..', '\\\\server\\share', 'C:\\x', 'a\\..\\..\\b', 'out/']);
      expectProblem(res, 400, 'validation_failed');
      expect(res.body.errors).toEqual([
        { field: 'filePaths[1]', message: 'filePaths[1] is refused: path contains ..' },
        { field: 'filePaths[2]', message: 'filePaths[2] is refused: absolute path' },
        { field: 'filePaths[3]', message: 'filePaths[3] is refused: path has an empty segment' },
        { field: 'filePaths[4]', message: 'filePaths[4] is refused: path contains ..' },
        { field: 'filePaths[5]', message: 'filePaths[5] is refused: absolute path' },
        { field: 'filePaths[6]', message: 'filePaths[6] is refused: absolute path' },
        { field: 'filePaths[7]', message: 'filePaths[7] is refused: path contains ..' },
        { field: 'filePaths[8]', message: 'filePaths[8] is refused: path has an empty segment' },
      ]);
      const nul = await submit(['ok', 'a\u0000b']);
      expectProblem(nul, 400, 'validation_failed');
      // NUL is refused at the edge, for every string of a body, before the rule of filePaths.
      expect(nul.body.errors).toEqual([{ field: 'filePaths[1]', message: expect.stringMatching(/NUL/) }]);
      expect(await countEvents()).toBe(before);
      const ok = await submit(['out/result.json', './x', 'a..b/c..', '.hidden']).expect(201);
      expect((await f.job(ok.body.id)).status).toBe('pending');
    });
  });

  describe('URLs and headers', () => {
    it('refuses path parameters and queries with NUL or malformed percent-encodings with 400 problem+json', async () => {
      const team = await f.tenant();
      const before = await countEvents();
      for (const [path, headers] of [
        ['/v1/orgs/a%00', admin],
        ['/v1/projects/%00', bearer(team.key)],
        ['/v1/projects/%ED%A0%80', bearer(team.key)],
        ['/v1/jobs/%E0%A4%A', admin],
        ['/v1/jobs/%', admin],
        [`/v1/projects/${team.project.id}/jobs?cursor=%00`, bearer(team.key)],
        [`/v1/projects/${team.project.id}/jobs?status=%ZZ`, bearer(team.key)],
        [`/v1/projects/${team.project.id}/jobs?%00=1`, bearer(team.key)],
        ['/v1/queue?spec=%C0%80', admin],
      ] as const) {
        const res = await t.http.get(path).set(headers);
        expect({ path, status: res.status, code: res.body.code }).toEqual({ path, status: 400, code: 'validation_failed' });
        expect(res.headers['content-type']).toMatch(PROBLEM);
      }
      const post = await t.http.post('/v1/projects/%00/jobs').set(bearer(team.key)).send({ spec: 'x', cmd: ['x'] });
      expectProblem(post, 400, 'validation_failed');
      expect(await countEvents()).toBe(before);
    });

    it('answers a malformed request target sent as raw bytes with 400 problem+json', async () => {
      const res = await rawHttp(t.url, `GET /v1/jobs/%E0%A4%A HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`);
      expectRawProblem(res, 400, 'validation_failed');
    });

    it('refuses an Idempotency-Key that is not visible ASCII with 400', async () => {
      const spec = await f.spec();
      const team = await f.tenant();
      const before = await countEvents();
      const body = JSON.stringify({ spec: spec.slug, cmd: ['x'] });
      const res = await rawHttp(
        t.url,
        Buffer.concat([
          Buffer.from(`POST /v1/projects/${team.project.id}/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${team.key}\r\nIdempotency-Key: `),
          Buffer.from([0xed, 0xa0, 0x80, 0xff]),
          Buffer.from(`\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`),
        ]),
      );
      expectRawProblem(res, 400, 'validation_failed');
      expect(await countEvents()).toBe(before);
    });
  });

  describe('every error is problem+json', () => {
    it('answers what Node would answer by itself (unparsable requests, huge headers, unknown Expect) as problem+json', async () => {
      expectRawProblem(await rawHttp(t.url, 'GARBAGE\r\n\r\n'), 400, 'validation_failed');
      // A NUL in a header (an Idempotency-Key, say) never reaches the application: Node refuses it.
      expectRawProblem(await rawHttp(t.url, `GET /v1/orgs HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\u0000b\r\nConnection: close\r\n\r\n`), 400, 'validation_failed');
      expectRawProblem(
        await rawHttp(t.url, 'POST /v1/orgs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\n{"a"}'),
        400,
        'validation_failed',
      );
      expectRawProblem(
        await rawHttp(t.url, 'POST /v1/orgs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\nConnection: close\r\n\r\nzz\r\n'),
        400,
        'validation_failed',
      );
      const huge = await rawHttp(t.url, `GET /v1/orgs HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20_000)}\r\nX-B: ${'b'.repeat(20_000)}\r\nConnection: close\r\n\r\n`);
      expectRawProblem(huge, 431, 'request_header_fields_too_large');
      const expectation = await rawHttp(
        t.url,
        'POST /v1/orgs HTTP/1.1\r\nHost: x\r\nExpect: nothing\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}',
      );
      expectRawProblem(expectation, 417, 'expectation_failed');
    });

    it('answers unknown routes, wrong methods, HEAD and OPTIONS with problem+json', async () => {
      expectProblem(await t.http.get('/v1/nope').set(admin), 404, 'not_found');
      expectProblem(await t.http.put('/v1/orgs').set(admin).send({}), 404, 'not_found');
      expectProblem(await t.http.delete('/v1/specs').set(admin), 404, 'not_found');
      expectProblem(await t.http.options('/v1/orgs').set(admin), 404, 'not_found');
      expectProblem(await t.http.post('/openapi.json'), 404, 'not_found');
      const head = await t.http.head('/v1/nope').set(admin);
      expect({ status: head.status, type: head.headers['content-type'] }).toEqual({ status: 404, type: expect.stringMatching(PROBLEM) });
      expect((await t.http.head('/v1/orgs').set(admin)).status).toBe(200);
    });

    it('answers body parser failures of every kind with problem+json', async () => {
      const post = () => t.http.post('/v1/orgs').set(admin);
      expectProblem(await post().set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('{}'), 400, 'validation_failed');
      expectProblem(await post().set('Content-Type', 'application/json').set('Content-Encoding', 'klingon').send('{}'), 415, 'unsupported_media_type');
      expectProblem(await post().set('Content-Type', 'application/json; charset=klingon').send('{}'), 415, 'unsupported_media_type');
      expectProblem(await post().set('Content-Type', 'application/xml').send('<a/>'), 415, 'unsupported_media_type');
      expectProblem(await post().set('Content-Type', 'application/json').send('{"slug": '), 400, 'validation_failed');
      expectProblem(await post().set('Content-Type', 'application/json').send(JSON.stringify({ name: 'x'.repeat(600 * 1024) })), 413, 'payload_too_large');
    });

    it('answers the Swagger UI files client errors as problem+json and keeps the docs working', async () => {
      await t.http.get('/docs').expect(200).expect('content-type', /html/);
      expect((await t.http.get('/openapi.json').expect(200)).body.openapi).toMatch(/^3\./);
      await t.http.get('/docs/swagger-ui.css').expect(200).expect('content-type', /css/);
      expectProblem(await t.http.get('/docs/swagger-ui.css').set('Range', 'bytes=99999999-'), 416, 'range_not_satisfiable');
      expectProblem(await t.http.get('/docs/swagger-ui.css').set('If-Match', '"nope"'), 412, 'precondition_failed');
    });
  });

  describe('runner socket', () => {
    it('answers lone surrogates and deep nesting in any frame with bad_message, keeps the socket open and writes nothing', async () => {
      const spec = await f.spec();
      const team = await f.tenant();
      const runner = await f.runner([spec.slug]);
      const socket = await TestRunner.connect(t.url, runner.token);
      suite.open.push(socket);
      socket.send('{"type":"hello","version":"1","capacity":1,"fingerprint":{"cpuModel":"\\ud800"}}');
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message', message: expect.stringMatching(/fingerprint\.cpuModel .*lone UTF-16 surrogate/) });
      socket.send('{"type":"hello","version":"1","capacity":1,"fingerprint":{"a\\u0000":1}}');
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message' });
      socket.send(`{"type":"hello","version":"1","capacity":1,"fingerprint":${'{"a":'.repeat(100)}1${'}'.repeat(100)}}`);
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message', message: expect.stringMatching(/nested deeper than 64/) });
      socket.send('['.repeat(100_000) + ']'.repeat(100_000));
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message' });
      socket.send({ type: 'hello', version: '1', capacity: 1, fingerprint: { cpuModel: 'Test CPU', cores: 4 } });
      await socket.next('welcome');

      const job = await f.submit(team, spec.slug);
      socket.send({ type: 'ready' });
      await socket.next('job');
      expect(await socket.request({ type: 'running', job: job.id, attempt: 1 })).toMatchObject({ type: 'ack' });
      const before = await countEvents();
      socket.send(`{"type":"failed","job":"${job.id}","attempt":1,"error":"\\ud800","exitCode":1}`);
      expect(await socket.next('error')).toEqual({ type: 'error', code: 'bad_message', message: expect.stringMatching(/^error contains a lone/), job: job.id });
      socket.send(`{"type":"completed","job":"${job.id}","attempt":1,"exitCode":0,"files":{"\\udc00":"x"}}`);
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message', job: job.id });
      socket.send(`{"type":"failed","job":"${job.id}","attempt":1,"error":"x","stdout":"\\u0000","exitCode":1}`);
      expect(await socket.next('error')).toMatchObject({ code: 'bad_message', job: job.id });
      expect(await countEvents()).toBe(before);
      expect(socket.closed).toBeNull();
      expect((await f.job(job.id)).status).toBe('running');
      expect(await socket.request({ type: 'failed', job: job.id, attempt: 1, error: 'it broke 💥', exitCode: 1 })).toMatchObject({ type: 'ack', of: 'failed' });
    });

    it('refuses an events feed or runner upgrade whose URL has NUL or a malformed percent-encoding with 400 problem+json', async () => {
      const team = await f.tenant();
      for (const query of ['project=%00', 'job=%E0%A4%A', 'after=%ZZ']) {
        const refused = await upgradeRefusal(`${t.url.replace(/^http/, 'ws')}/v1/events?${query}`, team.key);
        expect({ query, status: refused.status, type: refused.type, code: JSON.parse(refused.body).code }).toEqual({
          query,
          status: 400,
          type: expect.stringMatching(PROBLEM),
          code: 'validation_failed',
        });
      }
      const runner = await upgradeRefusal(`${t.url.replace(/^http/, 'ws')}/v1/runner/connect?x=%00`, 'nope');
      expect(runner.status).toBe(400);
    });
  });

  function expectRawProblem(res: RawResponse, status: number, code: string) {
    expect({ status: res.status, type: res.headers['content-type'] }).toEqual({ status, type: expect.stringMatching(PROBLEM) });
    expect(JSON.parse(res.body)).toMatchObject({ status, code });
  }
});

function upgradeRefusal(url: string, token: string): Promise<{ status: number; type: string; body: string }> {
  const socket = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
  return new Promise((resolve, reject) => {
    socket.once('open', () => {
      socket.close();
      reject(new Error(`${url} was accepted`));
    });
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, type: String(response.headers['content-type']), body }));
    });
    socket.once('error', reject);
  });
}
