import { Module } from '@nestjs/common';
import { Liveness } from './liveness';

/** Claim, heartbeat and job timeouts (runs with the api role). */
@Module({ providers: [Liveness], exports: [Liveness] })
export class LivenessModule {}
