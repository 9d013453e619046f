import { Module } from '@nestjs/common';
import { OrgsModule } from '../orgs/orgs.module';
import { BillingController } from './billing.controller';
import { BillingRepository } from './billing.repository';
import { BillingService } from './billing.service';

/** Usage (billed minutes) over REST, read from the billing view (the api role). */
@Module({
  imports: [OrgsModule],
  controllers: [BillingController],
  providers: [BillingService, BillingRepository],
})
export class BillingModule {}
