import { Global, Module } from '@nestjs/common';
import { AuthGuard } from './auth.guard';
import { Authenticator } from './authenticator';

@Global()
@Module({ providers: [Authenticator, AuthGuard], exports: [Authenticator, AuthGuard] })
export class AuthModule {}
