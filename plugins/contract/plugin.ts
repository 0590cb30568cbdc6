/**
 * The contract every target plugin implements. Plugins are leaves: they import this folder and their
 * own driver, nothing from src/. The broker generates account names and passwords; a plugin only
 * applies them. Every verb takes a request object so the contract can grow without breaking callers.
 */
import type { ZodType } from 'zod';
import type { PluginError } from './errors';

/** Plugin-specific settings of a role, validated by the plugin's `roleSchema`. */
export type RoleSettings = Record<string, unknown>;

export interface CreateUserRequest {
  username: string;
  password: string;
  /** When the credential must stop working; targets that can enforce it should (second line of defence). */
  expiresAt: Date;
  role: RoleSettings;
  /** The lease the account is for, where the target can record it (an STS role session name). */
  leaseId?: string;
  /** The workload's identity subject, where the target can record it (STS SourceIdentity, session tags). */
  subject?: string;
  /** The name of the issuer that vouched for `subject`: two issuers may emit the same subject. */
  issuer?: string;
}

export interface CreateUserResponse {
  /** What the workload receives: username/password plus where to connect, when the plugin knows it. */
  credentials: Record<string, string | number>;
}

export interface RenewUserRequest {
  username: string;
  expiresAt: Date;
  role: RoleSettings;
}

export interface RevokeUserRequest {
  username: string;
  role: RoleSettings;
  /**
   * When the account was created, if it is known to exist. Eventually consistent targets (IAM) treat
   * "no such account" shortly after this as "not visible yet" and ask for a retry.
   */
  issuedAt?: Date;
}

export interface VerifyRequest {
  username: string;
  /** The password, or for key-based targets the secret key. */
  password: string;
  /** Key-based targets (IAM): the key id. */
  keyId?: string;
  /** Temporary credentials (STS): the session token that goes with the key. */
  token?: string;
}

/** Static secrets: a new secret for an existing account that Tessera owns and rotates. */
export interface SetStaticSecretRequest {
  /** The account as configured: a database user (MySQL: "name" or "name@host"), an IAM user. */
  account: string;
  /** The new password; ignored by targets that make their own secret (IAM). */
  password: string;
  /** Handles of secrets that must survive (IAM: the current key while a new one is made). */
  keep?: string[];
  /** false: change nothing, only describe the credentials for a password the target already has. */
  apply?: boolean;
  /**
   * End the account's open sessions once the new password is set (the old one leaked: sessions
   * opened with it must not survive). Targets without sessions ignore it.
   */
  endSessions?: boolean;
}

/** Destroys superseded secrets of a static account, so no credential it had before keeps working. */
export interface RetireStaticSecretRequest {
  account: string;
  /** Key-based targets (IAM): the one key to delete. */
  handle?: string;
  /** Key-based targets (IAM): delete every key of the account except these. */
  keep?: string[];
  /** Password targets: a fresh random password nobody records, which replaces the superseded one. */
  password?: string;
  /** End the account's open sessions (password targets). */
  endSessions?: boolean;
}

export interface StaticSecretResult {
  /** What readers of the static secret receive. */
  credentials: Record<string, string | number>;
  /** How to check that the secret logs in. */
  verify: VerifyRequest;
  /** Identifies this secret on the target where several coexist (IAM: the access key id). */
  handle?: string;
  /** With `endSessions`: logins that may still finish with the password just replaced (see LateLogins). */
  lateLogins?: LateLogins;
}

/**
 * Logins that can still finish with a password after it was replaced and the account's sessions were
 * ended. A target that reads the stored secret when a login begins checks the rest of that login
 * against what it read (PostgreSQL reads the SCRAM verifier before the exchange, and the client may
 * take up to `authentication_timeout` to finish it), so a login begun before the change can open a
 * session after the sessions were ended. The caller ends those sessions once `withinMs` has passed,
 * with `endSessionsStartedBefore(account, before)`, from a record kept in its own store (a restart in
 * between must not forget it).
 */
export interface LateLogins {
  /** When the sessions were ended, on the target's clock, as the plugin hands it back (opaque to callers). */
  before: string;
  /** How long after that a login begun earlier can still open a session. */
  withinMs: number;
}

export interface EndSessionsStartedBeforeRequest {
  account: string;
  /** `LateLogins.before`. */
  before: string;
}

export interface EndSessionsStartedBeforeResponse {
  /** How many sessions were ended. */
  ended: number;
}

/** Passwords to judge from what the target stores for each account, without logging in. */
export interface CheckStoredPasswordsRequest {
  checks: { account: string; password: string }[];
}

/**
 * One answer per check, in order:
 * - `accepted`: the account's stored secret is exactly the one this plugin set for this password, the
 *   account may log in, and its logins are checked by that stored secret, so this password, and no
 *   other, logs in (callers use it in place of a login: a rotation's verify step, an exposure's proof);
 * - `refused`: the stored secret is exactly one this plugin set for a different password, so this one
 *   fails the password check;
 * - `unknown`: the plugin cannot tell (it did not set what is stored, or no longer remembers it; the
 *   account is gone; the stored secret cannot be read). The caller logs in instead.
 */
export type StoredPasswordVerdict = 'accepted' | 'refused' | 'unknown';

export interface CheckStoredPasswordsResponse {
  results: StoredPasswordVerdict[];
}

/** Many accounts removed at once (mass expiry); each user as in `revokeUser`. */
export interface RevokeUsersRequest {
  users: RevokeUserRequest[];
}

/** One user's outcome: removed (or already gone), or the error that user's removal ran into. */
export type RevokeUserOutcome = { username: string; ok: true } | { username: string; ok: false; error: PluginError };

export interface RevokeUsersResponse {
  /** One outcome per requested user, in the order of the request. */
  results: RevokeUserOutcome[];
}

/** Empty today; a response object lets a verb's answer grow without breaking callers. */
export type RenewUserResponse = Record<string, never>;
export type RevokeUserResponse = Record<string, never>;
export interface RetireStaticSecretResponse {
  /** With `endSessions`: logins that may still finish with the password just replaced (see LateLogins). */
  lateLogins?: LateLogins;
}
export type PingResponse = Record<string, never>;

export interface VerifyResponse {
  /** True when the target accepted the login. */
  ok: boolean;
}

/** What a target can do, so core code asks the plugin instead of checking which plugin it is. */
export interface PluginCapabilities {
  /** Static-secret strategies the target supports. */
  staticStrategies: readonly ('single' | 'alternating')[];
  /** The target enforces a credential's expiry itself (PostgreSQL `VALID UNTIL`). */
  targetExpiry: boolean;
  /**
   * Static secrets are keys that coexist on one account (IAM access keys): a new key overlaps the
   * old, whose handle must be retired later; a failed rotation deletes the new key rather than
   * setting an old password back.
   */
  keyOverlap: boolean;
  /** Accounts hold sessions that revocation and exposure end. */
  sessions: boolean;
  /**
   * The plugin implements `revokeUsers`, removing many accounts in fewer target round trips than one
   * `revokeUser` each. Without it the broker calls `revokeUser` once per account.
   */
  batchRevoke: boolean;
}

/**
 * What a role's leases allow, when it is not the default (renewable, revocable accounts with any TTL
 * from 1 s). A plugin whose roles differ answers through `PluginFactory.leaseTerms`.
 */
export interface LeaseTerms {
  /** The credential's expiry can be moved: false makes renew a 409 `not_renewable`. */
  renewable: boolean;
  /**
   * A lease is an account on the target that revoke removes. False (temporary credentials that cannot be
   * withdrawn one by one): the credential works until it expires, and revoking ends the lease record only.
   */
  revocable: boolean;
  /** Shortest and longest TTL in seconds the target can give a credential of this role. */
  minTtl?: number;
  maxTtl?: number;
}

export const DEFAULT_LEASE_TERMS: Readonly<LeaseTerms> = Object.freeze({ renewable: true, revocable: true });

/** Ends, at once, every session a role's credentials opened before `before` (where the target can). */
export interface RevokeSessionsRequest {
  role: RoleSettings;
  before: Date;
}

export interface RevokeSessionsResponse {
  /** What was changed on the target, for the audit trail (e.g. the IAM roles given a deny policy). */
  targets: string[];
  /**
   * What could not be changed, each with the target's error code (stable, for the audit trail) and a
   * message for the log. Absent or empty: everything was done.
   */
  failed?: { target: string; code: string; retryable: boolean; message: string }[];
}

/** The request fields that carry secrets: the broker scrubs their values out of every plugin error. */
export const SECRET_FIELDS = ['password', 'token'] as const;

export interface CredentialPlugin {
  /**
   * Longest account name the target accepts; the broker generates names that fit. Targets that make
   * their own secret (IAM access keys) ignore the broker's password and return theirs in the credentials.
   */
  readonly maxUsernameLength: number;
  readonly capabilities: PluginCapabilities;

  /**
   * Creates the account. Undoes its own partial work before it throws, so a failed create leaves
   * nothing behind on the target.
   */
  createUser(req: CreateUserRequest): Promise<CreateUserResponse>;
  /** Moves the account's expiry on the target where the target can enforce one. */
  renewUser(req: RenewUserRequest): Promise<RenewUserResponse>;
  /**
   * Removes the account. Idempotent (already gone is success) and best-effort: it strips as much
   * access as it can (no new logins, open sessions ended) even when a later step fails.
   */
  revokeUser(req: RevokeUserRequest): Promise<RevokeUserResponse>;
  /**
   * Removes many accounts (only when `capabilities.batchRevoke`). Each user's outcome is exactly what
   * `revokeUser` would have given for it: idempotent, best-effort, and one user's failure never fails
   * another's removal. Throws only when nothing could be attempted (the target is unreachable), which
   * counts as that error for every user.
   */
  revokeUsers?(req: RevokeUsersRequest): Promise<RevokeUsersResponse>;
  /** Sets a new secret on an existing account (DB: its password; IAM: a new access key). Idempotent. */
  setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult>;
  /**
   * Destroys a superseded secret that would otherwise keep working (IAM: old keys; databases: the
   * password of an account no longer current, replaced by one nobody knows, and its sessions).
   * Idempotent; an account that is gone is success.
   */
  retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse>;
  /**
   * Optional, for plugins that answer with `lateLogins`: ends the account's sessions that started
   * before `before` (the late logins of a replaced password; sessions opened since are left alone).
   * Throws when the target cannot be reached.
   */
  endSessionsStartedBefore?(req: EndSessionsStartedBeforeRequest): Promise<EndSessionsStartedBeforeResponse>;
  /**
   * Optional: makes every credential of the role issued before `before` stop working, for credentials
   * that cannot be revoked one by one (STS sessions). Throws a non-retryable PluginError with code
   * `not_supported` for roles it cannot do this for, and with code `role_not_in_account` when the role
   * names a target outside the account the connection's credentials reach (nothing is changed then).
   * Throws when nothing was changed; once something was, it returns, naming in `failed` what was not.
   */
  revokeSessions?(req: RevokeSessionsRequest): Promise<RevokeSessionsResponse>;
  /**
   * Optional: judges passwords by comparing, as the admin, each account's stored secret with the one
   * this plugin set (many accounts in one query), instead of logging in with each. Sound only where
   * the target authenticates these accounts by that stored secret alone (PostgreSQL: pg_hba asks for
   * a password; a `trust` line would let any password in); the plugin's README says what it relies on.
   * Throws when the target cannot be reached.
   */
  checkStoredPasswords?(req: CheckStoredPasswordsRequest): Promise<CheckStoredPasswordsResponse>;
  /** Logs in with the credential; `ok` when the target accepts it. Throws when the target cannot be reached. */
  verifyLogin(req: VerifyRequest): Promise<VerifyResponse>;
  /** Throws when the target cannot be reached. */
  ping(): Promise<PingResponse>;
  close(): Promise<void>;
}

export interface PluginFactory<C = unknown, R extends RoleSettings = RoleSettings> {
  readonly name: string;
  /** Schema of the connection block in the config file (without `plugin`). */
  readonly connectionSchema: ZodType<C>;
  /** Schema of the plugin-specific keys of a role (the shared keys are the broker's). */
  readonly roleSchema: ZodType<R>;
  create(connectionName: string, config: C): CredentialPlugin;
  /** A role's lease terms when they are not DEFAULT_LEASE_TERMS; checked against the role's TTLs at start-up. */
  leaseTerms?(role: R): LeaseTerms;
}
