import { Controller, Get, HttpCode, ServiceUnavailableException } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { Public } from '../auth/access.decorator';
import { Db } from '../database/db';

@ApiTags('health')
@Controller()
export class HealthController {
  constructor(private readonly db: Db) {}

  /** The process is up. */
  @Get('healthz')
  @Public()
  @HttpCode(200)
  healthz() {
    return { status: 'ok' };
  }

  /** The process can serve: its database answers. */
  @Get('readyz')
  @Public()
  async readyz() {
    try {
      await this.db.query('SELECT 1');
    } catch {
      throw new ServiceUnavailableException('the database does not answer');
    }
    return { status: 'ready', checks: { database: 'ok' } };
  }
}
