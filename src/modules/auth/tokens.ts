import { randomBytes, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from '../../events/envelope';

/** Credential kinds and their prefixes (docs/protocol.md, "Credentials"). */
export const TOKEN_PREFIX = {
  admin: 'runway_admin_',
  key: 'runway_key_',
  runner: 'runway_runner_',
} as const;

/** A new secret: the prefix and 64 hex digits (256 random bits). */
export function generateToken(kind: keyof typeof TOKEN_PREFIX): string {
  return `${TOKEN_PREFIX[kind]}${randomBytes(32).toString('hex')}`;
}

/** What is stored of a secret: its SHA-256, hex. */
export function hashToken(token: string): string {
  return sha256Hex(token);
}

export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

export const TOKEN_PATTERN = {
  key: /^runway_key_[0-9a-f]{64}$/,
  runner: /^runway_runner_[0-9a-f]{64}$/,
} as const;
