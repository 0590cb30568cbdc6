/**
 * The SCRAM verifiers this plugin set on static accounts, so rotations can prove which passwords a role
 * accepts by reading `pg_authid.rolpassword` (one query for many roles) instead of logging in with each
 * password (a new backend and a SCRAM exchange each).
 *
 * Why a match proves it: a role has exactly one stored password. If it is, byte for byte, the verifier
 * computed here for password P (a random salt each time, so nobody else writes the same string), then a
 * password login succeeds with P and fails with any other password: a different random password gives
 * a different StoredKey. This holds only for password authentication by that verifier: a pg_hba line
 * that trusts the client (`trust`, `peer`, `ident`, `cert`) or checks elsewhere (`ldap`, `radius`,
 * `pam`) lets in whatever it lets in, whatever is stored (see README, "Static secrets").
 *
 * So a verdict is given for a role only once a login as that role from here has been seen checked by
 * SCRAM against its stored verifier (the server asked for SCRAM and sent its final message: trust,
 * ldap, pam, radius, cert, ident and peer never do), and only while the server has not loaded its
 * configuration since: which pg_hba line applies to the broker's logins as a role changes only when
 * the server loads its configuration again. A new session authenticates with the pg_hba the server had
 * when it started the session (`backend_start`); on a reload every session loads the configuration
 * again before its next statement and `pg_conf_load_time()` there says when. So if the session
 * reading pg_authid loaded its configuration no later than the seen login's session started, the
 * pg_hba that checked that login is still the one in force. (A session that loads an older reload
 * late only makes this refuse to vouch until the next login: it errs towards logging in.) One login per
 * role per configuration load, not one per password set, is what lets an emergency rotation of many
 * secrets go at the speed of the password changes. What this cannot see: a pg_hba line that selects
 * roles by group membership (`+group`) follows membership changes without a reload (README, "Static
 * secrets").
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
  private readonly byRole = new Map<string, { verifier: string; fingerprint: Buffer }>();
  /** Per role: when the session of the latest login seen checked by SCRAM started (µs, server clock). */
  private readonly scramLogin = new Map<string, bigint>();

  constructor(private readonly max = MAX_REMEMBERED) {}

  /** `verifier`, for `password`, is now what the role stores. */
  remember(role: string, password: string, verifier: string): void {
    this.byRole.delete(role);
    this.byRole.set(role, { verifier, fingerprint: this.fingerprint(password) });
    if (this.byRole.size > this.max) {
      const oldest = this.byRole.keys().next().value!;
      this.byRole.delete(oldest);
      this.scramLogin.delete(oldest);
    }
  }

  /**
   * A login as `role` succeeded in a session the server started at `startedAt` (µs since the epoch).
   * `scram`: the server checked it by SCRAM against the stored verifier. A login let in without SCRAM
   * means the role's logins are not (or no longer) checked that way.
   */
  loginSeen(role: string, scram: boolean, startedAt: string | undefined): void {
    if (scram && startedAt && this.byRole.has(role)) this.scramLogin.set(role, BigInt(startedAt));
    else this.scramLogin.delete(role);
  }

  /** What the role stores is no longer known (a change that may or may not have happened). */
  forget(role: string): void {
    this.byRole.delete(role);
  }

  /**
   * Judges `password` for `role` given what the role stores now (`undefined`: no such role, or no
   * password), read by a session that last loaded the server's configuration at `confLoadedAt` (µs).
   */
  judge(role: string, password: string, stored: string | null | undefined, confLoadedAt: string | undefined): StoredPasswordVerdict {
    const set = this.byRole.get(role);
    const login = this.scramLogin.get(role);
    if (!set || !stored || stored !== set.verifier || confLoadedAt === undefined || login === undefined || BigInt(confLoadedAt) > login) return 'unknown';
    return timingSafeEqual(set.fingerprint, this.fingerprint(password)) ? 'accepted' : 'refused';
  }

  private fingerprint(password: string): Buffer {
    return createHmac('sha256', this.key).update(password, 'utf8').digest();
  }
}
