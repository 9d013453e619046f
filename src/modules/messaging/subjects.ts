/** A subject, subject token or queue group name that NATS would not take as meant. */
export class SubjectError extends Error {
  readonly code = 'invalid_subject';
  constructor(message: string) {
    super(message);
    this.name = 'SubjectError';
  }
}

// A token must be a single literal token: no separator, no wildcard, no white space.
const TOKEN = /^[^.*>\s]+$/;
const PREFIX = /^[^.*>\s]+(\.[^.*>\s]+)*$/;

/** Checks one value used as a subject token (a slug or an id). */
export function assertToken(what: string, value: string): string {
  if (typeof value !== 'string' || !TOKEN.test(value)) {
    throw new SubjectError(`${what} ${JSON.stringify(value)} cannot be a subject token (empty, or contains '.', '*', '>' or white space)`);
  }
  return value;
}

/**
 * Checks a whole subject: non-empty tokens without white space; wildcards (`*` for one token,
 * `>` for the rest, and only last) only where a subscription may use them.
 */
export function assertSubject(subject: string, options: { wildcards: boolean }): string {
  const tokens = typeof subject === 'string' ? subject.split('.') : [];
  const valid =
    tokens.length > 0 &&
    tokens.every((token, i) => {
      if (token === '*' || token === '>') return options.wildcards && (token === '*' || i === tokens.length - 1);
      return token !== '' && !/\s/.test(token);
    });
  if (!valid) {
    throw new SubjectError(
      options.wildcards ? `invalid subscription subject ${JSON.stringify(subject)}` : `invalid publish subject ${JSON.stringify(subject)}`,
    );
  }
  return subject;
}

/** Checks a queue group name: one token-like word. */
export function assertQueue(queue: string): string {
  if (typeof queue !== 'string' || !/^[^\s*>]+$/.test(queue)) throw new SubjectError(`invalid queue group ${JSON.stringify(queue)}`);
  return queue;
}

/** NATS matching of a literal subject against a subscription subject with `*` and `>`. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.');
  const have = subject.split('.');
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '>') return have.length > i;
    if (i >= have.length) return false;
    if (want[i] !== '*' && want[i] !== have[i]) return false;
  }
  return want.length === have.length;
}

/**
 * The subjects Runway uses, under the configured prefix (docs/protocol.md, "NATS"). Every slug or id
 * that becomes a token is checked, so a value with a dot or a wildcard can never address a
 * subject it was not meant for.
 */
export class Subjects {
  constructor(readonly prefix: string) {
    if (!PREFIX.test(prefix)) throw new SubjectError(`invalid subject prefix ${JSON.stringify(prefix)}`);
  }

  /** Work is available for runners of a spec (a hint; claiming decides). */
  dispatch(spec: string): string {
    return `${this.prefix}.dispatch.${assertToken('spec', spec)}`;
  }

  anyDispatch(): string {
    return `${this.prefix}.dispatch.*`;
  }

  /** Tell the gateway holding a runner's socket to cancel the runner's job. */
  runnerCancel(runner: string): string {
    return `${this.prefix}.runners.${assertToken('runner', runner)}.cancel`;
  }

  anyRunnerCancel(): string {
    return `${this.prefix}.runners.*.cancel`;
  }

  /** Tell the gateway holding a runner's socket to close it (token rotated, runner archived). */
  runnerControl(runner: string): string {
    return `${this.prefix}.runners.${assertToken('runner', runner)}.control`;
  }

  anyRunnerControl(): string {
    return `${this.prefix}.runners.*.control`;
  }

  /** A gateway instance says it is alive (so the runners connected to it are). */
  gatewayAlive(instance: string): string {
    return `${this.prefix}.gateways.${assertToken('gateway', instance)}.alive`;
  }

  anyGatewayAlive(): string {
    return `${this.prefix}.gateways.*.alive`;
  }

  /** A runner's heartbeat, forwarded by its gateway. */
  heartbeat(runner: string): string {
    return `${this.prefix}.heartbeats.${assertToken('runner', runner)}`;
  }

  allHeartbeats(): string {
    return `${this.prefix}.heartbeats.*`;
  }

  /** One committed job event, in the JetStream stream `jobsStreamName()`. */
  jobEvent(org: string, project: string, job: string, type: string): string {
    return `${this.prefix}.jobs.${assertToken('org', org)}.${assertToken('project', project)}.${assertToken('job', job)}.${assertToken('event type', type)}`;
  }

  /** Every job event: the subjects of the jobs stream. */
  allJobEvents(): string {
    return `${this.prefix}.jobs.>`;
  }

  /** The prefix upper-cased, every character but A-Z, 0-9 and _ made _, then `_JOBS`. */
  jobsStreamName(): string {
    return `${this.prefix.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}_JOBS`;
  }
}
