import { Body, Controller, Get, Param, Patch, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { CreateRunnerDto, UpdateRunnerDto, mapRunner } from './runners.dto';
import { RunnersService } from './runners.service';

@ApiTags('runners')
@ApiBearerAuth()
@Controller('v1/runners')
export class RunnersController {
  constructor(private readonly runners: RunnersService) {}

  @Post()
  @Access('admin')
  async create(@Body() dto: CreateRunnerDto, @Ctx() ctx: RequestContext) {
    const { runner, token } = await this.runners.create(dto, ctx);
    return { ...mapRunner(runner), token };
  }

  @Get()
  @Access('admin')
  async list() {
    return { items: (await this.runners.list()).map(mapRunner) };
  }

  @Get(':runner')
  @Access('admin')
  async get(@Param('runner') runner: string) {
    return mapRunner(await this.runners.find(runner));
  }

  @Patch(':runner')
  @Access('admin')
  async update(@Param('runner') runner: string, @Body() dto: UpdateRunnerDto, @Ctx() ctx: RequestContext) {
    return mapRunner(await this.runners.update(runner, dto, ctx));
  }

  @Post(':runner/token')
  @Access('admin')
  rotateToken(@Param('runner') runner: string, @Ctx() ctx: RequestContext) {
    return this.runners.rotateToken(runner, ctx);
  }
}
