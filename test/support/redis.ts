/** Redis as the tests see it from outside the plugin: an admin look at ACL users, and sessions as a user. */
import Redis from 'ioredis';
import net from 'node:net';
import { REDIS_URL } from './services';

/** The Redis the redis plugin issues users on: the machine's one Redis, as the `default` user. */
export const REDIS_TARGET_URL = process.env.TESSERA_TEST_REDIS_TARGET_URL ?? REDIS_URL.replace(/^redis:\/\/(?![^/]*@)/, 'redis://default@');
/** A key the hostile ACL values would reach if they ever became commands. */
export const REDIS_CANARY_KEY = 'tessera:conformance:canary';

export async function withRedisAdmin<T>(fn: (admin: Redis) => Promise<T>): Promise<T> {
  const admin = new Redis(REDIS_TARGET_URL, { lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0 });
  admin.on('error', () => undefined);
  try {
    await admin.connect();
    return await fn(admin);
  } finally {
    admin.disconnect();
  }
}

/** `ACL GETUSER` as a map (null when the user does not exist). */
export async function aclUser(username: string): Promise<Record<string, unknown> | null> {
  const reply = await withRedisAdmin((admin) => admin.call('ACL', 'GETUSER', username));
  if (reply === null) return null;
  const flat = reply as unknown[];
  const out: Record<string, unknown> = {};
  for (let i = 0; i < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

/** Users whose names start with `prefix`. */
export async function redisUsersLike(prefix: string): Promise<string[]> {
  const users = (await withRedisAdmin((admin) => admin.call('ACL', 'USERS'))) as string[];
  return users.filter((u) => u.startsWith(prefix));
}

/** A connection logged in as the user (rejects when the login fails), never reconnecting, so a killed session stays dead. */
export async function redisSession(username: string, password: string): Promise<Redis> {
  const { hostname, port } = new URL(REDIS_TARGET_URL);
  const conn = new Redis({
    host: hostname,
    port: Number(port || 6379),
    lazyConnect: true,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  conn.on('error', () => undefined);
  await conn.connect();
  // AUTH by hand: its reply is the login's outcome (a connection whose AUTH failed stays open as
  // `default`, which needs no password here, so connecting alone proves nothing).
  try {
    await conn.call('AUTH', username, password);
  } catch (err) {
    conn.disconnect();
    throw err;
  }
  return conn;
}

/** Whether the connection still reaches the server: any reply (a NOPERM refusal too) says it does. */
export async function sessionAlive(conn: Redis): Promise<boolean> {
  return conn.ping().then(
    () => true,
    (err: Error) => err.name === 'ReplyError',
  );
}

/**
 * A TCP relay to the test Redis that can hold what clients send (so their commands time out unanswered)
 * and drop their connections (so they reconnect). `received[i]` is everything connection i sent that
 * reached Redis.
 */
export async function redisRelay(): Promise<{ url: string; received: string[]; hold(on: boolean): void; drop(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(REDIS_TARGET_URL);
  const sockets: net.Socket[] = [];
  const received: string[] = [];
  let holding = false;
  const server = net.createServer((client) => {
    const index = received.push('') - 1;
    const upstream = net.connect(Number(port || 6379), hostname);
    sockets.push(client, upstream);
    client.on('data', (chunk) => {
      if (holding) return; // swallowed: never reaches Redis
      received[index] += chunk.toString('latin1');
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => client.write(chunk));
    for (const s of [client, upstream]) {
      s.on('error', () => undefined);
      s.on('close', () => (s === client ? upstream : client).destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relayPort = (server.address() as net.AddressInfo).port;
  return {
    url: `redis://default@127.0.0.1:${relayPort}`,
    received,
    hold: (on) => {
      holding = on;
    },
    drop: () => sockets.forEach((s) => s.destroy()),
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
