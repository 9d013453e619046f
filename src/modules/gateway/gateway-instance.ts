import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';

/** This gateway instance, as RunnerConnected events and gateway alive messages name it. */
@Injectable()
export class GatewayInstance {
  readonly id = randomUUID();
}
