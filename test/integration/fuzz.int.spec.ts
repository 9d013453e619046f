import fc from 'fast-check';
import type { Test } from 'supertest';
import { type TestApp, ADMIN_TOKEN, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';
import type { Frame } from '../support/runner-client';

/**
 * Fuzzing at the edge, against the real server and PostgreSQL: arbitrary JSON and strings (lone
 * surrogates, NUL, any code point, deep nesting, malformed percent-encodings) at every REST
 * endpoint that takes a body, parameters or a query, with every kind of credential, and frames of
 * every message type with fuzzed fields at the runner WebSocket. Never a 5xx; every error is
 * problem+json whose `status` is the HTTP status; a socket error is never `internal_error`; and
 * a refused request or frame writes no event.
 *
 * A fixed seed keeps CI deterministic; FC_SEED=<n> explores other inputs.
 */
const SEED = Number(process.env.FC_SEED ?? 20261207);
const PROBLEM = /^application\/problem\+json/;

/** One UTF-16 code unit or code point of any kind, weighted towards what breaks things. */
const nastyUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 0x10ffff }).map((point) => String.fromCodePoint(point)) },
  { weight: 2, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((unit) => String.fromCharCode(unit)) },
  { weight: 1, arbitrary: fc.constant('\u0000') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
);

const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: nastyUnit, maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom('\ud800', 'x\udc00', 'a\u0000b', '', ' ', '../../etc/passwd', '/etc/passwd', 'a//b', '💥', 'x'.repeat(300), '__proto__', 'constructor'),
  },
);

const nastyJson: fc.Arbitrary<unknown> = fc.jsonValue({ stringUnit: nastyUnit, maxDepth: 3 });

/** Values for one field: anything JSON, nasty strings, arrays and maps of them. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  nastyJson,
  nastyString,
  fc.array(nastyString, { maxLength: 4 }),
  fc.dictionary(nastyString, nastyString, { maxKeys: 3 }),
  fc.integer(),
  fc.constantFrom(null, true, 0, -1, 1.5, 1e308, 2 ** 31, [], {}),
);

/** Nesting from shallow to far deeper than anything accepts. */
const deep = fc.tuple(fc.integer({ min: 1, max: 3_000 }), fc.constantFrom('[', '{"a":')).map(([depth, open]) =>
  open === '[' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${open.repeat(depth)}1${'}'.repeat(depth)}`,
);

/** JSON text; `JSON.stringify` keeps a lone surrogate as a `\udXXX` escape, as a client could send it. */
const json = (value: unknown) => JSON.stringify(value) ?? 'null';

/** Percent-encodes any string, lone surrogates too (as the three bytes of their WTF-8 form). */
function percentEncode(text: string): string {
  let out = '';
  for (const char of text) {
    const unit = char.charCodeAt(0);
    if (char.length === 1 && unit >= 0xd800 && unit <= 0xdfff) {
      out += [0xe0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('');
    } else {
      out += encodeURIComponent(char);
    }
  }
  return out;
}

const malformedEncoding = fc.constantFrom('%', '%E0%A4%A', '%00', '%ED%A0%80', '%C0%80', '%FF', '%zz', 'a%2', '%2F..%2F..');

/** A header value Node's client can send: visible Latin-1 and spaces. */
const headerValue = fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((text) => text.replace(/[^\t\x20-\x7e\x80-\xff]/g, ''));

describe('fuzzing at the edge: never a 5xx, every error problem+json, nothing written when refused', () => {
  const suite = appSuite({
    RUNWAY_MAX_MESSAGE_BYTES: String(256 * 1024),
    RUNWAY_API_REQUESTS_PER_MINUTE: '10000000',
    RUNWAY_AUTH_FAILURES_PER_MINUTE: '10000000',
    RUNWAY_RUNNER_CONNECTS_PER_MINUTE: '10000000',
    RUNWAY_SOCKET_MESSAGES_PER_SECOND: '1000000',
  });
  let t: TestApp;
  let f: Fixtures;
  beforeAll(() => ({ t, f } = suite));

  const countEvents = async () => Number((await t.db.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0].n);

  it('REST: arbitrary bodies, parameters, queries and headers at every endpoint, as an org key, the operator and a runner', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const job = await f.submit(team, spec.slug);
    const credentials = { admin: bearer(ADMIN_TOKEN), org: bearer(team.key), runner: bearer(runner.token), none: {} as Record<string, string> };

    /** A path parameter: a real one, or anything, percent-encoded or malformed. */
    const param = (...real: string[]) =>
      fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...real) }, { weight: 4, arbitrary: nastyString.map(percentEncode) }, { weight: 2, arbitrary: malformedEncoding });
    const query = (...names: string[]) =>
      fc
        .array(
          fc.tuple(
            fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: nastyString.map(percentEncode) }, { weight: 1, arbitrary: malformedEncoding }),
            fc.oneof({ weight: 2, arbitrary: nastyString.map(percentEncode) }, { weight: 1, arbitrary: malformedEncoding }, { weight: 1, arbitrary: fc.constantFrom('1', '50', 'pending', spec.slug) }),
          ),
          { maxLength: 3 },
        )
        .map((pairs) => (pairs.length === 0 ? '' : `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`));

    const validBodies: Record<string, Record<string, unknown>> = {
      org: { slug: 'fuzz-org', name: 'Fuzz', plan: 'free' },
      orgPatch: { name: 'Fuzz', plan: 'team', maxConcurrency: 2 },
      key: { name: 'ci' },
      project: { slug: 'fuzz-project', name: 'Fuzz' },
      job: { spec: spec.slug, cmd: ['./bench'], env: { A: '1' }, filePaths: ['out/x'], timeout: 60, maxAttempts: 1 },
      spec: { slug: 'fuzz-spec', name: 'Fuzz', architecture: 'x86_64', cpu: 2, memory: 2 ** 30, disk: 2 ** 30, network: false },
      runner: { slug: 'fuzz-runner', name: 'Fuzz', specs: [spec.slug] },
      runnerPatch: { name: 'Fuzz', specs: [spec.slug] },
      claim: { pollTimeout: 0 },
    };
    /** A body: a valid one with one field fuzzed (or one added), anything JSON, deep nesting, or not JSON at all. */
    const body = (kind: keyof typeof validBodies) =>
      fc.oneof(
        {
          weight: 5,
          arbitrary: fc
            .tuple(fc.oneof(fc.constantFrom(...Object.keys(validBodies[kind])), nastyString), fieldValue)
            .map(([field, value]) => json({ ...validBodies[kind], [field]: value })),
        },
        { weight: 2, arbitrary: nastyJson.map(json) },
        { weight: 1, arbitrary: deep.map((nested) => `{${Object.keys(validBodies[kind]).map((k) => `${json(k)}:${nested}`)[0]}}`) },
        { weight: 1, arbitrary: deep },
        { weight: 1, arbitrary: fc.string({ unit: nastyUnit, maxLength: 30 }) },
      );

    type Call = { method: 'get' | 'post' | 'patch' | 'delete'; path: string; body?: string; headers?: Record<string, string> };
    const org = param(team.org.id, team.org.slug);
    const project = param(team.project.id, team.project.slug);
    const jobId = param(job.id, '00000000-0000-7000-8000-000000000000');
    const runnerRef = param(runner.id, runner.slug);
    const calls: fc.Arbitrary<Call> = fc.oneof(
      body('org').map((b): Call => ({ method: 'post', path: '/v1/orgs', body: b })),
      fc.tuple(org, body('orgPatch')).map(([o, b]): Call => ({ method: 'patch', path: `/v1/orgs/${o}`, body: b })),
      fc.tuple(org, body('key')).map(([o, b]): Call => ({ method: 'post', path: `/v1/orgs/${o}/keys`, body: b })),
      fc.tuple(org, param('00000000-0000-7000-8000-000000000000')).map(([o, k]): Call => ({ method: 'delete', path: `/v1/orgs/${o}/keys/${k}` })),
      fc.tuple(org, query('from', 'to')).map(([o, q]): Call => ({ method: 'get', path: `/v1/orgs/${o}/usage${q}` })),
      fc.tuple(org).map(([o]): Call => ({ method: 'get', path: `/v1/orgs/${o}` })),
      body('project').map((b): Call => ({ method: 'post', path: '/v1/projects', body: b })),
      project.map((p): Call => ({ method: 'get', path: `/v1/projects/${p}` })),
      fc
        .tuple(project, body('job'), fc.option(headerValue, { nil: undefined }))
        .map(([p, b, key]): Call => ({ method: 'post', path: `/v1/projects/${p}/jobs`, body: b, headers: key === undefined ? {} : { 'Idempotency-Key': key } })),
      fc.tuple(project, query('status', 'limit', 'cursor')).map(([p, q]): Call => ({ method: 'get', path: `/v1/projects/${p}/jobs${q}` })),
      fc
        .tuple(jobId, fc.constantFrom('', '/output', '/events', '/audit'))
        .map(([j, tail]): Call => ({ method: 'get', path: `/v1/jobs/${j}${tail}` })),
      jobId.map((j): Call => ({ method: 'post', path: `/v1/jobs/${j}/cancel` })),
      query('spec', 'limit', 'cursor').map((q): Call => ({ method: 'get', path: `/v1/queue${q}` })),
      body('spec').map((b): Call => ({ method: 'post', path: '/v1/specs', body: b })),
      body('runner').map((b): Call => ({ method: 'post', path: '/v1/runners', body: b })),
      fc.tuple(runnerRef, body('runnerPatch')).map(([r, b]): Call => ({ method: 'patch', path: `/v1/runners/${r}`, body: b })),
      runnerRef.map((r): Call => ({ method: 'get', path: `/v1/runners/${r}` })),
      // Never a valid pollTimeout above 0, nor none or null (30 s today, see the report): a claim would wait for work.
      fieldValue
        .filter((value) => value !== null && !(typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 120))
        .map((pollTimeout): Call => ({ method: 'post', path: '/v1/runner/claim', body: json({ pollTimeout }) })),
    );

    const seen = { calls: 0, refused: 0, statuses: new Map<number, number>() };
    await fc.assert(
      fc.asyncProperty(calls, fc.constantFrom('admin', 'org', 'org', 'runner', 'none') as fc.Arbitrary<keyof typeof credentials>, async (call, who) => {
        const before = await countEvents();
        let request: Test = t.http[call.method](call.path).set(credentials[who]).set(call.headers ?? {}).timeout(5_000);
        if (call.body !== undefined) request = request.set('Content-Type', 'application/json').send(call.body);
        const res = await request;
        seen.calls++;
        seen.statuses.set(res.status, (seen.statuses.get(res.status) ?? 0) + 1);
        const what = { who, method: call.method, path: call.path, body: call.body?.slice(0, 300), status: res.status };
        expect({ ...what, serverError: res.status >= 500 }).toEqual({ ...what, serverError: false });
        if (res.status >= 400) {
          seen.refused++;
          expect({ ...what, type: res.headers['content-type'], code: typeof res.body.code, bodyStatus: res.body.status }).toEqual({
            ...what,
            type: expect.stringMatching(PROBLEM),
            code: 'string',
            bodyStatus: res.status,
          });
          expect({ ...what, events: await countEvents() }).toEqual({ ...what, events: before });
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 1500), seed: SEED, endOnFailure: true },
    );
    // The inputs reached past the edge too: some were accepted, most refused, for several reasons.
    expect(seen.refused).toBeGreaterThan(seen.calls / 2);
    expect(seen.refused).toBeLessThan(seen.calls);
    expect([...seen.statuses.keys()].filter((status) => status >= 400).length).toBeGreaterThanOrEqual(4);
  }, 120_000);

  it('runner socket: frames of every type with fuzzed fields are answered, never with internal_error, and refused ones write nothing', async () => {
    const spec = await f.spec();
    const team = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const socket = await suite.connect(runner.token);
    const job = await f.submit(team, spec.slug);
    socket.send({ type: 'ready' });
    expect((await socket.next('job')).job).toMatchObject({ id: job.id, attempt: 1 });
    expect(await socket.request({ type: 'running', job: job.id, attempt: 1 })).toMatchObject({ type: 'ack' });

    const jobRef = fc.oneof(
      { weight: 3, arbitrary: fc.constant(job.id) },
      { weight: 1, arbitrary: fc.uuid() },
      { weight: 2, arbitrary: fieldValue },
    );
    const attempt = fc.oneof({ weight: 3, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fieldValue });
    const text = fc.oneof({ weight: 2, arbitrary: nastyString }, { weight: 1, arbitrary: fieldValue });
    const optional = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: undefined, freq: 3 });
    const output = {
      stdout: optional(text),
      stderr: optional(text),
      files: optional(fc.oneof(fc.dictionary(nastyString, text, { maxKeys: 3 }), fieldValue)),
      truncated: optional(fc.oneof(fc.boolean(), fieldValue)),
    };
    const extra = fc.option(fc.tuple(nastyString, fieldValue), { nil: undefined, freq: 4 });
    const frames: fc.Arbitrary<string> = fc.oneof(
      fc
        .record({
          type: fc.constant('hello'),
          version: text,
          capacity: optional(fc.oneof(fc.constant(1), fieldValue)),
          fingerprint: optional(fc.oneof(fc.dictionary(nastyString, fieldValue, { maxKeys: 4 }), fieldValue, deep.map((d) => ({ a: JSON.parse(d) as unknown })))),
        })
        .chain((frame) => extra.map((pair) => json(pair ? { ...frame, [pair[0]]: pair[1] } : frame))),
      // A `ready` that is valid would wait for a job: always one more field.
      fc.tuple(nastyString, fieldValue).map(([field, value]) => json({ type: 'ready', [field === 'type' ? 'x' : field]: value })),
      fc
        .record({ type: fc.constantFrom('running', 'heartbeat', 'canceled'), job: jobRef, attempt })
        .chain((frame) => extra.map((pair) => json(pair ? { ...frame, [pair[0]]: pair[1] } : frame))),
      fc
        .record({ type: fc.constant('completed'), job: jobRef, attempt, exitCode: fc.oneof(fc.constant(0), fieldValue), ...output })
        .chain((frame) => extra.map((pair) => json(pair ? { ...frame, [pair[0]]: pair[1] } : frame))),
      fc
        .record({ type: fc.constant('failed'), job: jobRef, attempt, error: text, exitCode: optional(fc.oneof(fc.constant(1), fc.constant(null), fieldValue)), ...output })
        .chain((frame) => extra.map((pair) => json(pair ? { ...frame, [pair[0]]: pair[1] } : frame))),
      fc.record({ type: nastyString, job: optional(jobRef) }).map(json),
      nastyJson.map(json),
      deep,
      fc.string({ unit: nastyUnit, maxLength: 40 }),
    );

    /**
     * Each fuzzed frame is followed by a heartbeat for a job no one has: it is queued behind the
     * fuzzed frame (if that one was valid) and always refused, so everything the server sent
     * before its answer is the fuzzed frame's.
     */
    const sentinel = '01940000-0000-7000-8000-00000000f00d';
    let taken = 0;
    const answersUntilSentinel = async (): Promise<Frame[]> => {
      const answers: Frame[] = [];
      for (;;) {
        const frame = await socket.next(undefined, 5_000);
        taken++;
        if (frame.job === sentinel) return answers;
        answers.push(frame);
      }
    };
    const seen = { frames: 0, refused: 0, codes: new Map<string, number>() };
    await fc.assert(
      fc.asyncProperty(frames, async (frame) => {
        const before = await countEvents();
        socket.send(frame);
        socket.send({ type: 'heartbeat', job: sentinel, attempt: 1 });
        const answers = await answersUntilSentinel();
        seen.frames++;
        const errors = answers.filter((answer) => answer.type === 'error');
        for (const error of errors) seen.codes.set(String(error.code), (seen.codes.get(String(error.code)) ?? 0) + 1);
        const what = { frame: frame.slice(0, 300), answers };
        expect({ ...what, internal: errors.some((error) => error.code === 'internal_error' || typeof error.code !== 'string') }).toEqual({ ...what, internal: false });
        expect({ ...what, closed: socket.closed }).toEqual({ ...what, closed: null });
        if (errors.length > 0 && answers.every((answer) => answer.type === 'error')) {
          seen.refused++;
          expect({ ...what, events: await countEvents() }).toEqual({ ...what, events: before });
        }
      }),
      { numRuns: Number(process.env.FC_RUNS ?? 1500), seed: SEED, endOnFailure: true },
    );
    expect(taken).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(seen.frames / 2);
    expect(seen.codes.get('bad_message') ?? 0).toBeGreaterThan(0);
  }, 120_000);
});
