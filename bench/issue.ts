/** Issue throughput and latency through the HTTP API, beside the raw target operations in the same run. */
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import mysql from 'mysql2/promise';
import { Pool } from 'pg';
import { scramSha256Verifier } from '../plugins/postgres/scram';
import { IamTestServer } from '../test/support/iam-server';
import { BENCH_DB, Identity, MYSQL, PG, Stats, TARGET_DB, admin, benchConfig, cpuSplit, dropRolesLike, flushQueue, load, post, request, recreateDatabase, startBroker, vacuumRoleCatalogs } from './lib';

export interface IssueRow {
  target: string;
  concurrency: number;
  tessera: Stats;
  /** The raw operation Tessera is compared to. */
  baseline: string;
  raw: Stats;
  ratio: number;
  /** The broker's CPU time per request during the Tessera half (ms), where measured. */
  brokerCpuMs?: number;
  /** CPU time per request of each part of the machine during the Tessera half (ms), where measured. */
  cpuMs?: Record<string, number>;
}

const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::bench/*' }] };

async function resetState(): Promise<void> {
  await recreateDatabase(BENCH_DB);
  await flushQueue();
  await dropRolesLike('tsr_bench_');
  await dropRolesLike('bench_raw_');
  await dropMysqlUsersLike('tsr_bench_');
  await dropMysqlUsersLike('bench_raw_');
}

/** MariaDB's CREATE USER slows as mysql.user grows, so each loop of a comparison starts from the same accounts. */
async function dropMysqlUsersLike(prefix: string): Promise<void> {
  await mysqlAdmin(async (c) => {
    const [rows] = await c.query(`SELECT User AS u FROM mysql.user WHERE User LIKE ?`, [`${prefix}%`]);
    for (const { u } of rows as { u: string }[]) await c.query(`DROP USER IF EXISTS ${mysql.escape(u)}@'%'`);
  });
}

async function mysqlAdmin<T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await mysql.createConnection(MYSQL);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function prepareTarget(): Promise<void> {
  await admin('postgres', async (c) => {
    const { rowCount } = await c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [TARGET_DB]);
    if (!rowCount) await c.query(`CREATE DATABASE ${TARGET_DB}`);
    await c.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bench_readers') THEN CREATE ROLE bench_readers NOLOGIN; END IF; END $$`);
  });
}

/**
 * PostgreSQL issue with the product's default connection config (and, in the full run, with
 * scram_iterations: 4096), each compared with two raw loops of the same statement on the same
 * machine in the same run: with a plaintext password (PostgreSQL derives a 4096-round verifier), and
 * with a precomputed 1-round verifier (the statement's own limit).
 */
export async function benchIssue(id: Identity, opts: { quick: boolean; iterations: (number | 'default')[] }): Promise<IssueRow[]> {
  const rows: IssueRow[] = [];
  const plan = opts.quick ? [[1, 40], [16, 300]] : [[1, 200], [16, 2000], [64, 2000]];
  const iam = new IamTestServer();
  const endpoint = await iam.start();
  const token = await id.token('spiffe://bench.example/load/issuer');
  const until = () => new Date(Date.now() + 1800_000).toISOString();
  try {
    for (const iterations of opts.iterations) {
      await resetState();
      const config = benchConfig(id, (doc) => {
        if (iterations === 'default') delete doc.connections.pg.scram_iterations;
        else doc.connections.pg.scram_iterations = iterations;
        doc.connections.my = { plugin: 'mysql', url: MYSQL, pool_size: 20 };
        doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', max_attempts: 1 };
        doc.roles['bench-my'] = { connection: 'my', default_ttl: '30m', max_ttl: '6h', grants: ['SELECT ON test.*'] };
        doc.roles['bench-aws'] = { connection: 'aws', default_ttl: '30m', max_ttl: '6h', inline_policy: POLICY };
        doc.policies[0].allow[0].creds.push('bench-my', 'bench-aws');
      });
      const label = iterations === 'default' ? 'postgres (default config)' : `postgres (scram ${iterations})`;
      const broker = await startBroker(config);
      try {
        // Unmeasured first: a new Node process runs its code interpreted until V8 has compiled the hot
        // paths (here the first 2,000 issues cost the broker 1.5–2x the CPU per issue of the next
        // 2,000), which the servers the raw loops talk to never do; the raw loops' client is warm by
        // then too.
        await load(opts.quick ? 100 : 600, 16, async () => {
          const res = await post(`${broker.url}/v1/creds/bench-pg`, token, { ttl: '30m' });
          if (res.status !== 201) throw new Error(`warm-up issue failed: ${res.status}`);
        });
        for (const [concurrency, n] of plan) {
          await admin(TARGET_DB, vacuumRoleCatalogs);
          const cpuBefore = cpuSplit(broker.child.pid!);
          const tessera = await load(n, concurrency, async () => {
            const res = await post(`${broker.url}/v1/creds/bench-pg`, token, { ttl: '30m' });
            if (res.status !== 201) throw new Error(`issue failed: ${res.status} ${JSON.stringify(res.body)}`);
          });
          const cpuAfter = cpuSplit(broker.child.pid!);
          const cpuMs = Object.fromEntries(Object.entries(cpuAfter).map(([k, v]) => [k, ((v - cpuBefore[k as keyof typeof cpuBefore]) * 1000) / n]));
          const brokerCpuMs = cpuMs.broker;
          const raw = async (kind: string, password: (i: number) => Promise<string>) => {
            await admin(TARGET_DB, vacuumRoleCatalogs);
            const pool = new Pool({ connectionString: `${PG}/${TARGET_DB}`, max: Math.min(concurrency, 20) });
            const stats = await load(n, concurrency, async (i) => {
              await pool.query(`CREATE ROLE bench_raw_${kind}_${concurrency}_${i} WITH LOGIN PASSWORD '${await password(i)}' VALID UNTIL '${until()}' IN ROLE bench_readers`);
            });
            await pool.end();
            await dropRolesLike('bench_raw_');
            return stats;
          };
          const plaintext = await raw('plain', async (i) => `pw${i}x${Math.random().toString(36).slice(2)}`);
          const oneRound = await raw('v1', (i) => scramSha256Verifier(`pw-${i}-${Math.random()}`, 1));
          rows.push({ target: label, concurrency, tessera, baseline: "CREATE ROLE … PASSWORD '<plaintext>'", raw: plaintext, ratio: tessera.rate / plaintext.rate, brokerCpuMs, cpuMs });
          rows.push({ target: label, concurrency, tessera, baseline: 'CREATE ROLE … PASSWORD <1-round verifier>', raw: oneRound, ratio: tessera.rate / oneRound.rate });
        }
        if (iterations === opts.iterations[0]) {
          const [concurrency, n] = plan[plan.length > 2 ? 1 : plan.length - 1];
          rows.push(await benchVaultApi(broker.url, token, concurrency, n));
          rows.push(await benchMysql(broker.url, token, concurrency, n));
          rows.push(await benchIam(broker.url, token, endpoint, concurrency, Math.min(n, 1000)));
        }
      } finally {
        await broker.stop();
      }
    }
  } finally {
    await iam.stop();
    await resetState();
  }
  return rows;
}

/**
 * The same PostgreSQL issue through the Vault-compatible API (a client token from auth/jwt/login, then
 * GET database/creds/ROLE as Vault clients do) beside the native API in the same run (DESIGN §11 aims at
 * ≥ 0.9×). Native and Vault halves alternate so neither gets the warmer half of the run.
 */
export async function benchVaultApi(url: string, jwt: string, concurrency: number, n: number): Promise<IssueRow> {
  const login = await request('PUT', `${url}/v1/auth/jwt/login`, {}, { jwt });
  const clientToken = (login.body as { auth: { client_token: string } }).auth.client_token;
  const half = Math.max(1, Math.floor(n / 2));
  const native = async () =>
    load(half, concurrency, async () => {
      const res = await post(`${url}/v1/creds/bench-pg`, jwt, { ttl: '30m' });
      if (res.status !== 201) throw new Error(`native issue failed: ${res.status}`);
    });
  const vault = async () =>
    load(half, concurrency, async () => {
      const res = await request('GET', `${url}/v1/database/creds/bench-pg`, { 'X-Vault-Token': clientToken });
      if (res.status !== 200) throw new Error(`vault issue failed: ${res.status} ${JSON.stringify(res.body)}`);
    });
  const [n1, v1, v2, n2] = [await native(), await vault(), await vault(), await native()];
  const merge = (a: Stats, b: Stats): Stats => ({
    n: a.n + b.n,
    seconds: a.seconds + b.seconds,
    rate: (a.n + b.n) / (a.seconds + b.seconds),
    p50: (a.p50 + b.p50) / 2,
    p95: (a.p95 + b.p95) / 2,
    p99: Math.max(a.p99, b.p99),
    max: Math.max(a.max, b.max),
  });
  const raw = merge(n1, n2);
  const tessera = merge(v1, v2);
  return { target: 'postgres via the Vault API', concurrency, tessera, baseline: 'native POST /v1/creds (same run)', raw, ratio: tessera.rate / raw.rate };
}

async function benchMysql(url: string, token: string, concurrency: number, n: number): Promise<IssueRow> {
  const tessera = await load(n, concurrency, async () => {
    const res = await post(`${url}/v1/creds/bench-my`, token, { ttl: '30m' });
    if (res.status !== 201) throw new Error(`mysql issue failed: ${res.status}`);
  });
  // The broker's accounts go first (their leases are left to the run's reset), so the raw loop starts
  // from the same mysql.user as Tessera's did.
  await dropMysqlUsersLike('tsr_bench_');
  const pool = mysql.createPool({ uri: MYSQL, connectionLimit: Math.min(concurrency, 20) });
  const raw = await load(n, concurrency, async (i) => {
    const user = `bench_raw_${i}`;
    await pool.query(`CREATE USER ${mysql.escape(user)}@'%' IDENTIFIED BY ${mysql.escape(`pw-${i}-${Math.random()}`)}`);
    await pool.query(`GRANT SELECT ON test.* TO ${mysql.escape(user)}@'%'`);
  });
  await pool.end();
  return { target: 'mysql (MariaDB)', concurrency, tessera, baseline: 'CREATE USER + GRANT', raw, ratio: tessera.rate / raw.rate };
}

async function benchIam(url: string, token: string, endpoint: string, concurrency: number, n: number): Promise<IssueRow> {
  const tessera = await load(n, concurrency, async () => {
    const res = await post(`${url}/v1/creds/bench-aws`, token, { ttl: '30m' });
    if (res.status !== 201) throw new Error(`iam issue failed: ${res.status}`);
  });
  const client = new IAMClient({ region: 'us-east-1', endpoint, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' }, maxAttempts: 1 });
  const raw = await load(n, concurrency, async (i) => {
    const UserName = `bench_raw_${i}`;
    await client.send(new CreateUserCommand({ UserName, Path: '/tessera/' }));
    await client.send(new PutUserPolicyCommand({ UserName, PolicyName: 'tessera', PolicyDocument: JSON.stringify(POLICY) }));
    await client.send(new CreateAccessKeyCommand({ UserName }));
  });
  client.destroy();
  return { target: 'aws-iam (test server)', concurrency, tessera, baseline: 'CreateUser + PutUserPolicy + CreateAccessKey', raw, ratio: tessera.rate / raw.rate };
}
