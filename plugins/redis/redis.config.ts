import { z } from 'zod';
import { durationSeconds } from '../contract';
import { parseAcl } from './redis-acl';

/** The user names the plugin acts on: one word as ACL files and `ACL LIST` write it, ASCII only. */
export const REDIS_USERNAME = /^[A-Za-z0-9_.@:-]{1,128}$/;
/** The user every Redis has; it is never a lease user nor a static secret. */
export const DEFAULT_USER = 'default';

/** The admin user a redis:// URL names (no user: `default`). */
export function adminUserOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || DEFAULT_USER;
  } catch {
    return DEFAULT_USER;
  }
}

/** Users a connection never makes a lease user nor a static secret: `default`, the admin, protected_users. */
export function untouchableUsers(config: RedisConnectionConfig): Set<string> {
  return new Set([DEFAULT_USER, adminUserOf(config.url), ...config.protected_users]);
}

/**
 * Why a static secret may not name this user, or undefined when it may. Static secrets may name any
 * user but the untouchable ones; they need not be in the lease namespace (they are existing users).
 */
export function staticUserProblem(config: RedisConnectionConfig, username: string): string | undefined {
  if (!REDIS_USERNAME.test(username)) return 'must be 1-128 letters, digits, "_", ".", "@", ":" or "-"';
  if (username === DEFAULT_USER) return 'must not be "default": the default user is never a static secret';
  if (username === adminUserOf(config.url)) return `must not be "${username}": the admin user of the connection's url is never a static secret`;
  if (config.protected_users.includes(username)) return `must not be "${username}": protected users are never static secrets`;
  return undefined;
}

export const redisConnectionSchema = z
  .object({
    /** An admin able to run ACL SETUSER, ACL DELUSER, ACL GETUSER and CLIENT KILL. */
    url: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL'),
    /**
     * The namespace of lease users: the plugin creates, renews and deletes only users whose names
     * start with it. The broker names lease accounts `tsr_<role>_…`, so this is `tsr_` or narrower.
     */
    user_prefix: z.string().regex(/^[A-Za-z0-9_.:-]{2,32}$/, 'must be 2-32 letters, digits, "_", ".", ":" or "-"').default('tsr_'),
    /** Users the plugin must never touch besides `default` and the admin (e.g. the broker's queue user). */
    protected_users: z.array(z.string().regex(REDIS_USERNAME, 'must be a Redis user name')).default([]),
    connect_timeout: durationSeconds.default(5),
    command_timeout: durationSeconds.default(15),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const user of [DEFAULT_USER, adminUserOf(c.url), ...c.protected_users]) {
      if (user.startsWith(c.user_prefix)) {
        ctx.addIssue({ code: 'custom', path: ['user_prefix'], message: `must not be a prefix of the user "${user}", which lease users must never be` });
      }
    }
  });
export type RedisConnectionConfig = z.infer<typeof redisConnectionSchema>;

export const redisRoleSchema = z
  .object({
    /** ACL rules, e.g. "~cache:* +get +mget"; see README.md for what is accepted. Default: no access. */
    acl: z.string().default(''),
    /** Lets `acl` grant administration (+@admin, +@dangerous, +acl, +config, ...). */
    allow_admin: z.boolean().default(false),
  })
  .strict()
  .superRefine((role, ctx) => {
    const parsed = parseAcl(role.acl, { allowAdmin: role.allow_admin });
    if ('problem' in parsed) ctx.addIssue({ code: 'custom', path: ['acl'], message: parsed.problem });
  });
export type RedisRoleSettings = z.infer<typeof redisRoleSchema>;
