import { Body, Controller, Get, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { CreateSpecDto, SpecsService, mapSpec } from './specs';

@ApiTags('specs')
@ApiBearerAuth()
@Controller('v1/specs')
export class SpecsController {
  constructor(private readonly specs: SpecsService) {}

  @Post()
  @Access('admin')
  async create(@Body() dto: CreateSpecDto, @Ctx() ctx: RequestContext) {
    return mapSpec(await this.specs.create(dto, ctx));
  }

  @Get()
  @Access('admin', 'org')
  async list() {
    return { items: (await this.specs.list()).map(mapSpec) };
  }
}
