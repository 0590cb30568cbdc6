import { INestApplication } from '@nestjs/common';
import IORedis from 'ioredis';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { stringify } from 'yaml';
import { flushQueue as flushRedisQueue } from '../../devkit/admin';
import { createServer } from '../../src/app';
import { TesseraConfig, parseConfig } from '../../src/config/config.loader';
import { TestIssuer, spiffe, testIssuer } from './identity';
import { PG_ADMIN_URL, REDIS_URL, TARGET_URL } from './services';
import { dropRolesLike, withAdmin } from './target';

export type ConfigDoc = Record<string, any>;

/**
 * A config document for one test file: its own state database, queue prefix and role. `name` becomes
 * the role `<name>-ro`, whose accounts are named `tsr_<name>_ro_...`.
 */
export async function testConfigDoc(name: string): Promise<ConfigDoc> {
  const issuer = await testIssuer();
  return {
    server: { host: '127.0.0.1', port: 0 },
    storage: { postgres_url: `${PG_ADMIN_URL}/tessera_t_${name}`, pool_size: 10 },
    queue: { redis_url: REDIS_URL, prefix: `tt-${name}` },
    encryption: { key: randomBytes(32).toString('base64') },
    identity: { audience: 'tessera', issuers: [{ name: 'test', type: 'jwt-svid', trust_domain: 'test.example', jwks_file: issuer.jwksFile }] },
    operators: [spiffe('ops/*')],
    policies: [{ name: 'app', subjects: [spiffe('ns/app/*')], allow: [{ creds: [`${name}-ro`], max_ttl: '1h' }] }],
    connections: { target: { plugin: 'postgres', url: TARGET_URL, scram_iterations: 1 } },
    roles: { [`${name}-ro`]: { connection: 'target', default_ttl: '5m', max_ttl: '1h', member_of: ['tessera_test_readonly'] } },
    reconcile_every: '1s',
    pending_timeout: '3s',
    revoke_attempts: 3,
    log: { level: 'silent' },
  };
}

export function accountPrefix(name: string): string {
  return `tsr_${name.replace(/[^a-z0-9]+/g, '_')}_ro_`;
}

export function writeConfigFile(doc: ConfigDoc): string {
  const path = join(tmpdir(), `tessera-${doc.queue.prefix}-${process.pid}.yaml`);
  writeFileSync(path, stringify(doc));
  return path;
}

/** A clean slate: the state database recreated, the queue's Redis keys deleted, leftover accounts dropped. */
export async function resetState(doc: ConfigDoc, name: string): Promise<void> {
  const dbName = new URL(doc.storage.postgres_url).pathname.slice(1);
  await withAdmin('postgres', (c) => c.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`));
  await flushQueue(doc.queue.prefix);
  await dropRolesLike(accountPrefix(name));
}

export const flushQueue = (prefix: string): Promise<number> => flushRedisQueue(REDIS_URL, prefix);

export interface ApiResponse {
  status: number;
  body: any;
  headers: Headers;
}

export interface TestBroker {
  url: string;
  app: INestApplication;
  config: TesseraConfig;
  doc: ConfigDoc;
  role: string;
  issuer: TestIssuer;
  /** A token for spiffe://test.example/<path>. */
  token(path: string, opts?: Parameters<TestIssuer['mint']>[1]): Promise<string>;
  api(method: string, path: string, opts?: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<ApiResponse>;
  state<T = any>(sql: string, values?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function startBroker(name: string, customise?: (doc: ConfigDoc) => void, opts: { reset?: boolean } = {}): Promise<TestBroker> {
  const doc = await testConfigDoc(name);
  customise?.(doc);
  if (opts.reset !== false) await resetState(doc, name);
  const config = parseConfig(doc, {}, `test:${name}`);
  const app = await createServer(config, { worker: true });
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const issuer = await testIssuer();
  const state = new Client({ connectionString: config.storage.postgres_url });
  await state.connect();
  return {
    url,
    app,
    config,
    doc,
    role: `${name}-ro`,
    issuer,
    token: (path, o) => issuer.mint(spiffe(path), o),
    async api(method, path, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      let body: string | undefined = o.raw;
      if (o.body !== undefined) body = JSON.stringify(o.body);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${url}${path}`, { method, headers, body });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON (metrics) */
      }
      return { status: res.status, body: parsed, headers: res.headers };
    },
    async state(sql, values) {
      return (await state.query(sql, values)).rows;
    },
    async close() {
      await state.end();
      await app.close();
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` returns a truthy value or the time is up; returns the last value. */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await fn();
  while (!last && Date.now() < deadline) {
    await sleep(everyMs);
    last = await fn();
  }
  return last;
}

/** Everything stored under a queue prefix in Redis, as text: for checking that no secret is there. */
export async function redisDump(prefix: string): Promise<string> {
  const redis = new IORedis(REDIS_URL);
  const parts: string[] = [];
  try {
    for (const key of await redis.keys(`${prefix}:*`)) {
      const type = await redis.type(key);
      if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === 'string') parts.push((await redis.get(key)) ?? '');
      else if (type === 'list') parts.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, 0, -1)));
      else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(key)));
      else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
      parts.push(key);
    }
  } finally {
    redis.disconnect();
  }
  return parts.join('\n');
}
