import { Body, Controller, Get, Param, Patch, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import { Access } from '../auth/access.decorator';
import { Ctx, type RequestContext } from '../http/request-context';
import { Liveness } from '../liveness/liveness';
import { CreateRunnerDto, UpdateRunnerDto, mapRunner } from './runners.dto';
import type { RunnerRow } from './runners.repository';
import { RunnersService } from './runners.service';

@ApiTags('runners')
@ApiBearerAuth()
@Controller('v1/runners')
export class RunnersController {
  constructor(
    private readonly runners: RunnersService,
    private readonly liveness: Liveness,
  ) {}

  private view(row: RunnerRow) {
    return mapRunner(row, this.liveness.lastHeard(row.id));
  }

  @Post()
  @Access('admin')
  async create(@Body() dto: CreateRunnerDto, @Ctx() ctx: RequestContext) {
    const { runner, token } = await this.runners.create(dto, ctx);
    return { ...this.view(runner), token };
  }

  @Get()
  @Access('admin')
  async list() {
    return { items: (await this.runners.list()).map((row) => this.view(row)) };
  }

  @Get(':runner')
  @Access('admin')
  async get(@Param('runner') runner: string) {
    return this.view(await this.runners.find(runner));
  }

  @Patch(':runner')
  @Access('admin')
  async update(@Param('runner') runner: string, @Body() dto: UpdateRunnerDto, @Ctx() ctx: RequestContext) {
    return this.view(await this.runners.update(runner, dto, ctx));
  }

  @Post(':runner/token')
  @Access('admin')
  rotateToken(@Param('runner') runner: string, @Ctx() ctx: RequestContext) {
    return this.runners.rotateToken(runner, ctx);
  }
}
