/**
 * The SCRAM verifiers this plugin set on static accounts, so an exposure rotation can prove which
 * passwords a role accepts by reading `pg_authid.rolpassword` (one query for many roles) instead of
 * logging in with each password (a new backend and a SCRAM exchange each).
 *
 * Why a match proves it: a role has exactly one stored password. If it is, byte for byte, the verifier
 * computed here for password P (a random salt each time, so nobody else writes the same string), then a
 * password login succeeds with P and fails with any other password: a different random password gives
 * a different StoredKey. This holds only for password authentication by that verifier: a pg_hba line
 * that trusts the client (`trust`, `peer`, `ident`, `cert`) or checks elsewhere (`ldap`, `radius`,
 * `pam`) lets in whatever it lets in, whatever is stored (see README, "Static secrets").
 *
 * So a verdict is given only once a login with the password set has been seen checked by that very
 * verifier: the server asked for SCRAM and sent its final message (trust, ldap, pam, radius, cert, ident
 * and peer never do). Until then, and again after every new verifier, the caller logs in instead.
 *
 * Only the latest verifier per role is kept, so an older verifier of ours written back behind our back
 * counts as "not ours" and the caller logs in instead. Passwords are kept only as an HMAC under a key
 * that lives and dies with this process.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StoredPasswordVerdict } from '../contract';

/** Enough for every static account of a large deployment; beyond it the oldest are forgotten (callers log in). */
const MAX_REMEMBERED = 100_000;

export class SetVerifiers {
  private readonly key = randomBytes(32);
  private readonly byRole = new Map<string, { verifier: string; fingerprint: Buffer; scramSeen: boolean }>();

  constructor(private readonly max = MAX_REMEMBERED) {}

  /** `verifier`, for `password`, is now what the role stores. */
  remember(role: string, password: string, verifier: string): void {
    this.byRole.delete(role);
    this.byRole.set(role, { verifier, fingerprint: this.fingerprint(password), scramSeen: false });
    if (this.byRole.size > this.max) this.byRole.delete(this.byRole.keys().next().value!);
  }

  /** A login as `role` with `password` succeeded by SCRAM against the stored verifier. */
  scramLoginSeen(role: string, password: string): void {
    const set = this.byRole.get(role);
    if (set && timingSafeEqual(set.fingerprint, this.fingerprint(password))) set.scramSeen = true;
  }

  /** What the role stores is no longer known (a change that may or may not have happened). */
  forget(role: string): void {
    this.byRole.delete(role);
  }

  /** Judges `password` for `role` given what the role stores now (`undefined`: no such role, or no password). */
  judge(role: string, password: string, stored: string | null | undefined): StoredPasswordVerdict {
    const set = this.byRole.get(role);
    if (!set || !set.scramSeen || !stored || stored !== set.verifier) return 'unknown';
    return timingSafeEqual(set.fingerprint, this.fingerprint(password)) ? 'accepted' : 'refused';
  }

  private fingerprint(password: string): Buffer {
    return createHmac('sha256', this.key).update(password, 'utf8').digest();
  }
}
