/**
 * The Redis plugin: one ACL user per lease, on one admin connection (ioredis). Redis only ever receives
 * SHA-256 hashes of passwords (`#<hex>`), never a password to store; every rule is its own argument.
 */
import Redis from 'ioredis';
import { isIP } from 'node:net';
import {
  AccountNotFoundError,
  CreateUserRequest,
  CreateUserResponse,
  CredentialPlugin,
  PingResponse,
  PluginCapabilities,
  PluginError,
  PluginFactory,
  RenewUserRequest,
  RenewUserResponse,
  RetireStaticSecretRequest,
  RetireStaticSecretResponse,
  RevokeUserOutcome,
  RevokeUserRequest,
  RevokeUserResponse,
  RevokeUsersRequest,
  RevokeUsersResponse,
  SetStaticSecretRequest,
  StaticSecretResult,
  VerifyRequest,
  VerifyResponse,
} from '../contract';
import { NO_ADMIN_RULES, parseAcl } from './redis-acl';
import { REDIS_USERNAME, RedisConnectionConfig, RedisRoleSettings, redisConnectionSchema, redisRoleSchema, staticUserProblem, untouchableUsers } from './redis.config';
import { NO_SUCH_USER, WRONGPASS, isReply, passwordHash, targetOf, translateRedisError } from './redis-server';

/** How many users one ACL DELUSER removes in a batch revoke. */
const DELETE_CHUNK = 500;

export class RedisPlugin implements CredentialPlugin {
  readonly maxUsernameLength = 64;
  /** Redis users have no expiry time: renewing moves nothing, and the broker's revoke is the expiry. */
  readonly capabilities: PluginCapabilities = { staticStrategies: ['single', 'alternating'], targetExpiry: false, keyOverlap: false, sessions: true, batchRevoke: true };
  private readonly admin: Redis;
  private readonly target: { host: string; port: number; tls: boolean };
  /** Users that are never a lease user nor a static secret. */
  private readonly untouchable: Set<string>;
  /** The first connection attempt, which every caller meanwhile awaits. */
  private connecting: Promise<void> | undefined;

  constructor(
    private readonly name: string,
    private readonly config: RedisConnectionConfig,
  ) {
    this.target = targetOf(config.url);
    this.untouchable = untouchableUsers(config);
    // A command runs at most once, and never after its caller was told it failed: nothing sent is
    // sent again after a reconnect (a replayed ACL SETUSER would re-create a user its cleanup deleted),
    // and nothing waits in a queue while the connection is down (a command that timed out there would
    // still run once it is back). A command on a lost connection fails, retryably.
    this.admin = new Redis(config.url, {
      lazyConnect: true,
      enableReadyCheck: false, // INFO needs rights the admin does not otherwise need
      autoResendUnfulfilledCommands: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: config.connect_timeout * 1000,
      commandTimeout: config.command_timeout * 1000 || undefined,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    });
    // A lost connection must not crash the process; commands fail (retryably) and ioredis reconnects.
    this.admin.on('error', () => undefined);
  }

  async createUser(req: CreateUserRequest): Promise<CreateUserResponse> {
    const username = this.leaseUser(req.username);
    const role = req.role as RedisRoleSettings;
    const parsed = parseAcl(role.acl ?? '', { allowAdmin: role.allow_admin === true });
    if ('problem' in parsed) throw new PluginError(`redis ${this.name}: the role's acl is refused: ${parsed.problem}`, false);
    const hash = passwordHash(req.password);
    // One ACL SETUSER, which Redis applies all or nothing: start from nothing (reset: off, no
    // password, no keys, channels or commands), the role's rules, then the hash, and only then on.
    const args = ['SETUSER', username, 'reset', 'resetchannels', ...parsed.rules, ...(role.allow_admin ? [] : NO_ADMIN_RULES), `#${hash}`, 'on'];
    try {
      await (await this.connected()).call('ACL', ...args);
    } catch (err) {
      // Servers that apply rules one by one (Redis 6.0) may have made the user: undo it.
      await this.admin.call('ACL', 'DELUSER', username).catch(() => undefined);
      throw this.translate('create', err, [req.password, hash]);
    }
    return { credentials: this.credentials(username, req.password) };
  }

  /** Nothing to move (no target-side expiry); renew only checks the user is still there. */
  async renewUser(req: RenewUserRequest): Promise<RenewUserResponse> {
    const username = this.leaseUser(req.username);
    if (!(await this.exists('renew', username))) throw new AccountNotFoundError(username);
    return {};
  }

  async revokeUser(req: RevokeUserRequest): Promise<RevokeUserResponse> {
    const username = this.leaseUser(req.username);
    // ACL DELUSER first (no new logins; Redis also drops the user's clients), then CLIENT KILL USER
    // for any connection still open, in one round trip. A user already gone is success.
    const replies = await this.pipeline('revoke', (p) => p.call('ACL', 'DELUSER', username).call('CLIENT', 'KILL', 'USER', username));
    const [deleted, killed] = replies;
    if (deleted[0]) throw this.translate('revoke', deleted[0], []);
    if (killed[0] && !NO_SUCH_USER.test(killed[0].message)) throw this.translate('revoke', killed[0], []);
    return {};
  }

  /**
   * Many users in one round trip per chunk: one ACL DELUSER for all, then CLIENT KILL USER for each.
   * Names outside the namespace fail on their own; if the shared ACL DELUSER is refused, each user
   * goes its own way (`revokeUser`), so one user never fails another.
   */
  async revokeUsers(req: RevokeUsersRequest): Promise<RevokeUsersResponse> {
    const failed = new Map<string, PluginError>();
    const names: string[] = [];
    for (const u of req.users) {
      try {
        names.push(this.leaseUser(u.username));
      } catch (err) {
        failed.set(u.username, err as PluginError);
      }
    }
    const unique = [...new Set(names)];
    for (let i = 0; i < unique.length; i += DELETE_CHUNK) {
      const chunk = unique.slice(i, i + DELETE_CHUNK);
      const replies = await this.pipeline('revoke', (p) => {
        p.call('ACL', 'DELUSER', ...chunk);
        for (const username of chunk) p.call('CLIENT', 'KILL', 'USER', username);
        return p;
      });
      if (replies[0][0]) {
        if (!isReply(replies[0][0])) throw this.translate('revoke', replies[0][0], []);
        for (const username of chunk) {
          await this.revokeUser({ username, role: {} }).catch((e: unknown) => failed.set(username, this.translate('revoke', e, [])));
        }
        continue;
      }
      chunk.forEach((username, j) => {
        const killError = replies[j + 1][0];
        if (killError && !NO_SUCH_USER.test(killError.message)) failed.set(username, this.translate('revoke', killError, []));
      });
    }
    const results: RevokeUserOutcome[] = req.users.map((u) => {
      const error = failed.get(u.username);
      return error ? { username: u.username, ok: false, error } : { username: u.username, ok: true };
    });
    return { results };
  }

  /** `single` and each account of `alternating`: the account's passwords replaced by one hash. */
  async setStaticSecret(req: SetStaticSecretRequest): Promise<StaticSecretResult> {
    const username = this.staticUser(req.account);
    if (req.apply !== false) {
      if (!(await this.setPassword('rotate', username, req.password))) throw new AccountNotFoundError(username);
      if (req.endSessions) await this.endSessions(username);
    }
    return { credentials: this.credentials(username, req.password), verify: { username, password: req.password } };
  }

  /** A user has one password here: retiring replaces it with one nobody knows, and ends its sessions. */
  async retireStaticSecret(req: RetireStaticSecretRequest): Promise<RetireStaticSecretResponse> {
    const username = this.staticUser(req.account);
    if (req.password !== undefined && !(await this.setPassword('retire', username, req.password))) return {};
    if (req.endSessions) await this.endSessions(username);
    return {};
  }

  /**
   * `ACL SETUSER name resetpass #<hash>` for an existing user; false when the user does not exist
   * (ACL SETUSER would create it, so the plugin asks first).
   */
  private async setPassword(step: string, username: string, password: string): Promise<boolean> {
    if (!(await this.exists(step, username))) return false;
    const hash = passwordHash(password);
    try {
      await (await this.connected()).call('ACL', 'SETUSER', username, 'resetpass', `#${hash}`);
    } catch (err) {
      throw this.translate(step, err, [password, hash]);
    }
    return true;
  }

  private async endSessions(username: string): Promise<void> {
    try {
      await (await this.connected()).call('CLIENT', 'KILL', 'USER', username);
    } catch (err) {
      if (!(isReply(err) && NO_SUCH_USER.test(err.message))) throw this.translate('end sessions', err, []);
    }
  }

  /** AUTH on a fresh connection that is never used for anything else. */
  async verifyLogin(req: VerifyRequest): Promise<VerifyResponse> {
    const conn = new Redis({
      host: this.target.host,
      port: this.target.port,
      ...(this.target.tls && { tls: isIP(this.target.host) ? {} : { servername: this.target.host } }),
      lazyConnect: true,
      enableReadyCheck: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: this.config.connect_timeout * 1000,
    });
    conn.on('error', () => undefined);
    try {
      await conn.connect();
      await conn.call('AUTH', req.username, req.password);
      return { ok: true };
    } catch (err) {
      if (isReply(err) && WRONGPASS.test(err.message)) return { ok: false };
      throw this.translate('verify', err, [req.password]);
    } finally {
      conn.disconnect();
    }
  }

  async ping(): Promise<PingResponse> {
    try {
      await (await this.connected()).ping();
    } catch (err) {
      throw this.translate('ping', err, []);
    }
    return {};
  }

  async close(): Promise<void> {
    // QUIT only on a live connection: a closed or reconnecting one would wait for a server that is gone.
    if (this.admin.status !== 'ready') return this.admin.disconnect();
    await this.admin.quit().catch(() => this.admin.disconnect());
  }

  /**
   * The admin connection, opened on first use. While it is down later, commands fail at once (there
   * is no offline queue) and ioredis reconnects in the background.
   */
  private async connected(): Promise<Redis> {
    if (this.admin.status === 'wait') {
      this.connecting ??= this.admin.connect().finally(() => {
        this.connecting = undefined;
      });
    }
    if (this.connecting) await this.connecting;
    if (this.admin.status !== 'ready') throw new Error(`the connection is ${this.admin.status}`);
    return this.admin;
  }

  private credentials(username: string, password: string): Record<string, string | number> {
    return { username, password, host: this.target.host, port: this.target.port, ...(this.target.tls && { tls: 'true' }) };
  }

  private async exists(step: string, username: string): Promise<boolean> {
    try {
      return (await (await this.connected()).call('ACL', 'GETUSER', username)) !== null;
    } catch (err) {
      throw this.translate(step, err, []);
    }
  }

  /** A lease user: inside the namespace, and a plain name. Anything else is never sent to Redis. */
  private leaseUser(username: string): string {
    if (!REDIS_USERNAME.test(username)) throw new PluginError(`redis ${this.name}: refused a user name that is not 1-128 letters, digits, "_", ".", "@", ":" or "-"`, false);
    if (!username.startsWith(this.config.user_prefix) || this.untouchable.has(username)) {
      throw new PluginError(`redis ${this.name}: refused user ${username}: lease users are named ${this.config.user_prefix}…`, false);
    }
    return username;
  }

  /** A static secret's user: a plain name, never `default`, the admin or a protected user (also checked at config load). */
  private staticUser(account: string): string {
    const problem = staticUserProblem(this.config, account);
    if (problem) throw new PluginError(`redis ${this.name}: refused a static secret's user: it ${problem}`, false);
    return account;
  }

  /** Runs commands in one round trip; each command's [error, reply]. Throws when the round trip itself fails. */
  private async pipeline(step: string, build: (p: ReturnType<Redis['pipeline']>) => ReturnType<Redis['pipeline']>): Promise<[Error | null, unknown][]> {
    let replies: [Error | null, unknown][] | null;
    try {
      replies = await build((await this.connected()).pipeline()).exec();
    } catch (err) {
      throw this.translate(step, err, []);
    }
    if (!replies) throw new PluginError(`redis ${this.name}: ${step} failed: no reply`, true);
    return replies;
  }

  private translate(step: string, err: unknown, secrets: readonly string[]): PluginError {
    return translateRedisError(this.name, step, err, secrets);
  }
}

export const redisPlugin: PluginFactory<RedisConnectionConfig, RedisRoleSettings> = {
  name: 'redis',
  connectionSchema: redisConnectionSchema,
  roleSchema: redisRoleSchema,
  create: (connectionName, config) => new RedisPlugin(connectionName, config),
};
