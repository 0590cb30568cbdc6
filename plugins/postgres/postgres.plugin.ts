/**
 * The PostgreSQL plugin: every verb of the contract on one pool. Longer than our usual file on purpose:
 * each verb's SQL (issue, revoke alone and in batches, static secrets, sessions) is read and reviewed
 * together, as the statements that touch a customer's database.
 */
import { DatabaseError, Pool, PoolClient, escapeIdentifier, escapeLiteral } from 'pg';
import {
  AccountNotFoundError,
  CheckStoredPasswordsRequest,
  CheckStoredPasswordsResponse,
  CreateUserRequest,
  CreateUserResponse,
  CredentialPlugin,
  EndSessionsStartedBeforeRequest,
  EndSessionsStartedBeforeResponse,
  LateLogins,
  PluginError,
  PingResponse,
  PluginCapabilities,
  PluginFactory,
  RenewUserRequest,
  RenewUserResponse,
  RetireStaticSecretRequest,
  RetireStaticSecretResponse,
  RevokeUserRequest,
  RevokeUserOutcome,
  RevokeUserResponse,
  RevokeUsersRequest,
  RevokeUsersResponse,
  SetStaticSecretRequest,
  StaticSecretResult,
  VerifyRequest,
  VerifyResponse,
  renderTemplate,
} from '../contract';
import {
  PostgresConnectionConfig,
  PostgresRoleSettings,
  postgresConnectionSchema,
  postgresRoleSchema,
} from './postgres.config';
import {
  RETRYABLE_SQLSTATE,
  dropRole,
  UNDEFINED_OBJECT,
  endSessionsOf,
  lateSessionSweeps,
  openPool,
  sessionEndBatches,
  statementBatches,
  targetOf,
  translatePgError,
} from './postgres-server';
import { hbaDigestReader, observedLogin, sessionFactsReads, storedPasswordReads } from './proofs';
import { scramSha256Verifier } from './scram';
import { SetVerifiers } from './set-verifiers';

export class PostgresPlugin implements CredentialPlugin {
  readonly maxUsernameLength = 63;
  readonly capabilities: PluginCapabilities = { staticStrategies: ['single', 'alternating'], targetExpiry: true, keyOverlap: false, sessions: true, batchRevoke: true };
  private readonly pool: Pool;
  private readonly target: { host: string; port: number; database: string };
  /** Issue's CREATE ROLE statements of issues arriving together, in one query (see statementBatches). */
  private readonly creates = statementBatches((sql) => this.run('create', (client) => client.query(sql)));
  /** The verifiers set on static accounts, to prove from pg_authid which password they accept. */
  private readonly setVerifiers: SetVerifiers;
  /** The pg_hba digests verify logins are read between (and the pg_authid checks reuse). */
  private readonly hbaDigest = hbaDigestReader((fn) => this.run('verify', fn));
  /** pg_authid read for the checks of rotations running together, in one query. */
  private readonly storedReads = storedPasswordReads((fn) => this.run('check passwords', fn), this.hbaDigest);
  /** The session facts of verify logins, read by the admin while they are connected. */
  private readonly sessionFacts = sessionFactsReads((fn) => this.run('verify', fn), this.hbaDigest);
  /** Sessions of roles whose password changed together, ended in one query. */
  private readonly sessionEnds: ReturnType<typeof sessionEndBatches>;
  /** Late-login sweeps due together, in one query. */
  private readonly lateSweeps: ReturnType<typeof lateSessionSweeps>;

  constructor(
    private readonly name: string,
    private readonly config: PostgresConnectionConfig,
  ) {
    this.setVerifiers = new SetVerifiers(config.verify_logins);
    this.sessionEnds = sessionEndBatches(name, (fn) => this.run('end sessions', fn));
    this.lateSweeps = lateSessionSweeps(name, (fn) => this.run('end late sessions', fn));
    this.target = targetOf(config.url);
    this.pool = openPool(name, config);
  }

  async createUser(req: CreateUserRequest): Promise<CreateUserResponse> {
    const role = req.role as PostgresRoleSettings;
    const verifier = await scramSha256Verifier(req.password, this.config.scram_iterations);
    const values = {
      name: escapeIdentifier(req.username),
      password: escapeLiteral(verifier),
      expiration: escapeLiteral(req.expiresAt.toISOString()),
    };
    const statements = role.creation_statements ?? [];
    if (!statements.length) {
      const inRole = role.member_of.length ? ` IN ROLE ${role.member_of.map((r) => escapeIdentifier(r)).join(', ')}` : '';
      await this.creates.submit(`CREATE ROLE ${values.name} WITH LOGIN PASSWORD ${values.password} VALID UNTIL ${values.expiration}${inRole}`);
    } else {
      await this.run('create', async (client) => {
        // DDL is transactional in PostgreSQL: a failing statement undoes the ones before it.
        await client.query('BEGIN');
        try {
          for (const statement of statements) await client.query(renderTemplate(statement, values));
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      });
    }
    return {
      credentials: {
        username: req.username,
        password: req.password,
        host: this.target.host,
        port: this.target.port,
        database: this.target.database,
      },
    };
  }

  async renewUser(req: RenewUserRequest): Promise<RenewUserResponse> {
    await this.run('renew', async (client) => {
      try {
        await client.query(`ALTER ROLE ${escapeIdentifier(req.username)} VALID UNTIL ${escapeLiteral(req.expiresAt.toISOString())}`);
      } catch (err) {
        if (err instanceof DatabaseError && err.code === UNDEFINED_OBJECT) throw new AccountNotFoundError(req.username);
        throw err;
      }
    });
    return {};
  }

  async revokeUser(req: RevokeUserRequest): Promise<RevokeUserResponse> {
    const role = req.role as PostgresRoleSettings;
    const name = escapeIdentifier(req.username);
    await this.run('revoke', async (client) => {
      try {
        // First stop new logins, then end open sessions, so nothing slips in between: one round
        // trip (a simple-protocol batch), committed before anything that might fail.
        const user = escapeLiteral(req.username);
        await client.query(`ALTER ROLE ${name} NOLOGIN VALID UNTIL '-infinity'; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${user}`);
        for (const statement of role.revocation_statements ?? []) {
          await client.query(renderTemplate(statement, { name }));
        }
        // DROP OWNED only when the role owns objects or holds privileges here (a third of the cost).
        await dropRole(client, req.username);
      } catch (err) {
        // Gone at any step (another revoker got there first) is success.
        if (err instanceof DatabaseError && err.code === UNDEFINED_OBJECT) return;
        throw err;
      }
    });
    return {};
  }

  /**
   * Many roles in a few round trips, whatever their number: which exist; no more logins for all of
   * them (one simple-protocol batch of ALTER ROLE, committed before anything that might fail); their
   * sessions ended (one query for all, repeated until they are gone); each role's own revocation
   * statements; one DROP ROLE for all. Where a shared step fails, each role goes its own way (a
   * failed batch of ALTERs: `revokeUser` for each; a failed DROP: one DROP, with DROP OWNED when
   * needed, per role), so one role never fails another.
   */
  async revokeUsers(req: RevokeUsersRequest): Promise<RevokeUsersResponse> {
    const failed = new Map<string, PluginError>();
    const roles = new Map(req.users.map((u) => [u.username, u.role as PostgresRoleSettings]));
    const names = [...roles.keys()];
    let eachOnItsOwn: string[] = [];
    await this.run('revoke', async (client) => {
      const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [names]);
      // Gone already (another revoker got there first, or never created) is success.
      let live = rows.map((r) => r.rolname);
      if (!live.length) return;
      try {
        await client.query(live.map((n) => `ALTER ROLE ${escapeIdentifier(n)} NOLOGIN VALID UNTIL '-infinity';`).join(' '));
      } catch (err) {
        if (!(err instanceof DatabaseError)) throw err;
        // The batch is one implicit transaction: nothing of it happened. Each role on its own, once
        // this connection is back in the pool.
        eachOnItsOwn = live;
        return;
      }
      for (const [username, error] of await endSessionsOf(client, this.name, live)) failed.set(username, error);
      for (const username of live) {
        if (failed.has(username)) continue;
        const name = escapeIdentifier(username);
        try {
          for (const statement of roles.get(username)!.revocation_statements ?? []) await client.query(renderTemplate(statement, { name }));
        } catch (err) {
          if (!(err instanceof DatabaseError)) throw err;
          if (err.code !== UNDEFINED_OBJECT) failed.set(username, this.translate('revoke', err));
        }
      }
      live = live.filter((n) => !failed.has(n));
      if (!live.length) return;
      try {
        await client.query(`DROP ROLE IF EXISTS ${live.map((n) => escapeIdentifier(n)).join(', ')}`);
      } catch (err) {
        if (!(err instanceof DatabaseError)) throw err;
        // One role owns objects, or something else failed: nothing was dropped. Each role on its own.
        for (const username of live) {
          await dropRole(client, username).catch((e: unknown) => {
            if (!(e instanceof DatabaseError)) throw e;
            failed.set(username, this.translate('revoke', e));
          });
        }
      }
    });
    for (const username of eachOnItsOwn) {
      await this.revokeUser({ username, role: roles.get(username)! }).catch((e: unknown) => failed.set(username, this.translate('revoke', e)));
    }
    const results: RevokeUserOutcome[] = req.users.map((u) => {
      const error = failed.get(u.username);
      return error ? { username: u.username, ok: false, error } : { username: u.username, ok: true };
    });
    return { results };
  }

  async setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult> {
    let lateLogins: LateLogins | undefined;
    if (req.apply !== false) {
      await this.setPassword('rotate', req.account, req.password, { missingIsGone: false });
      if (req.endSessions) lateLogins = await this.endSessions(req.account);
    }
    return {
      credentials: { username: req.account, password: req.password, host: this.target.host, port: this.target.port, database: this.target.database },
      verify: { username: req.account, password: req.password },
      ...(lateLogins && { lateLogins }),
    };
  }

  /** A role has one password: retiring it means replacing it with one nobody knows, and ending its sessions. */
  async retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse> {
    if (req.password !== undefined && !(await this.setPassword('retire', req.account, req.password, { missingIsGone: true }))) return {};
    return req.endSessions ? { lateLogins: await this.endSessions(req.account) } : {};
  }

  async endSessionsStartedBefore(req: EndSessionsStartedBeforeRequest): Promise<EndSessionsStartedBeforeResponse> {
    return { ended: await this.lateSweeps.submit(req) };
  }

  /** ALTER ROLE with a verifier computed here (and remembered). False when the role is gone and that is acceptable. */
  private async setPassword(step: string, account: string, password: string, opts: { missingIsGone: boolean }): Promise<boolean> {
    const verifier = await scramSha256Verifier(password, this.config.scram_iterations);
    // Until the ALTER is known to have happened (or not), what the role stores is unknown.
    this.setVerifiers.forget(account);
    return this.run(step, async (client) => {
      try {
        await client.query(`ALTER ROLE ${escapeIdentifier(account)} WITH PASSWORD ${escapeLiteral(verifier)}`);
        this.setVerifiers.remember(account, password, verifier);
        return true;
      } catch (err) {
        if (err instanceof DatabaseError && err.code === UNDEFINED_OBJECT) {
          if (opts.missingIsGone) return false;
          throw new AccountNotFoundError(account);
        }
        throw err;
      }
    });
  }

  /**
   * One read for all the roles, judged by SetVerifiers (which says what a verdict needs). `accepted`
   * only while the role can log in (LOGIN, not past VALID UNTIL); nothing readable: `unknown` for all.
   */
  async checkStoredPasswords(req: CheckStoredPasswordsRequest): Promise<CheckStoredPasswordsResponse> {
    const roles = [...new Set(req.checks.map((c) => c.account))];
    const stored = await this.storedReads.submit(roles);
    const results = req.checks.map((c) => {
      const row = stored.roles.get(c.account);
      const verdict = this.setVerifiers.judge(c.account, c.password, row?.rolpassword, row && stored.facts && { ...stored.facts, roleOid: row.role_oid });
      return verdict === 'accepted' && !row?.can_login ? 'unknown' : verdict;
    });
    return { results };
  }

  /** Ends every session of the role and waits until they are gone (see endSessionsOf); the late logins to end later. */
  private async endSessions(account: string): Promise<LateLogins> {
    const { error, late } = await this.sessionEnds.submit(account);
    if (error) throw error;
    return late;
  }

  async verifyLogin(req: VerifyRequest): Promise<VerifyResponse> {
    let login: Awaited<ReturnType<typeof observedLogin>>;
    try {
      login = await observedLogin(this.config.url, req, this.config.connect_timeout * 1000, this.hbaDigest, (peer) => this.sessionFacts.submit(peer));
    } catch (err) {
      throw this.translate('verify', err);
    }
    if (!login.ok) {
      this.setVerifiers.loginRefused(req.username);
      return { ok: false };
    }
    this.setVerifiers.loginSeen(req.username, req.password, login.scram, login.seen);
    return { ok: true };
  }

  async ping(): Promise<PingResponse> {
    await this.run('ping', (client) => client.query('SELECT 1'));
    return {};
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async run<T>(step: string, fn: (client: PoolClient) => Promise<T>): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw this.translate(step, err);
    }
    let broken = false;
    try {
      return await fn(client);
    } catch (err) {
      broken = !(err instanceof DatabaseError) || RETRYABLE_SQLSTATE.test(err.code ?? '');
      throw this.translate(step, err);
    } finally {
      client.release(broken);
    }
  }

  private translate(step: string, err: unknown): PluginError {
    return translatePgError(this.name, step, err);
  }
}

export const postgresPlugin: PluginFactory<PostgresConnectionConfig, PostgresRoleSettings> = {
  name: 'postgres',
  connectionSchema: postgresConnectionSchema,
  roleSchema: postgresRoleSchema,
  create: (connectionName, config) => new PostgresPlugin(connectionName, config),
};
