import { createLog } from './log';

const NOW = () => new Date('2025-01-02T03:04:05.678Z');

describe('agent log', () => {
  it('writes one concise text line with key=value fields, quoting values with spaces', () => {
    const lines: string[] = [];
    const log = createLog({ json: false, verbose: false, secrets: [], write: (line) => lines.push(line), now: NOW });
    log.info('job finished', { job: 'j-1', exitCode: 0, durationMs: 1234, error: 'exit status 3', skipped: undefined });
    expect(lines).toEqual(['2025-01-02T03:04:05.678Z INFO  runner: job finished job=j-1 exitCode=0 durationMs=1234 error="exit status 3"\n']);
  });

  it('writes JSON lines with --json-logs', () => {
    const lines: string[] = [];
    const log = createLog({ json: true, verbose: false, secrets: [], write: (line) => lines.push(line), now: NOW });
    log.warn('reconnecting', { inMs: 500 });
    expect(lines.map((line) => JSON.parse(line))).toEqual([{ time: '2025-01-02T03:04:05.678Z', level: 'warn', msg: 'reconnecting', inMs: 500 }]);
  });

  it('never prints the token, wherever it would appear', () => {
    const token = `runway_runner_${'ef'.repeat(32)}`;
    for (const json of [false, true]) {
      const lines: string[] = [];
      const log = createLog({ json, verbose: true, secrets: [token], write: (line) => lines.push(line), now: NOW });
      log.error(`refused ${token}`, { header: `Bearer ${token}` });
      log.debug('x', { token });
      expect(lines.join('')).not.toContain(token);
      expect(lines.join('')).toContain('[redacted]');
    }
  });

  it('prints debug lines only when verbose', () => {
    const lines: string[] = [];
    createLog({ json: false, verbose: false, secrets: [], write: (line) => lines.push(line) }).debug('hidden');
    createLog({ json: false, verbose: true, secrets: [], write: (line) => lines.push(line) }).debug('shown');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('shown');
  });
});
