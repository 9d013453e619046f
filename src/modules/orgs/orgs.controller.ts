import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { orgOf } from '../auth/principal';
import { Ctx, type RequestContext } from '../http/request-context';
import { CreateKeyDto, CreateOrgDto, CreateProjectDto, UpdateOrgDto, mapKey, mapOrg, mapProject } from './orgs.dto';
import { OrgsService } from './orgs.service';

@ApiTags('organizations')
@ApiBearerAuth()
@Controller('v1/orgs')
export class OrgsController {
  constructor(private readonly orgs: OrgsService) {}

  @Post()
  @Access('admin')
  async create(@Body() dto: CreateOrgDto, @Ctx() ctx: RequestContext) {
    return mapOrg(await this.orgs.create(dto, ctx));
  }

  @Get()
  @Access('admin')
  async list() {
    return { items: (await this.orgs.list()).map(mapOrg) };
  }

  @Get(':org')
  @Access('admin', 'org')
  async get(@Param('org') org: string, @Ctx() ctx: RequestContext) {
    return mapOrg(await this.orgs.find(org, ctx));
  }

  @Patch(':org')
  @Access('admin')
  async update(@Param('org') org: string, @Body() dto: UpdateOrgDto, @Ctx() ctx: RequestContext) {
    return mapOrg(await this.orgs.update(org, dto, ctx));
  }

  @Post(':org/keys')
  @Access('admin')
  createKey(@Param('org') org: string, @Body() dto: CreateKeyDto, @Ctx() ctx: RequestContext) {
    return this.orgs.createKey(org, dto, ctx);
  }

  @Get(':org/keys')
  @Access('admin')
  async listKeys(@Param('org') org: string) {
    return { items: (await this.orgs.listKeys(org)).map(mapKey) };
  }

  @Delete(':org/keys/:id')
  @Access('admin')
  @HttpCode(204)
  async revokeKey(@Param('org') org: string, @Param('id') id: string, @Ctx() ctx: RequestContext): Promise<void> {
    await this.orgs.revokeKey(org, id, ctx);
  }
}

@ApiTags('projects')
@ApiBearerAuth()
@Controller('v1/projects')
export class ProjectsController {
  constructor(private readonly orgs: OrgsService) {}

  @Post()
  @Access('org')
  async create(@Body() dto: CreateProjectDto, @Ctx() ctx: RequestContext) {
    return mapProject(await this.orgs.createProject(orgOf(ctx.principal), dto, ctx));
  }

  @Get()
  @Access('org')
  async list(@Ctx() ctx: RequestContext) {
    return { items: (await this.orgs.listProjects(orgOf(ctx.principal))).map(mapProject) };
  }

  @Get(':project')
  @Access('org', 'admin')
  async get(@Param('project') project: string, @Ctx() ctx: RequestContext) {
    return mapProject(await this.orgs.findProject(project, ctx));
  }
}

