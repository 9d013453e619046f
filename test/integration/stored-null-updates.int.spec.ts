import { auditCommand, type AuditJsonReport } from '../../src/commands/audit';
import type { CommandContext } from '../../src/commands/context';
import { rebuildProjections } from '../../src/commands/projections';
import type { StoredEvent } from '../../src/events/decode';
import { decodeOrgEvent, decodeRunnerEvent } from '../../src/events/decoders';
import type { DomainEvent, EventMetadata } from '../../src/events/envelope';
import type { OrgEvent } from '../../src/events/org-events';
import type { RunnerEvent } from '../../src/events/runner-events';
import { upcast } from '../../src/events/upcasters';
import { CommandHandler } from '../../src/modules/event-store/command-handler';
import { EventStore } from '../../src/modules/event-store/event-store';
import { ORG_STREAM, type Org, evolveOrg } from '../../src/modules/orgs/org';
import { orgViews } from '../../src/modules/orgs/org.views';
import { RUNNER_STREAM, type Runner, evolveRunner } from '../../src/modules/runners/runner';
import { runnerViews } from '../../src/modules/runners/runner.views';
import { type TestApp, projectorsCaughtUp, admin } from '../support/app';
import { Fixtures } from '../support/fixtures';
import { appSuite } from '../support/suite';

/**
 * Logs written before null was refused hold `OrgUpdated {"plan": null}` and
 * `RunnerUpdated {"name": null}`: appended as they were then (through the event store, with the
 * views written by the same projections, so the hash chain and the views are as they were left),
 * they must read as the no-ops they were: `runway audit` verified, a rebuild equal to the live views,
 * and the streams go on taking commands.
 */
describe('a log holding the null updates an earlier build appended', () => {
  const suite = appSuite();
  let t: TestApp;
  let f: Fixtures;
  let context: CommandContext;
  beforeAll(() => {
    ({ t, f } = suite);
    context = { store: t.app.get(EventStore), database: { db: t.db }, clock: t.clock } as unknown as CommandContext;
  });

  const metadata: EventMetadata = { correlationId: 'old-build', causationId: null, actor: 'admin' };

  /** Appends `event` as the earlier build did: whatever it was, with the stream's inline views. */
  async function appendAsBefore<S, E extends DomainEvent>(
    stream: { id: string; type: string },
    evolve: (s: S | null, e: E) => S,
    decode: (stored: StoredEvent) => E,
    project: typeof orgViews,
    event: E,
  ) {
    await t.app.get(CommandHandler).execute<S, E>({ stream, evolve, decode, decide: () => [event], project: (tx, envelopes) => project.apply(tx, envelopes), metadata });
  }

  async function auditLog(): Promise<AuditJsonReport> {
    let printed = '';
    await auditCommand(context, { json: true }, (line) => (printed += line));
    return JSON.parse(printed) as AuditJsonReport;
  }

  it('audits clean, rebuilds equal, and the streams go on', async () => {
    const { org } = await f.org('team', { maxConcurrency: 4 });
    const spec = await f.spec();
    const runner = await f.runner([spec.slug]);
    const orgNull = { type: 'OrgUpdated', schemaVersion: 1, data: { plan: null } } as unknown as OrgEvent;
    const orgNullAndLimit = { type: 'OrgUpdated', schemaVersion: 1, data: { plan: null, maxConcurrency: null } } as unknown as OrgEvent;
    const runnerNull = { type: 'RunnerUpdated', schemaVersion: 1, data: { name: null } } as unknown as RunnerEvent;
    // (This process caches the state it folds after an append; it is the state this build reads them as.)
    const orgFold = (state: Org | null, event: OrgEvent) => evolveOrg(state, upcast(event));
    const runnerFold = (state: Runner | null, event: RunnerEvent) => evolveRunner(state, upcast(event));
    await appendAsBefore({ id: org.id, type: ORG_STREAM }, orgFold, decodeOrgEvent, orgViews, orgNull);
    await appendAsBefore({ id: org.id, type: ORG_STREAM }, orgFold, decodeOrgEvent, orgViews, orgNullAndLimit);
    await appendAsBefore({ id: runner.id, type: RUNNER_STREAM }, runnerFold, decodeRunnerEvent, runnerViews, runnerNull);

    // Stored as they were sent, never rewritten: their hashes cover them.
    const stored = await t.db.query<{ stream_id: string; type: string; data: unknown }>(
      `SELECT stream_id, type, data FROM events WHERE type IN ('OrgUpdated', 'RunnerUpdated') ORDER BY global_position`,
    );
    expect(stored.rows).toEqual([
      { stream_id: org.id, type: 'OrgUpdated', data: { plan: null } },
      { stream_id: org.id, type: 'OrgUpdated', data: { plan: null, maxConcurrency: null } },
      { stream_id: runner.id, type: 'RunnerUpdated', data: { name: null } },
    ]);
    // The views kept the plan and the name; the null limit lifted the limit, as it always did.
    expect((await t.http.get(`/v1/orgs/${org.id}`).set(admin).expect(200)).body).toMatchObject({ plan: 'team', maxConcurrency: null });
    expect((await t.http.get(`/v1/runners/${runner.id}`).set(admin).expect(200)).body).toMatchObject({ name: 'Runner' });

    await projectorsCaughtUp(t); // the rebuild compares views kept by projectors too
    // runway audit: verified, every stream, every event.
    const report = await auditLog();
    expect(report.divergentStreams).toEqual([]);
    expect(report).toMatchObject({ verified: true, divergent: 0 });
    // runway projections rebuild --check: equal.
    const rebuilt = await rebuildProjections(context, true);
    expect(rebuilt.tables.filter((table) => table.onlyLive > 0 || table.onlyRebuilt > 0)).toEqual([]);
    expect(rebuilt.equal).toBe(true);

    // The folds the deciders start from read them as no-ops too, so the streams go on.
    const commands = t.app.get(CommandHandler);
    expect((await commands.load<Org, OrgEvent>(org.id, evolveOrg, decodeOrgEvent)).state).toMatchObject({ plan: 'team', maxConcurrency: null });
    expect((await commands.load<Runner, RunnerEvent>(runner.id, evolveRunner, decodeRunnerEvent)).state).toMatchObject({ name: 'Runner' });
    await t.http.patch(`/v1/orgs/${org.id}`).set(admin).send({ plan: 'team' }).expect(200);
    await t.http.patch(`/v1/orgs/${org.id}`).set(admin).send({ plan: 'free', maxConcurrency: 2 }).expect(200);
    await t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ name: 'Runner' }).expect(200);
    await t.http.patch(`/v1/runners/${runner.id}`).set(admin).send({ name: 'Renamed' }).expect(200);
    const types = await t.db.query<{ type: string; data: unknown }>(
      `SELECT type, data FROM events WHERE stream_id = ANY($1::uuid[]) AND type IN ('OrgUpdated', 'RunnerUpdated') ORDER BY global_position`,
      [[org.id, runner.id]],
    );
    // The same plan and the same name change nothing: nothing appended for them.
    expect(types.rows.slice(3)).toEqual([
      { type: 'OrgUpdated', data: { plan: 'free', maxConcurrency: 2 } },
      { type: 'RunnerUpdated', data: { name: 'Renamed' } },
    ]);
    expect(await auditLog()).toMatchObject({ verified: true, divergent: 0, divergentStreams: [] });
  });
});
