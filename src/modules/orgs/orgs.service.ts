import { Injectable } from '@nestjs/common';
import { ConflictError, NotFoundError, ValidationError } from '../../common/errors';
import { IdGenerator } from '../../common/ids';
import { decodeOrgEvent } from '../../events/decoders';
import type { OrgEvent } from '../../events/org-events';
import { canReadOrg } from '../auth/principal';
import { generateToken, hashToken } from '../auth/tokens';
import { UNIQUE_VIOLATION, sqlState, violatedConstraint } from '../database/db';
import { CommandHandler } from '../event-store/command-handler';
import type { RequestContext } from '../http/request-context';
import { orgViews } from './org.views';
import { ORG_STREAM, type Org, decideCreateKey, decideCreateOrg, decideCreateProject, decideRevokeKey, decideUpdateOrg, evolveOrg } from './org';
import type { CreateKeyDto, CreateOrgDto, CreateProjectDto, UpdateOrgDto } from './orgs.dto';
import { OrgsRepository, type OrgRow, type ProjectRow } from './orgs.repository';

/** Organizations, their API keys and projects: each organization is an event stream. */
@Injectable()
export class OrgsService {
  constructor(
    private readonly commands: CommandHandler,
    private readonly repository: OrgsRepository,
    private readonly ids: IdGenerator,
  ) {}

  async create(dto: CreateOrgDto, ctx: RequestContext): Promise<OrgRow> {
    const orgId = this.ids.next();
    await this.run(orgId, ctx, (state) =>
      decideCreateOrg(state, { orgId, slug: dto.slug, name: dto.name, plan: dto.plan, maxConcurrency: dto.maxConcurrency ?? null }),
    );
    return this.mustFind(orgId);
  }

  async update(ref: string, dto: UpdateOrgDto, ctx: RequestContext): Promise<OrgRow> {
    const org = await this.mustFind(ref);
    if (dto.plan === undefined && dto.maxConcurrency === undefined) {
      throw new ValidationError('send plan or maxConcurrency');
    }
    await this.run(org.id, ctx, (state) => decideUpdateOrg(state, { plan: dto.plan, maxConcurrency: dto.maxConcurrency }));
    return this.mustFind(org.id);
  }

  /** Issues a key; the secret is in the answer only, the log and views keep its SHA-256. */
  async createKey(ref: string, dto: CreateKeyDto, ctx: RequestContext): Promise<{ id: string; key: string }> {
    const org = await this.mustFind(ref);
    const keyId = this.ids.next();
    const key = generateToken('key');
    await this.run(org.id, ctx, (state) => decideCreateKey(state, { keyId, name: dto.name ?? null, keyHash: hashToken(key) }));
    return { id: keyId, key };
  }

  async revokeKey(ref: string, keyId: string, ctx: RequestContext): Promise<void> {
    const org = await this.mustFind(ref);
    await this.run(org.id, ctx, (state) => decideRevokeKey(state, keyId));
  }

  async listKeys(ref: string) {
    const org = await this.mustFind(ref);
    return this.repository.listKeys(org.id);
  }

  async createProject(orgId: string, dto: CreateProjectDto, ctx: RequestContext): Promise<ProjectRow> {
    const projectId = this.ids.next();
    await this.run(orgId, ctx, (state) => decideCreateProject(state, { projectId, slug: dto.slug, name: dto.name }));
    const project = await this.repository.findProject(orgId, projectId);
    if (project === null) throw new Error(`project ${projectId} was created but is not in the view`);
    return project;
  }

  listProjects(orgId: string): Promise<ProjectRow[]> {
    return this.repository.listProjects(orgId);
  }

  /** A project of the key's org (by id or slug), or any project by id for the operator. */
  async findProject(ref: string, ctx: RequestContext): Promise<ProjectRow> {
    const orgId = ctx.principal.kind === 'org' ? ctx.principal.orgId : null;
    const project = await this.repository.findProject(orgId, ref);
    if (project === null) throw new NotFoundError('project not found');
    return project;
  }

  /** The org a request may see: its own for a key (404 for any other), any for the operator. */
  async find(ref: string, ctx: RequestContext): Promise<OrgRow> {
    const org = await this.repository.findOrg(ref);
    if (org === null || !canReadOrg(ctx.principal, org.id)) throw new NotFoundError('organization not found');
    return org;
  }

  list(): Promise<OrgRow[]> {
    return this.repository.listOrgs();
  }

  private async mustFind(ref: string): Promise<OrgRow> {
    const org = await this.repository.findOrg(ref);
    if (org === null) throw new NotFoundError('organization not found');
    return org;
  }

  private async run(orgId: string, ctx: RequestContext, decide: (state: Org | null) => OrgEvent[]): Promise<void> {
    try {
      await this.commands.execute<Org, OrgEvent>({
        stream: { id: orgId, type: ORG_STREAM },
        evolve: evolveOrg,
        decode: decodeOrgEvent,
        decide,
        project: (tx, envelopes) => orgViews.apply(tx, envelopes),
        metadata: ctx.metadata,
      });
    } catch (error) {
      if (sqlState(error) === UNIQUE_VIOLATION) {
        const constraint = violatedConstraint(error);
        throw new ConflictError(
          constraint === 'orgs_slug_key' ? 'an organization with this slug already exists' : 'this already exists',
          { cause: error },
        );
      }
      throw error;
    }
  }
}
