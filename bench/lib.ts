/** Shared pieces of the benchmarks: statistics, a broker process, tokens, timing. */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JWK, exportJWK, generateKeyPair } from 'jose';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { flushQueue as flushRedisQueue, withPgAdmin } from '../devkit/admin';
import { mintJwtSvid } from '../scripts/tokens';

export const PG = process.env.TESSERA_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const REDIS = process.env.TESSERA_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const MYSQL = process.env.TESSERA_BENCH_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
export const BENCH_DB = 'tessera_bench';
export const TARGET_DB = 'tessera_bench_target';

export interface Stats {
  n: number;
  seconds: number;
  rate: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export function stats(latenciesMs: number[], seconds: number): Stats {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
  return { n: sorted.length, seconds, rate: sorted.length / seconds, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted[sorted.length - 1] ?? NaN };
}

/** Runs `task(i)` n times with `concurrency` in flight; returns per-call latencies and wall time. */
export async function load(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<Stats> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await task(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return stats(latencies, (performance.now() - started) / 1000);
}

export const admin = <T>(database: string, fn: (c: Client) => Promise<T>): Promise<T> => withPgAdmin(PG, database, fn);

export async function recreateDatabase(name: string): Promise<void> {
  await admin('postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await c.query(`CREATE DATABASE "${name}"`);
  });
}

export async function dropRolesLike(prefix: string): Promise<number> {
  return admin(TARGET_DB, async (c) => {
    const { rows } = await c.query<{ rolname: string }>(`SELECT rolname FROM pg_roles WHERE rolname LIKE $1`, [`${prefix}%`]);
    for (let i = 0; i < rows.length; i += 500) {
      await c.query(rows.slice(i, i + 500).map((r) => `DROP ROLE IF EXISTS "${r.rolname}";`).join('\n'));
    }
    if (rows.length) await vacuumRoleCatalogs(c);
    return rows.length;
  });
}

/**
 * The catalogs every CREATE/ALTER/DROP ROLE writes, vacuumed: where autovacuum is off (as on some CI
 * machines) their dead rows pile up across runs (pg_authid reached 121 MB for 148 live roles here)
 * and every later loop, Tessera's or raw, runs on a larger catalog than the one before it.
 */
export async function vacuumRoleCatalogs(c: Client): Promise<void> {
  // FULL: a plain VACUUM frees the dead rows but keeps the file, and scans of pg_authid (the
  // pg_stat_activity view joins it) still read every page. After a day of runs here pg_authid was
  // 22 MB for 158 roles, and a 10,000-lease expiry cost PostgreSQL 0.56-0.67 ms per lease instead of
  // 0.26 ms once compacted.
  await c.query('VACUUM FULL pg_authid, pg_auth_members, pg_shdepend, pg_db_role_setting');
}

export interface Identity {
  jwksFile: string;
  token(subject: string): Promise<string>;
}

export async function identity(): Promise<Identity> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const kid = `bench-${randomBytes(4).toString('hex')}`;
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'ES256' };
  const dir = mkdtempSync(join(tmpdir(), 'tessera-bench-'));
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, use: 'jwt-svid', alg: 'ES256' }] }));
  return { jwksFile, token: (subject) => mintJwtSvid(privateJwk, { subject, ttlSeconds: 3600 * 6 }) };
}

/** The bench config: one state DB, the bench target DB, every plugin. */
export function benchConfig(id: Identity, overrides: (doc: Record<string, any>) => void = () => undefined): string {
  const doc: Record<string, any> = {
    server: { host: '127.0.0.1', port: 0 },
    storage: { postgres_url: `${PG}/${BENCH_DB}`, pool_size: 20 },
    queue: { redis_url: REDIS, prefix: 'tessera-bench' },
    encryption: { key: randomBytes(32).toString('base64') },
    // The bench's tokens live 6 h (a run outlasts the 1 h default of max_token_lifetime).
    identity: { audience: 'tessera', max_token_lifetime: '6h', verify_per_address_rps: 1_000_000, issuers: [{ name: 'bench', type: 'jwt-svid', trust_domain: 'bench.example', jwks_file: id.jwksFile }] },
    operators: ['spiffe://bench.example/ops/*'],
    policies: [{ name: 'bench', subjects: ['spiffe://bench.example/load/*'], allow: [{ creds: ['bench-pg'] }] }],
    connections: { pg: { plugin: 'postgres', url: `${PG}/${TARGET_DB}`, scram_iterations: 4096, pool_size: 20 } },
    roles: { 'bench-pg': { connection: 'pg', default_ttl: '30m', max_ttl: '6h', member_of: ['bench_readers'] } },
    limits: { per_identity_rps: 1_000_000, max_active_leases_per_role: 10_000_000, max_active_leases_per_owner: 10_000_000, audited_denials_per_identity: 10 },
    reconcile_every: '5s',
    log: { level: 'warn' },
  };
  overrides(doc);
  const path = join(mkdtempSync(join(tmpdir(), 'tessera-bench-')), 'tessera.yaml');
  writeFileSync(path, stringify(doc));
  return path;
}

export interface Broker {
  child: ChildProcess;
  url: string;
  /** ms from spawn to /v1/health/ready answering 200. */
  startupMs: number;
  stop(): Promise<void>;
  rssMb(): number;
  /** CPU seconds (user + system) the broker process has used so far. */
  cpuSeconds(): number;
}

export async function startBroker(configPath: string, args: string[] = []): Promise<Broker> {
  const started = performance.now();
  // BENCH_BROKER_NODE_ARGS passes node flags to the broker, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it.
  const nodeArgs = (process.env.BENCH_BROKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, 'bin/tessera.js', 'server', '--config', configPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      // BENCH_BROKER_LOG=<file> keeps what the broker writes to stderr, to look into a run.
      if (process.env.BENCH_BROKER_LOG) appendFileSync(process.env.BENCH_BROKER_LOG, chunk);
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1].replace('[::1]', '127.0.0.1'));
    });
    child.once('exit', (code) => reject(new Error(`broker exited ${code}: ${stderr}`)));
  });
  for (;;) {
    const ok = await fetch(`${url}/v1/health/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    url,
    startupMs: performance.now() - started,
    rssMb: () => rssMb(child.pid!),
    cpuSeconds: () => cpuSeconds(child.pid!),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export function startWorker(configPath: string): ChildProcess {
  return spawn(process.execPath, ['bin/tessera.js', 'worker', '--config', configPath], { stdio: 'ignore' });
}

/**
 * utime + stime of a process, from /proc (clock ticks of 1/100 s on Linux); with `children`, also the
 * CPU of its children that ended and were waited for (cutime + cstime).
 */
export function cpuSeconds(pid: number, children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const own = Number(fields[11]) + Number(fields[12]);
  return (children ? own + Number(fields[13]) + Number(fields[14]) : own) / 100;
}

/**
 * CPU seconds used so far by each part of the machine: the broker, the PostgreSQL server (every
 * backend, the state database's and the target's, and through the postmaster's children's times the
 * backends that ended: logins, closed connections), Redis, and this bench process (the HTTP client).
 */
export function cpuSplit(brokerPid: number): Record<'broker' | 'postgres' | 'redis' | 'client', number> {
  const split = { broker: cpuSeconds(brokerPid), postgres: 0, redis: 0, client: cpuSeconds(process.pid) };
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (comm === 'postgres') split.postgres += cpuSeconds(Number(entry), true);
      else if (comm === 'redis-server') split.redis += cpuSeconds(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return split;
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/**
 * The load's HTTP client: node's http with kept-alive connections. The broker's clients run on other
 * machines; here the client shares the two cores with everything measured, and `fetch` cost about
 * 1.6 ms of CPU per request at concurrency 16 (more than PostgreSQL's whole share of an issue), where
 * this costs a fraction of that. Both halves of a comparison that goes through HTTP use it.
 */
const keepAlive = new Agent({ keepAlive: true, maxSockets: 256 });

export function request(method: string, url: string, headers: Record<string, string>, body?: unknown, retried = false): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: keepAlive, headers: { ...headers, ...(payload && { 'content-type': 'application/json', 'content-length': String(payload.length) }) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      // A kept-alive socket the server closed for idleness just as this request went out (the
      // server read nothing of it): sent again once on a new socket, as Node's documentation advises.
      if (req.reusedSocket && err.code === 'ECONNRESET' && !retried) resolve(request(method, url, headers, body, true));
      else reject(err);
    });
    req.end(payload);
  });
}

export function post(url: string, token: string, body: unknown): Promise<{ status: number; body: any }> {
  return request('POST', url, { authorization: `Bearer ${token}` }, body);
}

export const round = (x: number, digits = 1) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);

/** Deletes the bench queue's keys, so jobs of an earlier run do not fire into this one. */
export async function flushQueue(prefix = 'tessera-bench'): Promise<void> {
  await flushRedisQueue(REDIS, prefix);
}
