/**
 * A small typed client of Runway's REST API (docs/protocol.md, "REST"), for the `runway` commands
 * people run on their own machines. It only needs node built-ins (global `fetch`): no Nest, no server code.
 * The types are the public contract as the client reads it; `api.contract.unit.spec.ts` checks
 * at compile time that the server's responses still fit them.
 */

export type JobStatus = 'pending' | 'claimed' | 'running' | 'completed' | 'failed' | 'canceled';
export type Plan = 'enterprise' | 'team' | 'free' | 'unclaimed';
export type Architecture = 'x86_64' | 'aarch64' | 'riscv64';

/** Every error answer: application/problem+json with a stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: readonly { field: string; message: string }[];
}

/** Why a pending job is not running yet (`reason` is open: newer servers may add some). */
export interface WaitingFor {
  reason: string;
  scope?: 'org' | 'ip';
  inFlight?: number;
  limit?: number;
  queuedAhead?: number;
  ahead?: number;
}

/** A pending job's place in its spec's queue. */
export interface QueueInfo {
  position: number;
  ahead: number;
  /** ISO-8601 estimated start; null without run history or without a runner. */
  eta: string | null;
  waitingFor: WaitingFor | null;
}

export interface Job {
  id: string;
  project: string;
  org: string;
  spec: string;
  status: JobStatus;
  priority: number;
  attempt: number;
  maxAttempts?: number;
  /** Seconds. */
  timeout?: number;
  runner: string | null;
  createdAt: string;
  claimedAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  failure: string | null;
  billedMinutes: number | null;
  /** Only while pending. */
  queue?: QueueInfo;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface SubmitJobRequest {
  spec: string;
  cmd: string[];
  image?: string;
  entrypoint?: string[];
  env?: Record<string, string>;
  timeout?: number;
  filePaths?: string[];
  maxAttempts?: number;
}

export interface JobOutput {
  exitCode: number | null;
  stdout: string | null;
  stderr: string | null;
  files: Record<string, string>;
  truncated: boolean;
}

/** A stored event (docs/protocol.md, "The event envelope"). */
export interface EventEnvelope {
  id: string;
  streamId: string;
  streamType: string;
  position: number;
  globalPosition: number;
  type: string;
  schemaVersion: number;
  data: unknown;
  metadata: { correlationId: string; causationId: string | null; actor: string };
  occurredAt: string;
  hash: string;
  prevHash: string;
}

export interface Divergence {
  position?: number;
  field?: string;
  expected?: unknown;
  actual?: unknown;
  reason: string;
}

export interface JobAudit {
  verified: boolean;
  status: string | null;
  eventCount: number;
  chainValid: boolean;
  divergences: Divergence[];
  /** Billing differences while the billing projector catches up: lag, not divergence. */
  pending?: Divergence[];
}

export interface QueueItem extends QueueInfo {
  id: string;
  org: string;
  project: string;
  priority: number;
  createdAt: string;
}

export interface QueueList extends Page<QueueItem> {
  spec: string;
  /** Pending jobs of the spec, every organization's. */
  total: number;
}

export interface ProjectUsage {
  project: string;
  projectSlug?: string | null;
  minutes: number;
  jobs: number;
}

export interface Usage {
  org?: string;
  from?: string;
  to?: string;
  minutes: number;
  jobs: number;
  byProject: ProjectUsage[];
}

export interface Org {
  id: string;
  slug: string;
  name: string;
  plan: Plan;
  maxConcurrency: number | null;
  createdAt: string;
  updatedAt: string;
}

export interface OrgKey {
  id: string;
  org: string;
  name: string | null;
  createdAt: string;
  revokedAt: string | null;
}

/** A new organization key: `key` is shown this once. */
export interface NewOrgKey {
  id: string;
  key: string;
}

export interface Spec {
  id: string;
  slug: string;
  name: string;
  architecture: Architecture;
  cpu: number;
  /** Bytes. */
  memory: number;
  /** Bytes. */
  disk: number;
  network: boolean;
  createdAt: string;
}

export type CreateSpecRequest = Omit<Spec, 'id' | 'createdAt'>;

export interface Runner {
  id: string;
  slug: string;
  name: string;
  /** Spec slugs. */
  specs: string[];
  archived: boolean;
  state: 'offline' | 'idle' | 'busy';
  lastSeenAt: string | null;
  currentJob: string | null;
  fingerprint: Record<string, unknown> | null;
  createdAt: string;
  updatedAt: string;
}

/** A new runner: `token` is shown this once. */
export interface NewRunner extends Runner {
  token: string;
}

export interface Project {
  id: string;
  org: string;
  slug: string;
  name: string;
  createdAt: string;
}

/** A successful answer: the parsed body and the text it was parsed from (for `--json`). */
export interface ApiResult<T> {
  status: number;
  data: T;
  text: string;
}

/** The server refused the request: its problem+json (or a problem made up from a bare HTTP answer). */
export class RunwayApiError extends Error {
  override readonly name = 'RunwayApiError';

  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly problem: Problem | null,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${detail}`, options);
  }

  /** The error for a non-2xx answer: its problem when it is one, else what can be said of it. */
  static fromAnswer(status: number, contentType: string | null, text: string, statusText = ''): RunwayApiError {
    const parsed = parseJson(text);
    if (isProblem(parsed)) return new RunwayApiError(status, parsed.code, parsed.detail, parsed);
    const kind = contentType?.split(';')[0].trim() || 'no content type';
    const what = statusText || `HTTP ${status}`;
    return new RunwayApiError(status, `http_${status}`, `${what} (not a Runway answer: ${kind})`, null);
  }
}

/** The server could not be reached, or stopped answering. */
export class RunwayConnectionError extends Error {
  override readonly name = 'RunwayConnectionError';

  constructor(
    /** The server's base URL. */
    readonly url: string,
    /** What went wrong, for people: "connection refused", "no answer within 30 s". */
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach Runway at ${url}: ${reason}`, options);
  }

  static from(url: string, error: unknown): RunwayConnectionError {
    return new RunwayConnectionError(url, describeNetworkError(error), { cause: error });
  }
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed by the server',
  CERT_HAS_EXPIRED: 'the TLS certificate has expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the TLS certificate could not be verified',
};

/** A short reason for a failed connection: fetch wraps the socket's error in `cause`. */
export function describeNetworkError(error: unknown): string {
  for (let e: unknown = error, depth = 0; e !== undefined && e !== null && depth < 5; depth += 1) {
    const { code, name, message } = e as { code?: unknown; name?: unknown; message?: unknown };
    if (name === 'TimeoutError') return 'no answer in time';
    if (typeof code === 'string' && code in NETWORK_REASONS) return `${NETWORK_REASONS[code]} (${code})`;
    if (typeof code === 'string') return typeof message === 'string' && message !== '' ? `${message}` : code;
    const errors = (e as { errors?: unknown }).errors;
    if (Array.isArray(errors) && errors.length > 0) {
      e = errors[0];
      continue;
    }
    const cause = (e as { cause?: unknown }).cause;
    if (cause === undefined) return typeof message === 'string' && message !== '' ? message : String(e);
    e = cause;
  }
  return String(error);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isProblem(value: unknown): value is Problem {
  const v = value as Partial<Problem> | null | undefined;
  return typeof v === 'object' && v !== null && typeof v.code === 'string' && typeof v.detail === 'string';
}

export interface ClientOptions {
  /** `http(s)://host[:port][/prefix]`. */
  baseUrl: string;
  token?: string;
  /** Per request; default 60 s. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | undefined>;

const enc = encodeURIComponent;

/** Runway's REST API, one method per endpoint. Every method resolves with the answer or throws one of the two errors above. */
export class RunwayClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** The absolute URL of an API path (`v1/...`), keeping any prefix the base URL has. */
  url(path: string, query: Query = {}): URL {
    const url = new URL(path.replace(/^\/+/, ''), `${this.baseUrl}/`);
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value));
    return url;
  }

  /** `ws(s)://.../v1/events?...`: the live events feed. */
  eventsUrl(query: Query): URL {
    const url = this.url('v1/events', query);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return url;
  }

  authorization(): Record<string, string> {
    return this.token === undefined ? {} : { authorization: `Bearer ${this.token}` };
  }

  async request<T>(method: string, path: string, options: { query?: Query; body?: unknown; headers?: Record<string, string> } = {}): Promise<ApiResult<T>> {
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json', ...this.authorization(), ...options.headers };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    let text: string;
    try {
      response = await this.fetchImpl(this.url(path, options.query), {
        method,
        headers,
        body: options.body === undefined ? undefined : JSON.stringify(options.body),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'follow',
      });
      text = await response.text();
    } catch (error) {
      if ((error as { name?: unknown }).name === 'TimeoutError') {
        const limit = this.timeoutMs >= 1_000 ? `${Math.round(this.timeoutMs / 1_000)} s` : `${this.timeoutMs} ms`;
        throw new RunwayConnectionError(this.baseUrl, `no answer within ${limit}`, { cause: error });
      }
      throw RunwayConnectionError.from(this.baseUrl, error);
    }
    if (!response.ok) throw RunwayApiError.fromAnswer(response.status, response.headers.get('content-type'), text, response.statusText);
    if (text === '') return { status: response.status, data: undefined as T, text };
    const data = parseJson(text);
    if (data === undefined) {
      throw new RunwayApiError(response.status, 'bad_response', `the answer to ${method} /${path.replace(/^\/+/, '')} is not JSON`, null);
    }
    return { status: response.status, data: data as T, text };
  }

  // Organizations, keys (operator)
  createOrg(body: { slug: string; name: string; plan: Plan; maxConcurrency?: number | null }) {
    return this.request<Org>('POST', 'v1/orgs', { body });
  }
  listOrgs() {
    return this.request<{ items: Org[] }>('GET', 'v1/orgs');
  }
  getOrg(org: string) {
    return this.request<Org>('GET', `v1/orgs/${enc(org)}`);
  }
  updateOrg(org: string, body: { plan?: Plan; maxConcurrency?: number | null }) {
    return this.request<Org>('PATCH', `v1/orgs/${enc(org)}`, { body });
  }
  createKey(org: string, body: { name?: string }) {
    return this.request<NewOrgKey>('POST', `v1/orgs/${enc(org)}/keys`, { body });
  }
  listKeys(org: string) {
    return this.request<{ items: OrgKey[] }>('GET', `v1/orgs/${enc(org)}/keys`);
  }
  revokeKey(org: string, id: string) {
    return this.request<void>('DELETE', `v1/orgs/${enc(org)}/keys/${enc(id)}`);
  }

  // Specs
  createSpec(body: CreateSpecRequest) {
    return this.request<Spec>('POST', 'v1/specs', { body });
  }
  listSpecs() {
    return this.request<{ items: Spec[] }>('GET', 'v1/specs');
  }

  // Runners (operator)
  createRunner(body: { slug: string; name: string; specs: string[] }) {
    return this.request<NewRunner>('POST', 'v1/runners', { body });
  }
  listRunners() {
    return this.request<{ items: Runner[] }>('GET', 'v1/runners');
  }
  getRunner(runner: string) {
    return this.request<Runner>('GET', `v1/runners/${enc(runner)}`);
  }
  updateRunner(runner: string, body: { name?: string; specs?: string[]; archived?: boolean }) {
    return this.request<Runner>('PATCH', `v1/runners/${enc(runner)}`, { body });
  }
  rotateRunnerToken(runner: string) {
    return this.request<{ token: string }>('POST', `v1/runners/${enc(runner)}/token`);
  }

  // Projects (organization key)
  createProject(body: { slug: string; name: string }) {
    return this.request<Project>('POST', 'v1/projects', { body });
  }
  listProjects() {
    return this.request<{ items: Project[] }>('GET', 'v1/projects');
  }
  getProject(project: string) {
    return this.request<Project>('GET', `v1/projects/${enc(project)}`);
  }

  // Jobs
  submitJob(project: string, body: SubmitJobRequest, idempotencyKey?: string) {
    const headers: Record<string, string> = idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey };
    return this.request<Job>('POST', `v1/projects/${enc(project)}/jobs`, { body, headers });
  }
  /** `POST /v1/projects/{project}/job-batches`: 1 to 1,000 jobs, all or nothing, answered in the order given. */
  submitJobBatch(project: string, jobs: readonly SubmitJobRequest[], idempotencyKey?: string) {
    const headers: Record<string, string> = idempotencyKey === undefined ? {} : { 'idempotency-key': idempotencyKey };
    return this.request<{ items: Job[] }>('POST', `v1/projects/${enc(project)}/job-batches`, { body: { jobs }, headers });
  }
  listJobs(project: string, query: { status?: string; limit?: number; cursor?: string } = {}) {
    return this.request<Page<Job>>('GET', `v1/projects/${enc(project)}/jobs`, { query });
  }
  getJob(job: string) {
    return this.request<Job>('GET', `v1/jobs/${enc(job)}`);
  }
  cancelJob(job: string) {
    return this.request<Job>('POST', `v1/jobs/${enc(job)}/cancel`);
  }
  jobOutput(job: string) {
    return this.request<JobOutput>('GET', `v1/jobs/${enc(job)}/output`);
  }
  jobEvents(job: string) {
    return this.request<{ items: EventEnvelope[] }>('GET', `v1/jobs/${enc(job)}/events`);
  }
  jobAudit(job: string) {
    return this.request<JobAudit>('GET', `v1/jobs/${enc(job)}/audit`);
  }

  // Queue and billing
  queue(query: { spec: string; limit?: number; cursor?: string }) {
    return this.request<QueueList>('GET', 'v1/queue', { query });
  }
  usage(org: string, query: { from?: string; to?: string } = {}) {
    return this.request<Usage>('GET', `v1/orgs/${enc(org)}/usage`, { query });
  }
}
