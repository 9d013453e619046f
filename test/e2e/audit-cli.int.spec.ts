import { PassThrough } from 'node:stream';
import { type EventEnvelope, hashEvent } from '../../src/events/envelope';
import { auditCommand } from '../../src/commands/audit';
import type { CommandContext } from '../../src/commands/context';
import { exportRange } from '../../src/commands/export';
import { EventStore } from '../../src/modules/event-store/event-store';
import { type TestApp, admin, startTestApp } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { assertBuilt, runRunway, stopAll } from '../support/process';
import { TestRunner } from '../support/runner-client';

/**
 * `runway audit` and `runway events export` as an operator runs them: the compiled CLI as a child
 * process, on a database filled through the API of a test app running on it.
 */

const SUMMARY = /^audit (verified|DIVERGENT): (\d+) streams, (\d+) events, (\d+) divergent/m;

describe('runway audit and runway events export', () => {
  let t: TestApp;
  let env: Record<string, string>;
  let jobIds: string[];

  beforeAll(async () => {
    assertBuilt();
    t = await startTestApp();
    env = { DATABASE_URL: t.database.url };
    const f = new Fixtures(t);
    const spec = await f.spec();
    const tenant = await f.tenant('team');
    const other = await f.tenant('free');
    const runner = await f.runner([spec.slug]);
    await t.http.patch(`/v1/orgs/${other.org.slug}`).set(admin).send({ plan: 'team', maxConcurrency: 3 }).expect(200);
    await t.http.delete(`/v1/orgs/${other.org.slug}/keys/${other.keyId}`).set(admin).expect(204);
    await t.http.patch(`/v1/runners/${(await f.runner([spec.slug])).id}`).set(admin).send({ name: 'Renamed', archived: true }).expect(200);

    const socket = await TestRunner.hello(t.url, runner.token);
    try {
      const done = await f.submit(tenant, spec.slug);
      socket.send({ type: 'ready' });
      await socket.next('job');
      await socket.request({ type: 'running', job: done.id, attempt: 1 }, 'ack');
      t.advance(90_000);
      await socket.request({ type: 'completed', job: done.id, attempt: 1, exitCode: 0, stdout: 'fast' }, 'ack');
      const failed = await f.submit(tenant, spec.slug);
      socket.send({ type: 'ready' });
      await socket.next('job');
      await socket.request({ type: 'failed', job: failed.id, attempt: 1, error: 'no such file', exitCode: 127 }, 'ack');
      const canceled = await f.submit(tenant, spec.slug);
      await t.http.post(`/v1/jobs/${canceled.id}/cancel`).set(admin).expect(202);
      jobIds = [done.id, failed.id, canceled.id];
    } finally {
      await socket.close();
    }
    // The gateway records the disconnect after the socket closed: wait for it, so the log is still.
    const deadline = Date.now() + 10_000;
    while ((await t.db.query(`SELECT 1 FROM events WHERE type = 'RunnerDisconnected'`)).rows.length === 0) {
      if (Date.now() > deadline) throw new Error('the runner’s disconnect was never recorded');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }, 60_000);

  afterEach(async () => {
    await stopAll();
  });

  afterAll(async () => {
    await t?.close();
  });

  async function counts(): Promise<{ streams: number; events: number }> {
    const { rows } = await t.db.query<{ streams: string; events: string }>(
      `SELECT (SELECT count(*) FROM streams) AS streams, (SELECT count(*) FROM events) AS events`,
    );
    return { streams: Number(rows[0].streams), events: Number(rows[0].events) };
  }

  /** Every event in log order, as the database holds them. */
  async function logOrder(): Promise<number[]> {
    const { rows } = await t.db.query<{ global_position: string }>(`SELECT global_position FROM events ORDER BY transaction_id, global_position`);
    return rows.map((row) => Number(row.global_position));
  }

  const parseLines = (stdout: string) =>
    stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as EventEnvelope);

  describe('on a clean log', () => {
    it('audit: every stream verified, a summary line, exit 0; --json says the same', async () => {
      const { streams, events } = await counts();
      const result = await runRunway(['audit'], env);
      if (result.code !== 0) throw new Error(`audit failed:\n${result.output}`);
      expect(result.stdout.trim().split('\n')).toEqual([`audit verified: ${streams} streams, ${events} events, 0 divergent`]);

      const json = await runRunway(['audit', '--json'], env);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toEqual({
        verified: true,
        streams,
        events,
        divergent: 0,
        pending: expect.any(Number),
        divergentStreams: [],
        pendingStreams: expect.any(Array),
      });
    }, 60_000);

    it('events export: one envelope per line in log order, each hash verifying; --from skips through that event', async () => {
      const order = await logOrder();
      const store = t.app.get(EventStore);
      // Logs at their most verbose still stay off stdout.
      const all = await runRunway(['events', 'export'], { ...env, RUNWAY_LOG_LEVEL: 'debug' });
      if (all.code !== 0) throw new Error(`export failed:\n${all.output}`);
      const lines = parseLines(all.stdout);
      expect(lines).toHaveLength(order.length);
      expect(lines.map((e) => e.globalPosition)).toEqual(order);
      for (const { hash, ...unhashed } of lines) expect(hashEvent(unhashed)).toBe(hash);
      // Exactly as EventStore returns them.
      const sample = lines.find((e) => e.streamId === jobIds[0] && e.position === 4) as EventEnvelope;
      expect(sample).toEqual((await store.readStream(jobIds[0]))[3]);
      expect(all.stdout).toBe(lines.map((e) => `${JSON.stringify(e)}\n`).join(''));

      const k = 5;
      const after = await runRunway(['events', 'export', '--from', String(order[k - 1])], env);
      expect(after.code).toBe(0);
      expect(parseLines(after.stdout)).toEqual(lines.slice(k));
      const fromZero = await runRunway(['events', 'export', '--from', '0'], env);
      expect(fromZero.stdout).toBe(all.stdout);
      const fromLast = await runRunway(['events', 'export', '--from', String(order[order.length - 1])], env);
      expect(fromLast).toMatchObject({ code: 0, stdout: '' });
    }, 60_000);

    it('events export: an unknown position or a bad number is a clear message and exit 2', async () => {
      const unknown = await runRunway(['events', 'export', '--from', '987654321'], env);
      expect(unknown).toMatchObject({ code: 2, stdout: '' });
      expect(unknown.stderr).toContain('no event has that global position');
      const bads = ['abc', '-3', '1.5', ''];
      const results = await Promise.all(bads.map((bad) => runRunway(['events', 'export', `--from=${bad}`], env)));
      results.forEach((result, i) => {
        expect({ bad: bads[i], code: result.code, stdout: result.stdout }).toEqual({ bad: bads[i], code: 2, stdout: '' });
        expect(result.stderr).toContain('--from must be a global position');
      });
    }, 60_000);

    it('events export: --to, --job, --org, --project, --type and times select what they say, in log order', async () => {
      /** Global positions of the events `where` keeps, in log order (the database's own answer). */
      const expected = async (where: string, params: unknown[] = []) =>
        (
          await t.db.query<{ global_position: string }>(
            `SELECT e.global_position FROM events e LEFT JOIN jobs j ON j.id = e.stream_id
              WHERE ${where} ORDER BY e.transaction_id, e.global_position`,
            params,
          )
        ).rows.map((row) => Number(row.global_position));
      const positionsOf = (stdout: string) => parseLines(stdout).map((e) => e.globalPosition);
      const order = await logOrder();
      const { rows: owners } = await t.db.query<{ org_id: string; project_id: string; slug: string }>(
        `SELECT j.org_id, j.project_id, o.slug FROM jobs j JOIN orgs o ON o.id = j.org_id WHERE j.id = $1`,
        [jobIds[0]],
      );
      const { org_id: orgId, project_id: projectId, slug } = owners[0];

      const range = await runRunway(['events', 'export', '--from', String(order[2]), '--to', String(order[6])], env);
      expect({ code: range.code, positions: positionsOf(range.stdout) }).toEqual({ code: 0, positions: order.slice(3, 7) });
      const job = await runRunway(['events', 'export', '--job', jobIds[1]], env);
      expect(positionsOf(job.stdout)).toEqual(await expected('e.stream_id = $1', [jobIds[1]]));
      expect(parseLines(job.stdout).map((e) => e.type)).toEqual(['JobSubmitted', 'JobClaimed', 'JobFailed']);
      const org = await runRunway(['events', 'export', '--org', slug], env);
      const ofOrg = await expected(`e.stream_id = $1 OR j.org_id = $1`, [orgId]);
      expect(positionsOf(org.stdout)).toEqual(ofOrg);
      expect(ofOrg.length).toBeLessThan(order.length);
      const project = await runRunway(['events', 'export', '--org', slug, '--project', projectId, '--type', 'JobSubmitted,ProjectCreated', '--type', 'JobCompleted'], env);
      expect(positionsOf(project.stdout)).toEqual(
        await expected(
          `(j.project_id = $1 AND e.type IN ('JobSubmitted', 'JobCompleted')) OR (e.type = 'ProjectCreated' AND e.data->>'projectId' = $1::text)`,
          [projectId],
        ),
      );
      expect(parseLines(project.stdout).map((e) => e.type)).toContain('ProjectCreated');

      // Times: the clock moved 90 s during the first job, so some events are later than others.
      const { rows: times } = await t.db.query<{ at: Date }>(`SELECT DISTINCT occurred_at AS at FROM events ORDER BY 1`);
      expect(times.length).toBeGreaterThan(1);
      const middle = times[Math.floor(times.length / 2)].at.toISOString();
      const since = await runRunway(['events', 'export', '--from', middle], env);
      expect(positionsOf(since.stdout)).toEqual(await expected('e.occurred_at >= $1', [middle]));
      const until = await runRunway(['events', 'export', '--to', middle], env);
      expect(positionsOf(until.stdout)).toEqual(await expected('e.occurred_at < $1', [middle]));
      expect(positionsOf(since.stdout).length + positionsOf(until.stdout).length).toBe(order.length);
      const future = await runRunway(['events', 'export', '--from', '2999-01-01'], env);
      expect(future).toMatchObject({ code: 0, stdout: '' });
    }, 90_000);

    it('events export: bad bounds and filters are a clear message and exit 2, writing nothing', async () => {
      const cases: [string[], string][] = [
        [['--to', 'yesterday'], '--to must be a global position'],
        [['--to', '987654321'], 'no event has that global position'],
        [['--from', '2026-13-45'], '--from must be a global position'],
        [['--org', 'no-such-org'], 'no such organization'],
        [['--project', 'some-slug'], 'no such project'],
        [['--job', 'not-a-uuid'], '--job must be a job id'],
      ];
      const results = await Promise.all(cases.map(([args]) => runRunway(['events', 'export', ...args], env)));
      results.forEach((result, i) => {
        expect({ args: cases[i][0], code: result.code, stdout: result.stdout }).toEqual({ args: cases[i][0], code: 2, stdout: '' });
        expect(result.stderr).toContain(cases[i][1]);
      });
    }, 60_000);

    it('events export: on a terminal, a progress line and a summary on stderr; elsewhere nothing there', async () => {
      const store = t.app.get(EventStore);
      const context = { store, database: { db: t.db } } as unknown as CommandContext;
      const out = new PassThrough();
      out.resume();
      const terminal = Object.assign(new PassThrough(), { isTTY: true });
      let shown = '';
      terminal.on('data', (chunk: Buffer) => (shown += chunk.toString()));
      const report = await exportRange(context, { from: { position: 0 }, to: null }, out, 2, terminal);
      const order = await logOrder();
      expect(report).toMatchObject({ written: order.length, scanned: order.length });
      await new Promise((resolve) => setImmediate(resolve));
      expect(shown).toMatch(new RegExp(`\\rrunway: exported ${order.length} event\\(s\\), ${order.length} scanned, \\d+/s in \\d+\\.\\d s\\n$`));
      const notTerminal = new PassThrough();
      let hidden = '';
      notTerminal.on('data', (chunk: Buffer) => (hidden += chunk.toString()));
      await exportRange(context, { from: { position: 0 }, to: null }, out, 2, notTerminal);
      expect(hidden).toBe('');
    });

    it('in process, in small batches and through a slow reader: the same events, the same audit', async () => {
      const store = t.app.get(EventStore);
      const context = { store, database: { db: t.db } } as unknown as CommandContext;
      const out = new PassThrough({ highWaterMark: 256 });
      let text = '';
      out.on('data', (chunk: Buffer) => {
        out.pause();
        text += chunk.toString();
        setImmediate(() => out.resume());
      });
      const { written } = await exportRange(context, { from: { position: 0 }, to: null }, out, 3);
      const order = await logOrder();
      expect(written).toBe(order.length);
      await new Promise((resolve) => setImmediate(resolve));
      expect(parseLines(text).map((e) => e.globalPosition)).toEqual(order);

      let printed = '';
      const terminal = Object.assign(new PassThrough(), { isTTY: true });
      let shown = '';
      terminal.on('data', (chunk: Buffer) => (shown += chunk.toString()));
      const summary = await auditCommand(context, { json: false, batchSize: 4 }, (line) => (printed += line), terminal);
      const { streams, events } = await counts();
      expect(summary).toMatchObject({ verified: true, divergent: 0, streams, events });
      expect(printed).toMatch(SUMMARY);
      expect(summary.seconds).toBeGreaterThan(0);
      // The progress line, on the terminal only, from the first stream on, cleared at the end and
      // followed by the time it took.
      await new Promise((resolve) => setImmediate(resolve));
      expect(shown).toMatch(new RegExp(`^\\r\\x1b\\[Kaudit: 1 of ${streams} streams, \\d+ events checked, \\d+ s`));
      expect(shown).toMatch(new RegExp(`\\r\\x1b\\[Kaudit: ${streams} streams, ${events} events checked in \\d+\\.\\d s\\n$`));
      expect(printed).not.toContain('\r');
    });
  });

  describe('on a tampered log', () => {
    it('audit exits 1 and names the streams: a changed event, a changed runner token hash', async () => {
      const [jobId] = jobIds;
      await t.db.transaction(async (tx) => {
        await tx.query('ALTER TABLE events DISABLE TRIGGER events_append_only');
        await tx.query(`UPDATE events SET data = jsonb_set(data, '{exitCode}', '1') WHERE stream_id = $1 AND stream_position = 4`, [jobId]);
        await tx.query('ALTER TABLE events ENABLE TRIGGER events_append_only');
      });
      const { rows } = await t.db.query<{ id: string }>(`SELECT id FROM runners ORDER BY id LIMIT 1`);
      const runnerId = rows[0].id;
      await t.db.query(`UPDATE runners SET token_hash = $2 WHERE id = $1`, [runnerId, 'e'.repeat(64)]);

      const { streams, events } = await counts();
      const result = await runRunway(['audit'], env);
      expect(result.code).toBe(1);
      const lines = result.stdout.trim().split('\n');
      expect(lines).toHaveLength(3);
      const jobLine = lines.find((line) => line.includes(jobId)) as string;
      expect(jobLine).toMatch(new RegExp(`^divergent job ${jobId} \\(4 events, chain broken\\): @4 hash: hash does not match the event`));
      expect(jobLine).toContain('jobs.exit_code');
      const runnerLine = lines.find((line) => line.includes(runnerId)) as string;
      expect(runnerLine).toMatch(new RegExp(`^divergent runner ${runnerId} \\(\\d+ events?, chain valid\\): runners.token_hash`));
      expect(lines[2]).toBe(`audit DIVERGENT: ${streams} streams, ${events} events, 2 divergent`);

      const json = await runRunway(['audit', '--json'], env);
      expect(json.code).toBe(1);
      const report = JSON.parse(json.stdout);
      expect(report).toMatchObject({ verified: false, streams, events, divergent: 2 });
      expect(report.divergentStreams).toEqual(
        expect.arrayContaining([
          expect.objectContaining({
            streamId: jobId,
            streamType: 'job',
            chainValid: false,
            status: 'completed',
            divergences: expect.arrayContaining([expect.objectContaining({ position: 4, field: 'hash' })]),
          }),
          expect.objectContaining({
            streamId: runnerId,
            streamType: 'runner',
            chainValid: true,
            divergences: [expect.objectContaining({ field: 'runners.token_hash', actual: 'e'.repeat(64) })],
          }),
        ]),
      );

      // The export is a copy of what is stored, tampering and all: the changed line no longer verifies.
      const exported = parseLines((await runRunway(['events', 'export'], env)).stdout);
      const bad = exported.filter(({ hash, ...unhashed }) => hashEvent(unhashed) !== hash);
      expect(bad.map((e) => [e.streamId, e.position])).toEqual([[jobId, 4]]);
    }, 60_000);

    it('audit exits 2 when it cannot run', async () => {
      const url = new URL(t.database.url);
      url.pathname = '/runway_no_such_database';
      const result = await runRunway(['audit'], { DATABASE_URL: url.toString() });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain('runway: audit could not run');
    });
  });
});
