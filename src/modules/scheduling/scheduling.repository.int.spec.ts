import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { sqlIn, sqlLiterals } from '../../common/sql-literals';
import { PLANS, type Plan, plansWith } from '../../events/plans';
import { Database } from '../database/database';
import { type Candidate, SchedulingRepository } from './scheduling.repository';

/** A small deterministic generator, so a failing state can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

const IN_FLIGHT = sqlLiterals(['claimed', 'running']);
const limits = (limit: 'orgInFlightLimit' | 'ipInFlightLimit', count: string) =>
  plansWith(limit)
    .map((plan) => `AND NOT (${sqlIn('o.plan', [plan])} AND ${count} >= ${PLANS[plan][limit]})`)
    .join(' ');

/**
 * The claim order as it reads in words, the way the candidates were read before they were made
 * to read only what they need: every pending job of the runner's specs, filtered by the limits,
 * sorted whole. The repository must return exactly its first rows.
 */
const ORACLE = `
  WITH in_flight AS (
    SELECT org_id, count(*) AS n FROM jobs WHERE status IN (${IN_FLIGHT}) GROUP BY org_id
  ), ip_in_flight AS (
    SELECT j.source_ip, count(*) AS n FROM jobs j JOIN orgs o ON o.id = j.org_id
     WHERE j.status IN (${IN_FLIGHT}) AND ${sqlIn('o.plan', plansWith('ipInFlightLimit'))} GROUP BY j.source_ip
  )
  SELECT j.id, j.org_id, j.source_ip, o.plan, o.max_concurrency, j.version
    FROM jobs j
    JOIN orgs o ON o.id = j.org_id
    LEFT JOIN in_flight f ON f.org_id = j.org_id
    LEFT JOIN ip_in_flight ip ON ${sqlIn('o.plan', plansWith('ipInFlightLimit'))} AND ip.source_ip IS NOT DISTINCT FROM j.source_ip
   WHERE j.status = 'pending'
     AND j.spec_id IN (SELECT rs.spec_id FROM runner_specs rs JOIN runners r ON r.id = rs.runner_id WHERE rs.runner_id = $1 AND NOT r.archived)
     ${limits('orgInFlightLimit', 'COALESCE(f.n, 0)')}
     ${limits('ipInFlightLimit', 'COALESCE(ip.n, 0)')}
     AND NOT (o.max_concurrency IS NOT NULL AND COALESCE(f.n, 0) >= o.max_concurrency)
   ORDER BY j.priority DESC, COALESCE(f.n, 0), j.created_at, j.id
   LIMIT $2`;

let testDb: TestDatabase;
let database: Database;
let repository: SchedulingRepository;

beforeAll(async () => {
  testDb = await createTestDatabase();
  database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 2, dataDir: '' });
  repository = new SchedulingRepository(database.db);
});
afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const uuid = (kind: number, n: number) => `00000000-0000-7000-8000-${kind.toString(16).padStart(4, '0')}${n.toString(16).padStart(8, '0')}`;

describe('SchedulingRepository.candidates: the claim order, read without reading the whole queue', () => {
  const PLAN_CYCLE: Plan[] = ['enterprise', 'team', 'team', 'free', 'free', 'unclaimed', 'unclaimed', 'team'];
  const ORGS = PLAN_CYCLE.length;
  const SPECS = 3;
  const RUNNERS = 6;

  beforeAll(async () => {
    const sql = database.db;
    for (let o = 0; o < ORGS; o++) {
      // Two team orgs set a limit of their own; one free org a higher one than its plan's.
      const maxConcurrency = o === 2 ? 2 : o === 7 ? 1 : o === 4 ? 3 : null;
      await sql.query(`INSERT INTO orgs VALUES ($1, $2, 'Org', $3, $4, now(), now())`, [uuid(1, o), `org-${o}`, PLAN_CYCLE[o], maxConcurrency]);
      await sql.query(`INSERT INTO projects VALUES ($1, $2, 'p', 'P', now())`, [uuid(2, o), uuid(1, o)]);
    }
    for (let s = 0; s < SPECS; s++) await sql.query(`INSERT INTO specs VALUES ($1, $2, 'S', 'x86_64', 8, 1, 1, false, now())`, [uuid(3, s), `spec-${s}`]);
    for (let r = 0; r < RUNNERS; r++) {
      await sql.query(`INSERT INTO runners VALUES ($1, $2, 'R', $3, $4, now(), now())`, [uuid(4, r), `runner-${r}`, String(r).padStart(64, '0'), r === 5]);
      // Runner r serves spec r % 3, and runners 3 and 4 the next one too; runner 5 is archived.
      const specs = r === 3 || r === 4 ? [r % SPECS, (r + 1) % SPECS] : [r % SPECS];
      for (const s of specs) await sql.query(`INSERT INTO runner_specs VALUES ($1, $2)`, [uuid(4, r), uuid(3, s)]);
    }
  });

  /** A random state of the jobs: pending on every spec, and some in flight, from a few source IPs. */
  async function randomJobs(next: () => number): Promise<void> {
    await database.db.query(`DELETE FROM jobs`);
    const pending = Math.floor(next() * 120);
    const inFlight = Math.floor(next() * 12);
    const rows = [];
    for (let i = 0; i < pending + inFlight; i++) {
      const org = Math.floor(next() * ORGS);
      const plan = PLAN_CYCLE[org];
      // Mostly the plan's priority; sometimes another (the org changed plans since it submitted).
      const priority = next() < 0.85 ? PLANS[plan].priority : PLANS[PLAN_CYCLE[Math.floor(next() * ORGS)]].priority;
      const status = i < pending ? 'pending' : next() < 0.5 ? 'claimed' : 'running';
      rows.push({
        id: uuid(5, i),
        org_id: uuid(1, org),
        project_id: uuid(2, org),
        spec_id: uuid(3, Math.floor(next() * SPECS)),
        spec: 'spec',
        plan,
        priority,
        status,
        attempt: 1,
        max_attempts: 1,
        runner_id: status === 'pending' ? null : uuid(4, Math.floor(next() * RUNNERS)),
        timeout: 60,
        source_ip: next() < 0.1 ? null : `10.0.0.${Math.floor(next() * 4)}`,
        // Few distinct times, so ties are decided by id.
        created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, Math.floor(next() * 20))).toISOString(),
        version: 1,
        cancel_acknowledged: false,
      });
    }
    if (rows.length > 0) {
      await database.db.query(`INSERT INTO jobs SELECT * FROM jsonb_populate_recordset(NULL::jobs, $1::jsonb)`, [JSON.stringify(rows)]);
    }
    await database.db.query(`ANALYZE jobs`);
  }

  it('returns exactly the first rows of the whole sorted queue, for every runner and limit, over random states', async () => {
    const next = random(Number(process.env.RUNWAY_TEST_SEED ?? 20261207));
    let compared = 0;
    let nonEmpty = 0;
    for (let state = 0; state < 40; state++) {
      await randomJobs(next);
      for (let r = 0; r < RUNNERS; r++) {
        for (const limit of [1, 3, 16, 200]) {
          const expected = (await database.db.query<Candidate>(ORACLE, [uuid(4, r), limit])).rows;
          const actual = await repository.candidates(uuid(4, r), limit);
          expect({ state, runner: r, limit, actual }).toEqual({ state, runner: r, limit, actual: expected });
          compared++;
          if (expected.length > 0) nonEmpty++;
        }
      }
    }
    // The states were not trivial: most comparisons had candidates, and the archived runner none.
    expect(compared).toBe(40 * RUNNERS * 4);
    expect(nonEmpty).toBeGreaterThan(compared / 2);
  });

  it('skips a source IP at its limit inside an organization’s own list: a later job of another IP is still found', async () => {
    const unclaimed = 5;
    const jobs = [];
    // 30 pending jobs of one unclaimed org from 10.0.0.1, which has one in flight, then one from 10.0.0.2.
    for (let i = 0; i < 32; i++) {
      const status = i === 0 ? 'running' : 'pending';
      jobs.push({
        id: uuid(6, i),
        org_id: uuid(1, unclaimed),
        project_id: uuid(2, unclaimed),
        spec_id: uuid(3, 0),
        spec: 'spec',
        plan: 'unclaimed',
        priority: 0,
        status,
        attempt: 1,
        max_attempts: 1,
        runner_id: status === 'running' ? uuid(4, 1) : null,
        timeout: 60,
        source_ip: i === 31 ? '10.0.0.2' : '10.0.0.1',
        created_at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        version: 1,
        cancel_acknowledged: false,
      });
    }
    await database.db.query(`DELETE FROM jobs`);
    await database.db.query(`INSERT INTO jobs SELECT * FROM jsonb_populate_recordset(NULL::jobs, $1::jsonb)`, [JSON.stringify(jobs)]);
    const candidates = await repository.candidates(uuid(4, 0), 16);
    expect(candidates.map((c) => c.id)).toEqual([uuid(6, 31)]);
  });
});
