import type { Job } from './api';
import {
  formatBytes,
  formatCommand,
  formatDuration,
  formatFields,
  formatOutcome,
  formatQueue,
  formatRelative,
  formatRunTime,
  formatTable,
  formatTime,
  formatWaitingFor,
  truncate,
} from './format';

const job = (over: Partial<Job> = {}): Job => ({
  id: '01900000-0000-7000-8000-000000000001',
  project: 'p',
  org: 'o',
  spec: 'x86-8c',
  status: 'completed',
  priority: 200,
  attempt: 1,
  runner: 'r',
  createdAt: '2026-05-03T14:00:00.000Z',
  claimedAt: '2026-05-03T14:00:04.000Z',
  startedAt: '2026-05-03T14:00:05.000Z',
  finishedAt: '2026-05-03T14:03:17.000Z',
  exitCode: 0,
  failure: null,
  billedMinutes: 4,
  ...over,
});

describe('durations', () => {
  it.each([
    [0, '0s'],
    [-5, '0s'],
    [NaN, '0s'],
    [400, '<1s'],
    [1_000, '1s'],
    [59_999, '59s'],
    [60_000, '1m00s'],
    [192_000, '3m12s'],
    [3_599_000, '59m59s'],
    [3_600_000, '1h00m'],
    [3_720_500, '1h02m'],
    [86_399_000, '23h59m'],
    [86_400_000, '1d00h'],
    [2 * 86_400_000 + 4 * 3_600_000 + 59_000, '2d04h'],
  ])('%d ms is %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});

describe('times', () => {
  it('shows ISO times in the given zone, to the second', () => {
    expect(formatTime('2026-05-03T14:02:11.789Z', 0)).toBe('2026-05-03 14:02:11');
    expect(formatTime('2026-05-03T14:02:11Z', 120)).toBe('2026-05-03 16:02:11');
    expect(formatTime('2026-05-03T00:30:00Z', -330)).toBe('2026-05-02 19:00:00');
    expect(formatTime('2026-12-31T23:59:59Z', 60)).toBe('2027-01-01 00:59:59');
  });

  it('shows nothing for no time, and what it got for something unreadable', () => {
    expect(formatTime(null)).toBe('-');
    expect(formatTime(undefined)).toBe('-');
    expect(formatTime('soon')).toBe('soon');
  });

  it('uses the machine zone by default', () => {
    const iso = '2026-05-03T14:02:11Z';
    expect(formatTime(iso)).toBe(formatTime(iso, -new Date(iso).getTimezoneOffset()));
  });

  it('says how far a time is from now', () => {
    const now = new Date('2026-05-03T14:00:00Z');
    expect(formatRelative('2026-05-03T14:02:10Z', now)).toBe('in 2m10s');
    expect(formatRelative('2026-05-03T13:59:48Z', now)).toBe('12s ago');
    expect(formatRelative('2026-05-03T14:00:00.400Z', now)).toBe('now');
  });
});

describe('sizes', () => {
  it.each([
    [512, '512 B'],
    [1024, '1 KiB'],
    [32 * 2 ** 30, '32 GiB'],
    [1.5 * 2 ** 30, '1.5 GiB'],
    [549_755_813_888, '512 GiB'],
    [500e9, '465.7 GiB'],
  ])('%d bytes is %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('tables', () => {
  it('aligns columns two spaces apart, upper-cases headers, shows - for nothing, and trims line ends', () => {
    const table = formatTable(
      ['id', 'status', 'exit'],
      [
        ['a1', 'completed', 0],
        ['b22', 'pending', null],
        ['c', '', undefined],
      ],
    );
    expect(table.split('\n')).toEqual([
      'ID   STATUS     EXIT', //
      'a1   completed  0',
      'b22  pending    -',
      'c    -          -',
    ]);
  });

  it('shows booleans as yes/no and keeps each row on one line', () => {
    expect(formatTable(['ok', 'text'], [[true, 'two\nlines']]).split('\n')).toEqual(['OK   TEXT', 'yes  two lines']);
  });

  it('prints the headers alone when there are no rows', () => {
    expect(formatTable(['slug', 'name'], [])).toBe('SLUG  NAME');
  });

  it('aligns fields', () => {
    expect(formatFields([['id', 'x'], ['exit code', null], ['billed', 4]])).toBe('id         x\nexit code  -\nbilled     4');
  });
});

describe('bits of text', () => {
  it('truncates with an ellipsis', () => {
    expect(truncate('abcdef', 10)).toBe('abcdef');
    expect(truncate('abcdef', 4)).toBe('abc…');
    expect(truncate('abcdef', 1)).toBe('…');
    expect(truncate('abcdef', 0)).toBe('');
  });

  it('quotes command arguments the way a shell would need them', () => {
    expect(formatCommand(['cargo', 'bench', '--all'])).toBe('cargo bench --all');
    expect(formatCommand(['sh', '-c', "echo 'hi' there"])).toBe(`sh -c 'echo '\\''hi'\\'' there'`);
    expect(formatCommand(['a b', ''])).toBe(`'a b' ''`);
  });

  it('says what a pending job waits for', () => {
    expect(formatWaitingFor({ reason: 'no_runner' })).toBe('no runner of this spec is connected');
    expect(formatWaitingFor({ reason: 'org_limit', scope: 'org', inFlight: 1, limit: 1, queuedAhead: 2 })).toBe(
      "its organization's in-flight limit (1/1 in flight, 2 of its own queued ahead)",
    );
    expect(formatWaitingFor({ reason: 'org_limit', scope: 'ip', inFlight: 1, limit: 1, queuedAhead: 0 })).toBe("its source IP's in-flight limit (1/1 in flight)");
    expect(formatWaitingFor({ reason: 'higher_priority', ahead: 1 })).toBe('1 job of higher tiers ahead');
    expect(formatWaitingFor({ reason: 'runner_busy', ahead: 3 })).toBe('busy runners (3 ahead)');
    expect(formatWaitingFor({ reason: 'something_new' })).toBe('something_new');
    expect(formatWaitingFor(null)).toBe('-');
  });

  it('describes a place in the queue', () => {
    const now = new Date('2026-05-03T14:00:00Z');
    expect(formatQueue({ position: 2, ahead: 1, eta: '2026-05-03T14:02:10Z', waitingFor: { reason: 'runner_busy', ahead: 1 } }, now, 0)).toBe(
      'position 2 (1 ahead), eta 2026-05-03 14:02:10 (in 2m10s), waiting for: busy runners (1 ahead)',
    );
    expect(formatQueue({ position: 1, ahead: 0, eta: null, waitingFor: { reason: 'no_runner' } }, now)).toBe(
      'position 1 (0 ahead), no eta yet, waiting for: no runner of this spec is connected',
    );
  });
});

describe('outcomes', () => {
  it('a completed job: exit code, run time, wait, billed minutes', () => {
    expect(formatOutcome(job())).toBe('completed, exit 0, ran 3m12s, waited 4s, billed 4 min');
    expect(formatOutcome(job(), ' · ')).toBe('completed · exit 0 · ran 3m12s · waited 4s · billed 4 min');
  });

  it('a failed job names its failure; a retried one its attempt', () => {
    expect(formatOutcome(job({ status: 'failed', failure: 'nonzero_exit', exitCode: 2, attempt: 2 }))).toBe(
      'failed, nonzero_exit, exit 2, ran 3m12s, waited 4s, billed 4 min, attempt 2',
    );
  });

  it('a job canceled while pending never ran', () => {
    expect(
      formatOutcome(job({ status: 'canceled', claimedAt: null, startedAt: null, finishedAt: '2026-05-03T14:00:09Z', exitCode: null, billedMinutes: null })),
    ).toBe('canceled, never ran');
  });

  it('run time: to now while running', () => {
    const now = new Date('2026-05-03T14:01:10Z');
    expect(formatRunTime(job({ status: 'running', finishedAt: null }), now)).toBe('1m05s (running)');
    expect(formatRunTime(job({ startedAt: null }), now)).toBe('-');
  });
});
