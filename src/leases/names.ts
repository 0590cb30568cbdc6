import { randomBytesPooled as randomBytes } from '../../plugins/contract';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Buffer, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += BASE32[bytes[i] & 31];
  return out;
}

/** Lease ids: 144 random bits, opaque and unguessable. */
export const LEASE_ID = /^tsl_[A-Za-z0-9_-]{24}$/;
export function newLeaseId(): string {
  return `tsl_${randomBytes(18).toString('base64url')}`;
}

/**
 * Account names: recognisably Tessera's ("tsr_"), carrying as much of the role name as fits, and 60
 * random bits. Only [a-z0-9_], so every target accepts them unquoted and nothing in a role name can
 * reach the target's SQL.
 */
export function newAccountName(role: string, maxLength: number): string {
  const suffix = base32(randomBytes(12), 12);
  const room = Math.max(0, maxLength - 'tsr_'.length - 1 - suffix.length);
  const slug = role.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '').slice(0, room);
  return slug ? `tsr_${slug}_${suffix}` : `tsr_${suffix}`;
}

/** Passwords: 192 random bits, base64url (no quoting trouble on any target). */
export function newPassword(): string {
  return `T${randomBytes(24).toString('base64url')}`;
}
