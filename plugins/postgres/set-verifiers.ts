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
 * So a verdict needs a login as the role from here seen checked by SCRAM against its stored verifier
 * (the server asked for SCRAM and sent its final message: trust, ldap, pam, radius, cert, ident and peer
 * never do), with nothing that decides how the role logs in changed since:
 * - the same server (postmaster start time, server address and port) and the same role (its oid: a
 *   role dropped and created again under the name is another role);
 * - the same pg_hba rules (a digest of pg_hba_file_rules, read by the admin after the login and with
 *   the checks, reused for at most a second: an edit shows even when a reload went wrong elsewhere);
 * - no configuration load since: the reading session loaded its configuration (`pg_conf_load_time()`)
 *   before the login's session started (`backend_start`). A reload reaches every session before its
 *   next statement, so a reload after the login shows; a session that takes in an older reload only
 *   then makes this refuse to vouch until the next login (it errs towards logging in).
 * Which login counts depends on the connection's `verify_logins`:
 * - `every_password` (the default): a login with the very password and verifier that are stored, so
 *   each verifier set is logged in with once (the rotation's verify step) and the rest is proved from
 *   pg_authid;
 * - `once_per_configuration`: a login as the role with any password this plugin set, so after one
 *   login per role, rotations log in no more until one of the above changes. Sound only where the
 *   broker reaches PostgreSQL itself (no pooler that authenticates clients on its own, no address that
 *   can lead to another server) and pg_hba does not pick roles by group (`+group`, `samerole`,
 *   `samegroup` follow membership without a reload). See README, "Static secrets".
 *
 * Only the latest verifier per role is kept, so an older verifier of ours written back behind our back
 * counts as "not ours" and the caller logs in instead. Passwords are kept only as an HMAC under a key
 * that lives and dies with this process.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StoredPasswordVerdict } from '../contract';

/** Enough for every static account of a large deployment; beyond it the oldest are forgotten (callers log in). */
const MAX_REMEMBERED = 100_000;
export type VerifyLogins = 'every_password' | 'once_per_configuration';

/** Where a login or a read of pg_authid happened, as the server reports it. */
export interface ServerFacts {
  /** The role's oid. */
  roleOid: string;
  /** Postmaster start time, server address and port. */
  server: string;
  /** Digest of pg_hba_file_rules. */
  hba: string;
}

interface SeenLogin extends ServerFacts {
  /** The login session's backend_start (µs since the epoch). */
  startedAt: bigint;
  /** The password it logged in with (HMAC). */
  fingerprint: Buffer;
  /** The verifier this plugin had set when it logged in (every_password vouches only for that one). */
  verifier: string;
}

export class SetVerifiers {
  private readonly key = randomBytes(32);
  private readonly byRole = new Map<string, { verifier: string; fingerprint: Buffer }>();
  /** The latest login per role seen checked by SCRAM (kept apart: it outlives `forget`). */
  private readonly logins = new Map<string, SeenLogin>();

  constructor(
    private readonly mode: VerifyLogins = 'every_password',
    private readonly max = MAX_REMEMBERED,
  ) {}

  /** `verifier`, for `password`, is now what the role stores. */
  remember(role: string, password: string, verifier: string): void {
    this.byRole.delete(role);
    this.byRole.set(role, { verifier, fingerprint: this.fingerprint(password) });
    if (this.byRole.size > this.max) this.byRole.delete(this.byRole.keys().next().value!);
  }

  /**
   * A login as `role` with `password` succeeded. `scram`: the server checked it by SCRAM against the
   * stored verifier; `seen`: where and when (undefined when it could not be read). A login let in
   * without SCRAM means the role's logins are not (or no longer) checked that way.
   */
  loginSeen(role: string, password: string, scram: boolean, seen: Omit<SeenLogin, 'fingerprint' | 'verifier'> | undefined): void {
    this.logins.delete(role);
    const set = this.byRole.get(role);
    if (!scram || !seen || !set) return;
    this.logins.set(role, { ...seen, fingerprint: this.fingerprint(password), verifier: set.verifier });
    if (this.logins.size > this.max) this.logins.delete(this.logins.keys().next().value!);
  }

  /** A login as `role` was refused: what an earlier login showed no longer holds. */
  loginRefused(role: string): void {
    this.logins.delete(role);
  }

  /** What the role stores is no longer known (a change that may or may not have happened). */
  forget(role: string): void {
    this.byRole.delete(role);
  }

  /**
   * Judges `password` for `role` given what the role stores now (`stored`: undefined when there is no
   * such role or no password) and the facts read with it (`confLoadedAt`: the reading session's
   * configuration load, µs since the epoch). The login that vouches must have been with the stored
   * verifier's own password (every_password), or any (once_per_configuration).
   */
  judge(role: string, password: string, stored: string | null | undefined, read: (ServerFacts & { confLoadedAt: string }) | undefined): StoredPasswordVerdict {
    const set = this.byRole.get(role);
    const login = this.logins.get(role);
    if (!set || !stored || stored !== set.verifier || !login || !read) return 'unknown';
    if (this.mode === 'every_password' && (login.verifier !== set.verifier || !timingSafeEqual(login.fingerprint, set.fingerprint))) return 'unknown';
    if (login.roleOid !== read.roleOid || login.server !== read.server || login.hba !== read.hba) return 'unknown';
    if (BigInt(read.confLoadedAt) >= login.startedAt) return 'unknown';
    return timingSafeEqual(set.fingerprint, this.fingerprint(password)) ? 'accepted' : 'refused';
  }

  private fingerprint(password: string): Buffer {
    return createHmac('sha256', this.key).update(password, 'utf8').digest();
  }
}
