/**
 * Bearer tokens and join codes. Tokens are 256-bit random strings shown once; only their SHA-256 is
 * stored, so a copy of the database grants nothing (a slow KDF is unnecessary for random secrets).
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function newId(): string {
  return randomBytes(9).toString('base64url');
}

/** Short human-typable code without look-alike characters. */
export function newJoinCode(): string {
  const alphabet = 'ABCDEFGHJKMNPQRSTUVWXYZ23456789';
  let code = '';
  for (let i = 0; i < 8; i++) code += alphabet[randomInt(alphabet.length)];
  return code;
}

/** The token of an `Authorization: Bearer <token>` header, if well-formed. */
export function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer ([A-Za-z0-9_\-.~+/]{16,200}=*)$/.exec(header ?? '');
  return m ? m[1] : undefined;
}
