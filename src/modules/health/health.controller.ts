import { Controller, Get, HttpCode } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { UnavailableError } from '../../common/errors';
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

  /** The process can serve: its database answers (503 `unavailable` with `Retry-After` while it does not). */
  @Get('readyz')
  @Public()
  async readyz() {
    try {
      await this.db.query('SELECT 1');
    } catch {
      throw new UnavailableError('the database does not answer');
    }
    return { status: 'ready', checks: { database: 'ok' } };
  }
}
