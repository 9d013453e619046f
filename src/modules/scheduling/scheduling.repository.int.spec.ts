import { createTestDatabase, type TestDatabase } from '../../../test/support/postgres';
import { sqlIn, sqlLiterals } from '../../common/sql-literals';
import { PLANS, type Plan, plansWith } from '../../events/plans';
import { Database } from '../database/database';
import type { Sql } from '../database/db';
import { statusesTaking } from '../../machines/job.machine';
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
  database = await Database.open({ databaseUrl: testDb.url, databasePoolSize: 4, dataDir: '' });
  repository = new SchedulingRepository(database.db);
});
afterAll(async () => {
  await database.close();
  await testDb.drop();
});

const uuid = (kind: number, n: number) => `00000000-0000-7000-8000-${kind.toString(16).padStart(4, '0')}${n.toString(16).padStart(8, '0')}`;

const PLAN_CYCLE: Plan[] = ['enterprise', 'team', 'team', 'free', 'free', 'unclaimed', 'unclaimed', 'team'];
const ORGS = PLAN_CYCLE.length;
const SPECS = 3;
const RUNNERS = 6;

/** The columns of a jobs row these tests write. */
interface JobRow {
  id: string;
  org_id: string;
  project_id: string;
  spec_id: string;
  spec: string;
  plan: Plan;
  priority: number;
  status: string;
  attempt: number;
  max_attempts: number;
  runner_id: string | null;
  timeout: number;
  source_ip: string | null;
  created_at: string;
  version: number;
  cancel_acknowledged: boolean;
}

/** Orgs of every plan, projects, specs and runners; each test writes the jobs it needs. */
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
async function randomJobs(next: () => number): Promise<JobRow[]> {
  await database.db.query(`DELETE FROM jobs`);
  const pending = Math.floor(next() * 120);
  const inFlight = Math.floor(next() * 12);
  const rows: JobRow[] = [];
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
  return rows;
}

describe('SchedulingRepository.candidates: the claim order, read without reading the whole queue', () => {
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

/** Org `o`'s plan and own limit, as the shared setup made them. */
const orgOf = (o: number) => ({ plan: PLAN_CYCLE[o], maxConcurrency: o === 2 ? 2 : o === 7 ? 1 : o === 4 ? 3 : null });

/** Runs a claim's check as the statement appending JobClaimed does, on `sql`, and gives its row. */
async function claimCheck(
  sql: Sql,
  claim: { runnerId: string; capacity: number; candidate: Candidate },
): Promise<{ job_locked: boolean; runner_free: boolean; job_claimable: boolean; ok: boolean }> {
  const values: unknown[] = [];
  const text = repository.claimCheck(claim).sql((value) => {
    values.push(value);
    return `$${values.length}`;
  });
  const { rows } = await sql.query<{ job_locked: boolean; runner_free: boolean; job_claimable: boolean; ok: boolean }>(text, values);
  return rows[0];
}

/** Resolves once a backend waits for an advisory lock. */
async function someoneWaitsForAnAdvisoryLock(): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await database.db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('nobody waited for an advisory lock');
}

describe('runway_claim_check: a claim’s locks, and its check read after them (migration 8)', () => {
  it('counts in flight the statuses the scheduler counts, which the function names as its indexes do', () => {
    expect([...statusesTaking('heartbeat')].sort()).toEqual(['claimed', 'running']);
  });

  it('agrees with the limits as they read in words, for every runner and pending job, over random states', async () => {
    const next = random(Number(process.env.RUNWAY_TEST_SEED ?? 20261208));
    let checked = 0;
    const seen = { runnerFull: 0, refused: 0, claimable: 0, unlockedRefused: 0 };
    for (let state = 0; state < 12; state++) {
      const rows = await randomJobs(next);
      const inFlight = rows.filter((row) => row.status === 'claimed' || row.status === 'running');
      const pending = rows.filter((row) => row.status === 'pending');
      for (let r = 0; r < RUNNERS - 1; r++) {
        for (const job of pending.filter((_, i) => i % 4 === r % 4)) {
          const o = Number.parseInt(job.org_id.slice(-8), 16);
          const org = orgOf(o);
          const capacity = 1 + Math.floor(next() * 3);
          // Mostly the version and plan as they are; sometimes a stale version, or the plan of
          // an unlimited org as read before the organization changed plans (no org lock taken).
          const version = next() < 0.1 ? 2 : 1;
          const readAs = next() < 0.2 ? { plan: 'team' as Plan, max_concurrency: null } : { plan: org.plan, max_concurrency: org.maxConcurrency };
          const candidate: Candidate = { id: job.id, org_id: job.org_id, source_ip: job.source_ip, version, ...readAs };
          const runnerId = uuid(4, r);

          const orgLocked = PLANS[readAs.plan].orgInFlightLimit !== null || PLANS[readAs.plan].ipInFlightLimit !== null || readAs.max_concurrency !== null;
          const limited = PLANS[org.plan].orgInFlightLimit !== null || PLANS[org.plan].ipInFlightLimit !== null || org.maxConcurrency !== null;
          const orgN = inFlight.filter((x) => x.org_id === job.org_id).length;
          const ipN = inFlight.filter((x) => PLANS[orgOf(Number.parseInt(x.org_id.slice(-8), 16)).plan].ipInFlightLimit !== null && x.source_ip === job.source_ip).length;
          const planOrgLimit = PLANS[org.plan].orgInFlightLimit;
          const planIpLimit = PLANS[org.plan].ipInFlightLimit;
          const expected = {
            job_locked: true,
            runner_free: inFlight.filter((x) => x.runner_id === runnerId).length < capacity,
            job_claimable:
              version === job.version &&
              (orgLocked || !limited) &&
              (planOrgLimit === null || orgN < planOrgLimit) &&
              (org.maxConcurrency === null || orgN < org.maxConcurrency) &&
              (planIpLimit === null || ipN < planIpLimit),
          };
          const actual = await claimCheck(database.db, { runnerId, capacity, candidate });
          expect({ state, runner: r, job: job.id, readAs, version, capacity, actual }).toEqual({
            state,
            runner: r,
            job: job.id,
            readAs,
            version,
            capacity,
            actual: { ...expected, ok: expected.runner_free && expected.job_claimable },
          });
          checked++;
          if (!expected.runner_free) seen.runnerFull++;
          if (expected.job_claimable) seen.claimable++;
          else seen.refused++;
          if (!orgLocked && limited) seen.unlockedRefused++;
        }
      }
    }
    // Every outcome came up, not only the easy one.
    expect(checked).toBeGreaterThan(500);
    for (const [outcome, n] of Object.entries(seen)) expect({ outcome, n: n > 10 }).toEqual({ outcome, n: true });
  });

  async function oneJob(id: string, status: string, runnerId: string | null): Promise<void> {
    const team = 1;
    const row: JobRow = {
      id,
      org_id: uuid(1, team),
      project_id: uuid(2, team),
      spec_id: uuid(3, 0),
      spec: 'spec',
      plan: 'team',
      priority: 200,
      status,
      attempt: 1,
      max_attempts: 1,
      runner_id: runnerId,
      timeout: 60,
      source_ip: null,
      created_at: new Date(Date.UTC(2026, 0, 1)).toISOString(),
      version: 1,
      cancel_acknowledged: false,
    };
    await database.db.query(`INSERT INTO jobs SELECT * FROM jsonb_populate_record(NULL::jobs, $1::jsonb)`, [JSON.stringify(row)]);
  }

  const candidateOf = (id: string): Candidate => ({ id, org_id: uuid(1, 1), source_ip: null, plan: 'team', max_concurrency: null, version: 1 });

  it('reads after its locks: a claim that commits while it waits for the runner’s lock makes the runner full', async () => {
    await database.db.query(`DELETE FROM jobs`);
    const runnerId = uuid(4, 0);
    const [first, second] = [uuid(7, 1), uuid(7, 2)];
    await oneJob(first, 'pending', null);
    await oneJob(second, 'pending', null);
    // Another claimer holds the runner's lock and claims `first` for it, not yet committed.
    const other = await database.db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT pg_advisory_xact_lock(hashtextextended('runner:' || $1, 0))`, [runnerId]);
      await other.query(`UPDATE jobs SET status = 'claimed', runner_id = $1 WHERE id = $2`, [runnerId, first]);
      const checking = claimCheck(database.db, { runnerId, capacity: 1, candidate: candidateOf(second) });
      await someoneWaitsForAnAdvisoryLock();
      await other.query('COMMIT');
      // A snapshot from before the lock would see the runner free.
      await expect(checking).resolves.toEqual({ job_locked: true, runner_free: false, job_claimable: true, ok: false });
    } finally {
      other.release();
    }
  });

  it('skips a job another claimer holds, at once, taking none of the other locks', async () => {
    await database.db.query(`DELETE FROM jobs`);
    const runnerId = uuid(4, 0);
    const job = uuid(7, 3);
    await oneJob(job, 'pending', null);
    const other = await database.db.pool.connect();
    try {
      // The other claimer holds the job's lock and the runner's: waiting for the runner's would hang.
      await other.query('BEGIN');
      await other.query(`SELECT pg_advisory_xact_lock(hashtextextended('job:' || $1, 0)), pg_advisory_xact_lock(hashtextextended('runner:' || $2, 0))`, [job, runnerId]);
      await expect(claimCheck(database.db, { runnerId, capacity: 1, candidate: candidateOf(job) })).resolves.toEqual({
        job_locked: false,
        runner_free: true,
        job_claimable: false,
        ok: false,
      });
      await other.query('ROLLBACK');
    } finally {
      other.release();
    }
    // Once the other is gone, the job is claimable again.
    await expect(claimCheck(database.db, { runnerId, capacity: 1, candidate: candidateOf(job) })).resolves.toMatchObject({ ok: true });
  });
});
