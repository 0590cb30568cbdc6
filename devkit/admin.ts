/**
 * Admin helpers for the local services, shared by the tests, the benchmarks and the demo: one copy of
 * each. Never used by the broker itself.
 */
import IORedis from 'ioredis';
import { Client } from 'pg';

/** Runs `fn` with an admin connection to `database` on the PostgreSQL server at `serverUrl` (no path). */
export async function withPgAdmin<T>(serverUrl: string, database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: `${serverUrl}/${database}` });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Deletes every Redis key of a queue prefix, so jobs of an earlier run do not fire into this one. */
export async function flushQueue(redisUrl: string, prefix: string): Promise<number> {
  const redis = new IORedis(redisUrl);
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) deleted += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}
