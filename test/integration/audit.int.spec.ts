import { randomUUID } from 'node:crypto';
import { type EventEnvelope, hashEvent } from '../../src/events/envelope';
import { AuditRepository, STREAMS_START } from '../../src/modules/audit/audit.repository';
import { AuditService } from '../../src/modules/audit/audit.service';
import { EventStore } from '../../src/modules/event-store/event-store';
import { Liveness } from '../../src/modules/liveness/liveness';
import { type TestApp, admin, bearer } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';

const PROBLEM = /application\/problem\+json/;

interface AuditBody {
  verified: boolean;
  status: string | null;
  eventCount: number;
  chainValid: boolean;
  divergences: { position?: number; field?: string; expected?: unknown; actual?: unknown; reason: string }[];
  pending: { field?: string; reason: string }[];
}

describe('job audit (GET /v1/jobs/{job}/audit)', () => {
  const suite = appSuite({
    RUNWAY_HEARTBEAT_INTERVAL_MS: '1000',
    RUNWAY_HEARTBEAT_TIMEOUT_MS: '10000',
    RUNWAY_CLAIM_TIMEOUT_MS: '20000',
    RUNWAY_JOB_TIMEOUT_GRACE_MS: '30000',
  });
  const { connect } = suite;
  let t: TestApp;
  let f: Fixtures;
  let liveness: Liveness;
  beforeAll(() => {
    ({ t, f } = suite);
    liveness = t.app.get(Liveness);
  });

  /** A runner for a fresh spec, a tenant, and the runner connected. */
  async function setup() {
    const spec = await f.spec();
    const tenant = await f.tenant();
    const runner = await f.runner([spec.slug]);
    const socket = await connect(runner.token);
    return { spec, tenant, runner, socket };
  }

  /** Submitted, pushed to the runner, and running. */
  async function running(extra: Record<string, unknown> = {}) {
    const s = await setup();
    const job = await f.submit(s.tenant, s.spec.slug, extra);
    s.socket.send({ type: 'ready' });
    await s.socket.next('job');
    await s.socket.request({ type: 'running', job: job.id, attempt: 1 }, 'ack');
    return { ...s, job };
  }

  async function audit(jobId: string, token = admin): Promise<AuditBody> {
    return (await t.http.get(`/v1/jobs/${jobId}/audit`).set(token).expect(200)).body;
  }

  /** The audit once the billing projector has caught up with the job (no `pending` left). */
  async function settled(jobId: string): Promise<AuditBody> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const body = await audit(jobId);
      if (body.pending.length === 0 || Date.now() > deadline) return body;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const clean = (status: string, eventCount: number) => ({ verified: true, status, eventCount, chainValid: true, divergences: [], pending: [] });

  /** Runs `sql` with the append-only trigger off, in one transaction (no one else sees it off). */
  async function tamper(sql: string, params: unknown[]): Promise<void> {
    await t.db.transaction(async (tx) => {
      await tx.query('ALTER TABLE events DISABLE TRIGGER events_append_only');
      await tx.query(sql, params);
      await tx.query('ALTER TABLE events ENABLE TRIGGER events_append_only');
    });
  }

  describe('lifecycles come back verified', () => {
    it('completed, with its billing row', async () => {
      const { socket, job } = await running();
      t.advance(61_000);
      await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0, stdout: 'ok' }, 'ack');
      // Verified at once: billing still to be projected is lag, listed apart, never a divergence.
      expect(await audit(job.id)).toMatchObject({ verified: true, status: 'completed', eventCount: 4, chainValid: true, divergences: [] });
      expect(await settled(job.id)).toEqual(clean('completed', 4));
      const { rows } = await t.db.query<{ minutes: number }>(`SELECT minutes FROM job_billing WHERE job_id = $1`, [job.id]);
      expect(rows).toEqual([{ minutes: 2 }]);
    });

    it('failed with a non-zero exit, and by heartbeat timeout', async () => {
      const first = await running();
      await first.socket.request({ type: 'failed', job: first.job.id, attempt: 1, error: 'exit status 3', exitCode: 3 }, 'ack');
      expect(await settled(first.job.id)).toEqual(clean('failed', 4));

      const second = await running();
      await second.socket.close();
      t.advance(10_001);
      await liveness.sweep();
      expect((await f.job(second.job.id)).failure).toBe('heartbeat_timeout');
      expect(await settled(second.job.id)).toEqual(clean('failed', 4));
    });

    it('canceled while running and acknowledged by the runner; canceled while pending', async () => {
      const { socket, job, tenant, spec } = await running();
      t.advance(30_000);
      await t.http.post(`/v1/jobs/${job.id}/cancel`).set(bearer(tenant.key)).expect(202);
      await socket.next('cancel');
      await socket.request({ type: 'canceled', job: job.id, attempt: 1 }, 'ack');
      expect(await f.eventTypes(job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobStarted', 'JobCanceled', 'JobCancelAcknowledged']);
      expect(await settled(job.id)).toEqual(clean('canceled', 5));

      const never = await f.submit(tenant, spec.slug);
      await t.http.post(`/v1/jobs/${never.id}/cancel`).set(admin).expect(202);
      expect(await settled(never.id)).toEqual(clean('canceled', 2));
    });

    it('requeued by a claim timeout, then claimed again and run to the end', async () => {
      const { spec, tenant, socket } = await setup();
      const job = await f.submit(tenant, spec.slug, { maxAttempts: 2 });
      socket.send({ type: 'ready' });
      await socket.next('job');
      t.advance(20_001);
      await liveness.sweep();
      expect(await f.job(job.id)).toMatchObject({ status: 'pending', attempt: 2 });
      expect(await audit(job.id)).toEqual(clean('pending', 3));
      socket.send({ type: 'ready' });
      expect((await socket.next('job')).job).toMatchObject({ id: job.id, attempt: 2 });
      await socket.request({ type: 'running', job: job.id, attempt: 2 }, 'ack');
      await socket.request({ type: 'completed', job: job.id, attempt: 2, exitCode: 0 }, 'ack');
      expect(await f.eventTypes(job.id)).toEqual(['JobSubmitted', 'JobClaimed', 'JobRequeued', 'JobClaimed', 'JobStarted', 'JobCompleted']);
      expect(await settled(job.id)).toEqual(clean('completed', 6));
    });

    it('canceled by the job timeout, then acknowledged', async () => {
      const { socket, job } = await running({ timeout: 60 });
      for (let elapsed = 0; elapsed <= 90_000; elapsed += 5_000) {
        t.advance(5_000);
        await socket.request({ type: 'heartbeat', job: job.id, attempt: 1 }, 'ack');
        await liveness.sweep();
      }
      expect(await f.job(job.id)).toMatchObject({ status: 'canceled', failure: 'job_timeout' });
      await socket.next('cancel');
      await socket.request({ type: 'canceled', job: job.id, attempt: 1 }, 'ack');
      expect(await settled(job.id)).toEqual(clean('canceled', 5));
    });
  });

  describe('tampering', () => {
    it('an event changed in the database breaks the chain at its position', async () => {
      const { socket, job } = await running();
      await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');
      await settled(job.id);
      await tamper(`UPDATE events SET data = jsonb_set(data, '{exitCode}', '7') WHERE stream_id = $1 AND stream_position = 4`, [job.id]);

      const body = await audit(job.id);
      expect(body).toMatchObject({ verified: false, chainValid: false, eventCount: 4 });
      expect(body.divergences).toContainEqual({
        position: 4,
        field: 'hash',
        expected: expect.stringMatching(/^[0-9a-f]{64}$/),
        actual: expect.stringMatching(/^[0-9a-f]{64}$/),
        reason: 'hash does not match the event',
      });
      // The fold of the changed log no longer matches the view written from the real one.
      expect(body.divergences).toContainEqual(expect.objectContaining({ field: 'jobs.exit_code', expected: 7, actual: 0 }));
    });

    it('an event deleted from the end is seen through the stream head', async () => {
      const { socket, job } = await running();
      await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');
      await settled(job.id);
      await tamper(`DELETE FROM events WHERE stream_id = $1 AND stream_position = 4`, [job.id]);
      const body = await audit(job.id);
      expect(body).toMatchObject({ verified: false, chainValid: false, eventCount: 3, status: 'running' });
      expect(body.divergences).toContainEqual(expect.objectContaining({ field: 'streams.version', expected: 3, actual: 4 }));
    });

    it('a changed jobs view row names the field', async () => {
      const { socket, job } = await running();
      await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');
      await settled(job.id);
      await t.db.query(`UPDATE jobs SET status = 'failed' WHERE id = $1`, [job.id]);
      const body = await audit(job.id);
      expect(body).toMatchObject({ verified: false, chainValid: true, status: 'completed' });
      expect(body.divergences).toEqual([
        { field: 'jobs.status', expected: 'completed', actual: 'failed', reason: 'the jobs view does not match the log' },
      ]);
    });

    it('a changed billing row is a divergence once the billing projector is past the job', async () => {
      const { socket, job } = await running();
      t.advance(125_000);
      await socket.request({ type: 'completed', job: job.id, attempt: 1, exitCode: 0 }, 'ack');
      expect(await settled(job.id)).toEqual(clean('completed', 4));
      await t.db.query(`UPDATE job_billing SET minutes = 1 WHERE job_id = $1`, [job.id]);
      const body = await audit(job.id);
      expect(body).toMatchObject({ verified: false, chainValid: true });
      expect(body.divergences).toEqual([expect.objectContaining({ field: 'job_billing.minutes', expected: 3, actual: 1 })]);
    });

    it('a correctly hashed event that the job machine would not have recorded is named at its position', async () => {
      const { job, spec } = await running();
      const intruder = await f.runner([spec.slug]);
      const store = t.app.get(EventStore);
      const events = await store.readStream(job.id);
      const last = events[events.length - 1];
      const { rows } = await t.db.query<{ position: string }>(`SELECT nextval('events_global_position_seq') AS position`);
      const unhashed: Omit<EventEnvelope, 'hash'> = {
        id: randomUUID(),
        streamId: job.id,
        streamType: 'job',
        position: last.position + 1,
        globalPosition: Number(rows[0].position),
        type: 'JobCompleted',
        schemaVersion: 1,
        data: { runnerId: intruder.id, attempt: 1, exitCode: 0, finishedAt: t.clock.now().toISOString(), output: null },
        metadata: { correlationId: randomUUID(), causationId: null, actor: `runner:${intruder.id}` },
        occurredAt: t.clock.now().toISOString(),
        prevHash: last.hash,
      };
      const hash = hashEvent(unhashed);
      await t.db.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO events (global_position, id, stream_id, stream_type, stream_position, type, schema_version, data, metadata,
             occurred_at, hash, prev_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
          [unhashed.globalPosition, unhashed.id, job.id, 'job', unhashed.position, unhashed.type, 1, JSON.stringify(unhashed.data),
            JSON.stringify(unhashed.metadata), unhashed.occurredAt, hash, unhashed.prevHash],
        );
        await tx.query(`UPDATE streams SET version = $2, last_hash = $3 WHERE stream_id = $1`, [job.id, unhashed.position, hash]);
      });

      const body = await audit(job.id);
      expect(body).toMatchObject({ verified: false, chainValid: true, eventCount: 4, status: 'completed' });
      expect(body.divergences[0]).toEqual({
        position: 4,
        field: 'type',
        actual: 'JobCompleted',
        reason: expect.stringContaining(`the job machine refuses the complete that JobCompleted records`),
      });
      expect(body.divergences[0].reason).toContain(`runner ${intruder.id} does not hold it`);
      // The view still says what the real history did.
      expect(body.divergences).toContainEqual(expect.objectContaining({ field: 'jobs.status', expected: 'completed', actual: 'running' }));
    });
  });

  describe('access', () => {
    it('answers an org key for its own jobs and the operator for any; another org gets 404 problem+json', async () => {
      const spec = await f.spec();
      const a = await f.tenant();
      const b = await f.tenant();
      const job = await f.submit(a, spec.slug);
      expect(await audit(job.id, bearer(a.key))).toEqual(clean('pending', 1));
      expect(await audit(job.id, admin)).toEqual(clean('pending', 1));

      for (const path of [`/v1/jobs/${job.id}/audit`, `/v1/jobs/${randomUUID()}/audit`, '/v1/jobs/not-a-job/audit']) {
        const res = await t.http.get(path).set(bearer(b.key)).expect(404);
        expect(res.headers['content-type']).toMatch(PROBLEM);
        expect(res.body).toMatchObject({ status: 404, code: 'not_found' });
      }
      // Another org's audit and a missing job read the same: nothing tells them apart.
      const foreign = await t.http.get(`/v1/jobs/${job.id}/audit`).set(bearer(b.key));
      const missing = await t.http.get(`/v1/jobs/${randomUUID()}/audit`).set(bearer(b.key));
      expect(foreign.body).toEqual(missing.body);
      await t.http.get(`/v1/jobs/${job.id}/audit`).expect(401);
      const runner = await f.runner([spec.slug]);
      await t.http.get(`/v1/jobs/${job.id}/audit`).set(bearer(runner.token)).expect(403);
      // An organization's stream is not a job.
      await t.http.get(`/v1/jobs/${a.org.id}/audit`).set(admin).expect(404);
    });

    it('is in the OpenAPI document', async () => {
      const doc = (await t.http.get('/openapi.json').expect(200)).body;
      expect(doc.paths['/v1/jobs/{job}/audit'].get.responses['200']).toMatchObject({
        content: { 'application/json': { schema: { $ref: '#/components/schemas/JobAuditDto' } } },
      });
      expect(Object.keys(doc.components.schemas.JobAuditDto.properties)).toEqual(expect.arrayContaining(['verified', 'status', 'eventCount', 'chainValid']));
    });
  });

  it('reads every stream in batches exactly as EventStore returns it', async () => {
    const store = t.app.get(EventStore);
    const repository = new AuditRepository(t.db, store);
    const byStream = new Map<string, EventEnvelope[]>();
    let cursor = STREAMS_START;
    for (;;) {
      const batch = await repository.snapshot((tx) => repository.eventsAfter(tx, cursor, 7));
      for (const { envelope } of batch) byStream.set(envelope.streamId, [...(byStream.get(envelope.streamId) ?? []), envelope]);
      if (batch.length < 7) break;
      cursor = { streamId: batch[6].envelope.streamId, position: batch[6].envelope.position };
    }
    expect(byStream.size).toBeGreaterThan(10);
    for (const [streamId, events] of byStream) expect(events).toEqual(await store.readStream(streamId));

    // The whole-log audit over the same database: the tampered streams above, and nothing else.
    const service = new AuditService(repository, store);
    const divergent: string[] = [];
    const summary = await service.auditLog((report) => {
      if (!report.chainValid || report.divergences.length > 0) divergent.push(report.streamType);
    }, { batchSize: 5 });
    expect(summary).toMatchObject({ verified: false, streams: byStream.size });
    expect(divergent).toEqual(['job', 'job', 'job', 'job', 'job']);
  });
});
