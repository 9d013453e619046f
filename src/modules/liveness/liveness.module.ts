import { Module } from '@nestjs/common';
import { RunnerSessions } from '../runners/runner-sessions';
import { Liveness } from './liveness';

/** Claim, heartbeat and job timeouts (runs with the api role). */
@Module({ providers: [Liveness, RunnerSessions], exports: [Liveness] })
export class LivenessModule {}
