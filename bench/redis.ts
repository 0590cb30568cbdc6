/**
 * Redis issue rate: through the HTTP API and through the plugin alone, each beside a raw loop of the one
 * ACL SETUSER the plugin sends, at the same concurrency, on the same machine, in the same run.
 */
import Redis from 'ioredis';
import { createHash, randomBytes } from 'node:crypto';
import { RedisPlugin } from '../plugins/redis/redis.plugin';
import { redisConnectionSchema, redisRoleSchema } from '../plugins/redis/redis.config';
import { newAccountName, newPassword } from '../src/leases/names';
import { BENCH_DB, Identity, REDIS, Stats, benchConfig, flushQueue, load, post, recreateDatabase, startBroker } from './lib';

export interface RedisRow {
  path: string;
  concurrency: number;
  tessera: Stats;
  raw: Stats;
  ratio: number;
}

const ACL = '~bench:* +get +mget';
/** The admin the plugin and the raw loop use: the machine's Redis as `default`. */
const ADMIN_URL = REDIS.replace(/^redis:\/\/(?![^/]*@)/, 'redis://default@');

async function dropUsers(admin: Redis, prefixes: string[]): Promise<void> {
  const users = ((await admin.call('ACL', 'USERS')) as string[]).filter((u) => prefixes.some((p) => u.startsWith(p)));
  for (let i = 0; i < users.length; i += 500) await admin.call('ACL', 'DELUSER', ...users.slice(i, i + 500));
}

/** The statement the plugin sends, nothing around it: one connection, pipelined like the plugin's. */
async function rawSetUser(admin: Redis, n: number, concurrency: number): Promise<Stats> {
  const run = randomBytes(3).toString('hex');
  const passwords = Array.from({ length: n }, () => newPassword());
  return load(n, concurrency, async (i) => {
    const hash = createHash('sha256').update(passwords[i]).digest('hex');
    await admin.call('ACL', 'SETUSER', `bench_raw_${run}_${i}`, 'reset', 'resetchannels', '~bench:*', '+get', '+mget', '-@admin', '-@dangerous', `#${hash}`, 'on');
  });
}

/** Two runs as one: rates from the summed counts and times; percentiles averaged (p99: the worse). */
function merge(a: Stats, b: Stats): Stats {
  return {
    n: a.n + b.n,
    seconds: a.seconds + b.seconds,
    rate: (a.n + b.n) / (a.seconds + b.seconds),
    p50: (a.p50 + b.p50) / 2,
    p95: (a.p95 + b.p95) / 2,
    p99: Math.max(a.p99, b.p99),
    max: Math.max(a.max, b.max),
  };
}

export async function benchRedis(id: Identity, opts: { quick: boolean }): Promise<RedisRow[]> {
  const plan = opts.quick ? [[1, 40], [16, 300]] : [[1, 200], [16, 2000], [64, 2000]];
  const rows: RedisRow[] = [];
  const admin = new Redis(ADMIN_URL, { maxRetriesPerRequest: 1, enableReadyCheck: false });
  const prefixes = ['tsr_bench_', 'bench_raw_'];
  try {
    await dropUsers(admin, prefixes);
    const plugin = new RedisPlugin('bench', redisConnectionSchema.parse({ url: ADMIN_URL }));
    const role = redisRoleSchema.parse({ acl: ACL });
    const expiresAt = new Date(Date.now() + 1800_000);
    await plugin.ping(); // connected before the clock starts, as the raw loop's admin is
    for (const [concurrency, n] of plan) {
      const half = Math.max(1, Math.floor(n / 2));
      // Names and passwords are the broker's work: made before the clock starts, as the raw loop's are.
      const viaPlugin = () => {
        const users = Array.from({ length: half }, () => ({ username: newAccountName('bench-plugin', plugin.maxUsernameLength), password: newPassword() }));
        return load(half, concurrency, async (i) => {
          await plugin.createUser({ ...users[i], expiresAt, role });
        });
      };
      // Halves alternate, so neither side gets the warmer half of the run or the fuller ACL table.
      const [r1, p1, p2, r2] = [await rawSetUser(admin, half, concurrency), await viaPlugin(), await viaPlugin(), await rawSetUser(admin, half, concurrency)];
      const tessera = merge(p1, p2);
      const raw = merge(r1, r2);
      rows.push({ path: 'plugin.createUser', concurrency, tessera, raw, ratio: tessera.rate / raw.rate });
      await dropUsers(admin, prefixes);
    }
    await plugin.close();

    await recreateDatabase(BENCH_DB);
    await flushQueue();
    const config = benchConfig(id, (doc) => {
      doc.connections.cache = { plugin: 'redis', url: ADMIN_URL };
      doc.roles['bench-redis'] = { connection: 'cache', default_ttl: '30m', max_ttl: '6h', acl: ACL };
      doc.policies[0].allow[0].creds.push('bench-redis');
    });
    const broker = await startBroker(config);
    const token = await id.token('spiffe://bench.example/load/issuer');
    try {
      for (const [concurrency, n] of plan) {
        const tessera = await load(n, concurrency, async () => {
          const res = await post(`${broker.url}/v1/creds/bench-redis`, token, { ttl: '30m' });
          if (res.status !== 201) throw new Error(`redis issue failed: ${res.status} ${JSON.stringify(res.body)}`);
        });
        const raw = await rawSetUser(admin, n, concurrency);
        rows.push({ path: 'POST /v1/creds (HTTP API)', concurrency, tessera, raw, ratio: tessera.rate / raw.rate });
      }
    } finally {
      await broker.stop();
    }
  } finally {
    await dropUsers(admin, prefixes).catch(() => undefined);
    await recreateDatabase(BENCH_DB).catch(() => undefined);
    await flushQueue().catch(() => undefined);
    admin.disconnect();
  }
  return rows;
}
