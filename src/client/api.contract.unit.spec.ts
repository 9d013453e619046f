import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobAuditDto } from '../modules/audit/audit.dto';
import type { UsageResponse } from '../modules/billing/billing.dto';
import type { EventEnvelope as ServerEnvelope } from '../events/envelope';
import type { Problem as ServerProblem } from '../modules/http/problem';
import type { mapJob } from '../modules/jobs/jobs.dto';
import type { JobsService } from '../modules/jobs/jobs.service';
import type { mapKey, mapOrg, mapProject } from '../modules/orgs/orgs.dto';
import type { OrgsService } from '../modules/orgs/orgs.service';
import type { QueueResponse } from '../modules/queue/queue.dto';
import type { mapRunner } from '../modules/runners/runners.dto';
import type { RunnersService } from '../modules/runners/runners.service';
import type { mapSpec } from '../modules/specs/specs';
import type { EventEnvelope, Job, JobAudit, JobOutput, NewOrgKey, Org, OrgKey, Problem, Project, QueueList, Runner, Spec, Usage } from './api';

/**
 * The client's types are the public contract as the client reads it; it does not import the
 * server. These checks are type-level only (erased at run time): if a server response stops
 * fitting the client's type, `tsc --noEmit` fails here and names the endpoint.
 */
type Fits<Server, Client> = [Server] extends [Client] ? true : false;

const contract = {
  'GET /v1/jobs/{job}': true satisfies Fits<ReturnType<typeof mapJob>, Job>,
  'GET /v1/jobs/{job}/output': true satisfies Fits<Awaited<ReturnType<JobsService['output']>>, JobOutput>,
  'GET /v1/jobs/{job}/events': true satisfies Fits<ServerEnvelope, EventEnvelope>,
  'GET /v1/jobs/{job}/audit': true satisfies Fits<JobAuditDto, JobAudit>,
  'GET /v1/queue': true satisfies Fits<QueueResponse, QueueList>,
  'GET /v1/orgs/{org}/usage': true satisfies Fits<UsageResponse, Usage>,
  'GET /v1/orgs/{org}': true satisfies Fits<ReturnType<typeof mapOrg>, Org>,
  'POST /v1/orgs/{org}/keys': true satisfies Fits<Awaited<ReturnType<OrgsService['createKey']>>, NewOrgKey>,
  'GET /v1/orgs/{org}/keys': true satisfies Fits<ReturnType<typeof mapKey>, OrgKey>,
  'GET /v1/projects/{project}': true satisfies Fits<ReturnType<typeof mapProject>, Project>,
  'GET /v1/specs': true satisfies Fits<ReturnType<typeof mapSpec>, Spec>,
  'GET /v1/runners/{runner}': true satisfies Fits<ReturnType<typeof mapRunner>, Runner>,
  'POST /v1/runners/{runner}/token': true satisfies Fits<Awaited<ReturnType<RunnersService['rotateToken']>>, { token: string }>,
  'problem+json': true satisfies Fits<ServerProblem, Problem>,
};

/** Controls: `Fits` can say no. Were it always true, these errors would not happen and tsc would fail on the unused directives. */
const controls = {
  // @ts-expect-error a number is not a string
  primitive: true satisfies Fits<number, string>,
  // @ts-expect-error a job without its status does not fit the client's Job
  missingField: true satisfies Fits<Omit<ReturnType<typeof mapJob>, 'status'>, Job>,
};

/*
 * Erased at run time, these checks are made by `npm run typecheck` (tsc -p tsconfig.json), not by
 * jest (swc strips types). What jest can check is that tsc does read this file.
 */
it("is a file the type check reads, so the compiler checks the server's responses against the client's types", () => {
  const config = JSON.parse(readFileSync(join(__dirname, '../../tsconfig.json'), 'utf8')) as { include: string[]; exclude?: string[] };
  expect(config.include).toContain('src');
  expect(config.exclude ?? []).toEqual([]);
  expect(JSON.parse(readFileSync(join(__dirname, '../../package.json'), 'utf8')).scripts.typecheck).toBe('tsc -p tsconfig.json --noEmit');
  expect(Object.keys(contract)).toHaveLength(14);
  expect(Object.keys(controls)).toEqual(['primitive', 'missingField']);
});
