/**
 * Cross-key checks of redis connections (DESIGN §14) that the plugin's own schema cannot make: it sees
 * neither queue.redis_url nor the static secrets that name its users.
 */
import { DEFAULT_USER, RedisConnectionConfig, adminUserOf, staticUserProblem } from '../../plugins/redis/redis.config';
import { sameServer } from '../../plugins/redis/redis-server';
import type { ConnectionConfig } from './config.loader';
import type { RawConfig } from './config.schema';

/**
 * A redis connection on the server of the broker's own queue gets the queue's user (`default` when
 * queue.redis_url names none) among its protected users, so no lease or static secret ever modifies
 * the queue's connection, whether or not the operator listed it. Returns the problems it finds.
 */
export function protectQueueUser(connections: Map<string, ConnectionConfig>, queueUrl: string): string[] {
  const problems: string[] = [];
  const queueUser = adminUserOf(queueUrl);
  for (const conn of connections.values()) {
    if (conn.plugin !== 'redis') continue;
    const settings = conn.settings as RedisConnectionConfig;
    if (!sameServer(settings.url, queueUrl)) continue;
    if (queueUser.startsWith(settings.user_prefix)) {
      problems.push(`connections.${conn.name}.user_prefix: must not be a prefix of the user "${queueUser}" of queue.redis_url (the broker's queue, on the same server), which lease users must never be`);
    }
    if (!settings.protected_users.includes(queueUser)) {
      conn.settings = { ...settings, protected_users: [...settings.protected_users, queueUser] };
    }
  }
  return problems;
}

/**
 * A static secret on a redis connection must not name a user the plugin never touches (`default`, the
 * admin, a protected user, the queue's user): refused at start-up rather than at the first rotation.
 */
export function redisStaticSecretProblems(raw: Pick<RawConfig, 'static_secrets' | 'queue'>, connections: ReadonlyMap<string, ConnectionConfig>): string[] {
  const problems: string[] = [];
  const queueUser = adminUserOf(raw.queue.redis_url);
  for (const [name, secret] of Object.entries(raw.static_secrets)) {
    const conn = connections.get(secret.connection);
    if (conn?.plugin !== 'redis') continue;
    const settings = conn.settings as RedisConnectionConfig;
    const onQueueServer = sameServer(settings.url, raw.queue.redis_url);
    const users: [string, string][] = secret.usernames ? secret.usernames.map((u, i) => [`usernames.${i}`, u]) : secret.username !== undefined ? [['username', secret.username]] : [];
    for (const [key, user] of users) {
      const problem =
        onQueueServer && user === queueUser && user !== DEFAULT_USER
          ? `must not be "${user}": it is the user of queue.redis_url, the broker's own queue on the same server`
          : staticUserProblem(settings, user);
      if (problem) problems.push(`static_secrets.${name}.${key}: ${problem} (connection "${conn.name}")`);
    }
  }
  return problems;
}
