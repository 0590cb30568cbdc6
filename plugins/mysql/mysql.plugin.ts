/**
 * The MySQL/MariaDB plugin: every verb of the contract on one pool. Longer than our usual file on
 * purpose: each verb's SQL is read and reviewed together, as the statements that touch a customer's
 * database (see README.md for where MySQL 8 and MariaDB differ).
 */
import mysql, { Pool, PoolConnection } from 'mysql2/promise';
import {
  AccountNotFoundError,
  CreateUserRequest,
  CreateUserResponse,
  CredentialPlugin,
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
import { AccountCreates, NewAccount } from './account-creates';
import { MysqlConnectionConfig, MysqlRoleSettings, mysqlConnectionSchema, mysqlRoleSchema } from './mysql.config';
import { LOGIN_REFUSED_ERRNO, MysqlError, OPERATION_FAILED_FOR_USER, PARSE_ERROR, isRetryable, isServerError, killSessionsOf } from './mysql-server';


/**
 * MySQL 8 and MariaDB accounts. Everything used here is common to both (CREATE USER, GRANT,
 * ALTER USER ... ACCOUNT LOCK, DROP USER IF EXISTS, information_schema.PROCESSLIST, KILL CONNECTION);
 * see README.md for where the two differ.
 */
export class MysqlPlugin implements CredentialPlugin {
  readonly maxUsernameLength = 32; // MySQL's limit (MariaDB allows 80)
  /** No per-account expiry time (MySQL's password expiry only forces a password change). */
  readonly capabilities: PluginCapabilities = { staticStrategies: ['single', 'alternating'], targetExpiry: false, keyOverlap: false, sessions: true, batchRevoke: true };
  private readonly pool: Pool;
  private readonly target: { host: string; port: number; database?: string };
  /** Whether the server has dual passwords (MySQL 8); learned at the first password change. */
  private dualPasswords?: boolean;
  /** Issue's CREATE USER + GRANTs of issues arriving together, in one query (see AccountCreates). */
  private readonly creates: AccountCreates;

  constructor(
    private readonly name: string,
    private readonly config: MysqlConnectionConfig,
  ) {
    const url = new URL(config.url.replace(/^mariadb:/, 'mysql:'));
    this.target = {
      host: decodeURIComponent(url.hostname) || '127.0.0.1',
      port: Number(url.port || 3306),
      database: decodeURIComponent(url.pathname.slice(1)) || undefined,
    };
    const options = {
      host: this.target.host,
      port: this.target.port,
      user: decodeURIComponent(url.username) || 'root',
      password: decodeURIComponent(url.password) || undefined,
      database: this.target.database,
      connectionLimit: config.pool_size,
      connectTimeout: config.connect_timeout * 1000,
    };
    this.pool = mysql.createPool({ ...options, multipleStatements: false });
    this.pool.on('connection', (conn) => conn.on('error', () => undefined));
    this.creates = new AccountCreates(options, (one) => this.createOne(one), (step, err, secrets) => this.translate(step, err, secrets));
  }

  /** 'user'@'host', each part quoted as a string literal the way MySQL names accounts. */
  private account(username: string): string {
    return `${mysql.escape(username)}@${mysql.escape(this.config.user_host)}`;
  }

  async createUser(req: CreateUserRequest): Promise<CreateUserResponse> {
    const role = req.role as MysqlRoleSettings;
    const account = this.account(req.username);
    const one = { account, password: req.password, grants: role.grants };
    if (role.creation_statements?.length) {
      await this.createOne({ ...one, statements: role.creation_statements.map((t) => renderTemplate(t, { name: account, password: mysql.escape(req.password) })) });
    } else {
      await this.creates.submit({ ...one, statements: [`CREATE USER ${account} IDENTIFIED BY ${mysql.escape(req.password)}`, ...role.grants.map((g) => `GRANT ${g} TO ${account}`)] });
    }
    return {
      credentials: {
        username: req.username,
        password: req.password,
        host: this.target.host,
        port: this.target.port,
        ...(this.target.database && { database: this.target.database }),
      },
    };
  }

  private async createOne({ account, password, statements }: NewAccount): Promise<void> {
    await this.run('create', [password], async (conn) => {
      try {
        for (const statement of statements) await conn.query(statement);
      } catch (err) {
        // MySQL DDL is not transactional: undo by hand before failing.
        await conn.query(`DROP USER IF EXISTS ${account}`).catch(() => undefined);
        throw err;
      }
    });
  }

  /** MySQL has no per-account expiry time to move; renew only checks the account is still there. */
  async renewUser(req: RenewUserRequest): Promise<RenewUserResponse> {
    const [rows] = await this.run('renew', [], (conn) =>
      conn.query('SELECT 1 FROM mysql.user WHERE User = ? AND Host = ?', [req.username, this.config.user_host]),
    );
    if (!(rows as unknown[]).length) throw new AccountNotFoundError(req.username);
    return {};
  }

  async revokeUser(req: RevokeUserRequest): Promise<RevokeUserResponse> {
    const role = req.role as MysqlRoleSettings;
    const account = this.account(req.username);
    await this.run('revoke', [], async (conn) => {
      // No new logins first, then end the open sessions, so nothing slips in between.
      try {
        await conn.query(`ALTER USER ${account} ACCOUNT LOCK`);
      } catch (err) {
        if ((err as MysqlError).errno === OPERATION_FAILED_FOR_USER) return; // already gone
        throw err;
      }
      await killSessionsOf(conn, [req.username]);
      for (const statement of role.revocation_statements ?? []) await conn.query(renderTemplate(statement, { name: account }));
      await conn.query(`DROP USER IF EXISTS ${account}`);
    });
    return {};
  }

  /**
   * Many accounts in a few round trips: which exist; one ALTER USER locking them all; their sessions
   * ended (one process-list query for all, repeated until they are gone); each role's own revocation
   * statements; one DROP USER for all. Where a shared statement fails, each account goes its own way
   * (`revokeUser`, or one DROP USER each), so one account never fails another.
   */
  async revokeUsers(req: RevokeUsersRequest): Promise<RevokeUsersResponse> {
    const failed = new Map<string, PluginError>();
    const roles = new Map(req.users.map((u) => [u.username, u.role as MysqlRoleSettings]));
    let eachOnItsOwn: string[] = [];
    await this.run('revoke', [], async (conn) => {
      const [rows] = await conn.query('SELECT User AS user FROM mysql.user WHERE Host = ? AND User IN (?)', [this.config.user_host, [...roles.keys()]]);
      // Gone already (another revoker got there first, or never created) is success.
      let live = [...new Set((rows as { user: string | Buffer }[]).map((r) => String(r.user)))].filter((u) => roles.has(u));
      if (!live.length) return;
      try {
        await conn.query(`ALTER USER IF EXISTS ${live.map((u) => this.account(u)).join(', ')} ACCOUNT LOCK`);
      } catch (err) {
        if (!isServerError(err)) throw err;
        eachOnItsOwn = live; // once this connection is back in the pool
        return;
      }
      for (let attempt = 0; ; attempt++) {
        const left = await killSessionsOf(conn, live);
        if (!left.size) break;
        if (attempt >= 50) {
          for (const u of left) failed.set(u, new PluginError(`mysql ${this.name}: sessions of ${u} did not end`, true));
          break;
        }
        await new Promise((r) => setTimeout(r, 20 * Math.min(attempt + 1, 5)));
      }
      for (const username of live) {
        if (failed.has(username)) continue;
        const account = this.account(username);
        try {
          for (const statement of roles.get(username)!.revocation_statements ?? []) await conn.query(renderTemplate(statement, { name: account }));
        } catch (err) {
          if (!isServerError(err)) throw err;
          failed.set(username, this.translate('revoke', err, []));
        }
      }
      live = live.filter((u) => !failed.has(u));
      if (!live.length) return;
      try {
        await conn.query(`DROP USER IF EXISTS ${live.map((u) => this.account(u)).join(', ')}`);
      } catch (err) {
        if (!isServerError(err)) throw err;
        for (const username of live) {
          await conn.query(`DROP USER IF EXISTS ${this.account(username)}`).catch((e: unknown) => {
            if (!isServerError(e)) throw e;
            failed.set(username, this.translate('revoke', e, []));
          });
        }
      }
    });
    for (const username of eachOnItsOwn) {
      await this.revokeUser({ username, role: roles.get(username)! }).catch((e: unknown) => failed.set(username, this.translate('revoke', e, [])));
    }
    const results: RevokeUserOutcome[] = req.users.map((u) => {
      const error = failed.get(u.username);
      return error ? { username: u.username, ok: false, error } : { username: u.username, ok: true };
    });
    return { results };
  }

  /** A configured account is "name" (host from user_host) or "name@host". */
  private staticAccount(account: string): { user: string; host: string } {
    const at = account.lastIndexOf('@');
    return at > 0 ? { user: account.slice(0, at), host: account.slice(at + 1) } : { user: account, host: this.config.user_host };
  }

  async setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult> {
    const { user } = this.staticAccount(req.account);
    if (req.apply !== false) {
      await this.setPassword('rotate', req.account, req.password, { missingIsGone: false });
      if (req.endSessions) await this.endSessions(user);
    }
    return {
      credentials: {
        username: user,
        password: req.password,
        host: this.target.host,
        port: this.target.port,
        ...(this.target.database && { database: this.target.database }),
      },
      verify: { username: user, password: req.password },
    };
  }

  /** An account has one password: retiring it means replacing it with one nobody knows, and ending its sessions. */
  async retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse> {
    if (req.password !== undefined && !(await this.setPassword('retire', req.account, req.password, { missingIsGone: true }))) return {};
    if (req.endSessions) await this.endSessions(this.staticAccount(req.account).user);
    return {};
  }

  /** False when the account is gone and that is acceptable. */
  private async setPassword(step: string, account: string, password: string, opts: { missingIsGone: boolean }): Promise<boolean> {
    const { user, host } = this.staticAccount(account);
    return this.run(step, [password], async (conn) => {
      try {
        const account = `${mysql.escape(user)}@${mysql.escape(host)}`;
        await conn.query(`ALTER USER ${account} IDENTIFIED BY ${mysql.escape(password)}`);
        // MySQL 8 keeps a secondary password for an account that used RETAIN CURRENT PASSWORD (dual
        // passwords): drop it, or the old one keeps logging in. MariaDB has no such thing and no syntax.
        if (this.dualPasswords !== false) {
          await conn.query(`ALTER USER ${account} DISCARD OLD PASSWORD`).then(
            () => (this.dualPasswords = true),
            (err: MysqlError) => {
              if (err.errno !== PARSE_ERROR) throw err;
              this.dualPasswords = false;
            },
          );
        }
        return true;
      } catch (err) {
        if ((err as MysqlError).errno === OPERATION_FAILED_FOR_USER) {
          if (opts.missingIsGone) return false;
          throw new AccountNotFoundError(account);
        }
        throw err;
      }
    });
  }

  /**
   * Ends every session of the user name (the process list does not say which host part an account
   * matched, so every account of that name is cut off) and waits until they are gone.
   */
  private async endSessions(user: string): Promise<void> {
    await this.run('end sessions', [], async (conn) => {
      for (let attempt = 0; (await killSessionsOf(conn, [user])).size > 0; attempt++) {
        if (attempt >= 50) throw new PluginError(`mysql ${this.name}: sessions of ${user} did not end`, true);
        await new Promise((r) => setTimeout(r, 20 * Math.min(attempt + 1, 5)));
      }
    });
  }

  async verifyLogin(req: VerifyRequest): Promise<VerifyResponse> {
    let conn: mysql.Connection | undefined;
    try {
      conn = await mysql.createConnection({
        host: this.target.host,
        port: this.target.port,
        user: req.username,
        password: req.password,
        connectTimeout: this.config.connect_timeout * 1000,
      });
      conn.on('error', () => undefined);
      await conn.query('SELECT 1');
      return { ok: true };
    } catch (err) {
      if (LOGIN_REFUSED_ERRNO.has((err as MysqlError).errno ?? 0)) return { ok: false };
      throw this.translate('verify', err, [req.password]);
    } finally {
      await conn?.end().catch(() => undefined);
    }
  }

  async ping(): Promise<PingResponse> {
    await this.run('ping', [], (conn) => conn.query('SELECT 1'));
    return {};
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.creates.close()]);
  }

  private async run<T>(step: string, secrets: string[], fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
    let conn: PoolConnection;
    try {
      conn = await this.pool.getConnection();
    } catch (err) {
      throw this.translate(step, err, secrets);
    }
    let broken = false;
    try {
      return await fn(conn);
    } catch (err) {
      broken = isRetryable(err);
      throw this.translate(step, err, secrets);
    } finally {
      if (broken) conn.destroy();
      else conn.release();
    }
  }

  /** Error code and server message only: never the statement (mysql2 puts it, password included, in err.sql). */
  private translate(step: string, err: unknown, secrets: string[]): PluginError {
    if (err instanceof PluginError) return err;
    const e = err as MysqlError;
    let text = e.sqlMessage ? `${e.code} ${e.sqlMessage}` : `cannot reach the server (${e.code ?? 'error'})`;
    for (const secret of secrets) text = text.split(secret).join('[redacted]');
    return new PluginError(`mysql ${this.name}: ${step} failed: ${text}`, isRetryable(err));
  }
}

export const mysqlPlugin: PluginFactory<MysqlConnectionConfig, MysqlRoleSettings> = {
  name: 'mysql',
  connectionSchema: mysqlConnectionSchema,
  roleSchema: mysqlRoleSchema,
  create: (connectionName, config) => new MysqlPlugin(connectionName, config),
};
