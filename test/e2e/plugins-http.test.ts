import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { createHash } from 'node:crypto';
import { Client } from 'pg';
import { eventually, redisDump, resetState, testConfigDoc, writeConfigFile } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { spiffe, testIssuer } from '../support/identity';
import { mysqlLogin, mysqlUsersLike } from '../support/mysql';
import { spawnBroker, waitExit, BrokerProcess } from '../support/process';
import { REDIS_TARGET_URL, aclUser, redisSession, redisUsersLike, sessionAlive, withRedisAdmin } from '../support/redis';
import { MYSQL_ADMIN_URL } from '../support/services';
import { pgLogin } from '../support/target';

describe('every plugin end to end through HTTP, with a real broker process logging at debug level', () => {
  const iam = new IamTestServer();
  let broker: BrokerProcess;
  let doc: Record<string, any>;
  let token: string;
  const secrets: string[] = [];

  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${broker.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  beforeAll(async () => {
    const endpoint = await iam.start();
    doc = await testConfigDoc('multi');
    doc.log = { level: 'debug' };
    doc.connections.mysql = { plugin: 'mysql', url: MYSQL_ADMIN_URL };
    doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'admin-secret-never-logged', max_attempts: 1 };
    doc.roles['multi-my'] = { connection: 'mysql', default_ttl: '5m', max_ttl: '1h', grants: ['SELECT ON test.*'] };
    doc.roles['multi-aws'] = {
      connection: 'aws',
      default_ttl: '5m',
      max_ttl: '1h',
      inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::reports/*' }] },
    };
    doc.connections.cache = { plugin: 'redis', url: REDIS_TARGET_URL };
    doc.roles['multi-redis'] = { connection: 'cache', default_ttl: '5m', max_ttl: '1h', acl: '~tessera:e2e:* +get +set' };
    doc.policies[0].allow.push({ creds: ['multi-my', 'multi-aws', 'multi-redis'] });
    await resetState(doc, 'multi');
    await dropRedisUsers();
    broker = await spawnBroker(writeConfigFile(doc));
    token = await (await testIssuer()).mint(spiffe('ns/app/reporter'));
    secrets.push('admin-secret-never-logged');
  });

  /** Lease users of the redis role left by an earlier run that stopped half way. */
  const dropRedisUsers = async () => {
    const left = await redisUsersLike('tsr_multi_redis_');
    if (left.length) await withRedisAdmin((admin) => admin.call('ACL', 'DELUSER', ...left));
  };

  afterAll(async () => {
    broker.child.kill('SIGTERM');
    await waitExit(broker.child);
    await iam.stop();
    await dropRedisUsers();
  });

  it('postgres: issued, logs in, revoked, gone', async () => {
    const issued = await call('POST', '/v1/creds/multi-ro', {});
    expect(issued.status).toBe(201);
    secrets.push(issued.body.credentials.password);
    expect((await pgLogin(issued.body.credentials)).ok).toBe(true);
    expect((await call('POST', `/v1/leases/${issued.body.lease_id}/revoke`)).body).toEqual({ state: 'revoked' });
    expect(await pgLogin(issued.body.credentials)).toEqual({ ok: false, code: '28P01' });
  });

  it('mysql: issued with host/port/database, logs in and reads, revoked, gone', async () => {
    const issued = await call('POST', '/v1/creds/multi-my', { ttl: '2m' });
    expect(issued.status).toBe(201);
    expect(issued.body.plugin).toBe('mysql');
    const { username, password, host, port, database } = issued.body.credentials;
    secrets.push(password);
    expect({ host, port, database }).toEqual({ host: '127.0.0.1', port: 3306, database: 'test' });
    expect(username.length).toBeLessThanOrEqual(32);
    expect(await mysqlLogin(username, password)).toEqual({ ok: true, rows: 3 });
    expect(await mysqlLogin(username, `${password}x`)).toMatchObject({ ok: false });
    const revoked = await call('POST', `/v1/leases/${issued.body.lease_id}/revoke`);
    expect(revoked.body).toEqual({ state: 'revoked' });
    expect(await mysqlLogin(username, password)).toMatchObject({ ok: false, code: expect.stringMatching(/^ER_ACCESS_DENIED/) });
    expect(await mysqlUsersLike(username)).toEqual([]);
  });

  it('aws-iam: issued with an access key that works, revoked, user and key gone', async () => {
    const issued = await call('POST', '/v1/creds/multi-aws', {});
    expect(issued.status).toBe(201);
    const { access_key_id, secret_access_key, iam_user } = issued.body.credentials;
    secrets.push(secret_access_key);
    expect(Object.keys(issued.body.credentials).sort()).toEqual(['access_key_id', 'iam_user', 'secret_access_key']);
    expect(iam.hasUser(iam_user)).toBe(true);
    expect(iam.accessKeys(iam_user)).toEqual([{ id: access_key_id, status: 'Active' }]);
    expect(iam.policyDocument(iam_user, 'tessera')).toEqual(doc.roles['multi-aws'].inline_policy);
    const sts = new STSClient({ region: 'us-east-1', endpoint: doc.connections.aws.endpoint, credentials: { accessKeyId: access_key_id, secretAccessKey: secret_access_key } });
    expect((await sts.send(new GetCallerIdentityCommand({}))).Arn).toContain(`user/tessera/${iam_user}`);

    const view = await call('GET', `/v1/leases/${issued.body.lease_id}`);
    expect(view.body).toMatchObject({ plugin: 'aws-iam', account: iam_user, state: 'active' });

    expect((await call('POST', `/v1/leases/${issued.body.lease_id}/revoke`)).body).toEqual({ state: 'revoked' });
    expect(iam.hasUser(iam_user)).toBe(false);
    await expect(sts.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'InvalidClientTokenId' });
    sts.destroy();
  });

  it('redis: issued as an ACL user bound to its rules, logs in, revoked, gone and its session ended', async () => {
    const issued = await call('POST', '/v1/creds/multi-redis', { ttl: '2m' });
    expect(issued.status).toBe(201);
    expect(issued.body.plugin).toBe('redis');
    const { username, password, host, port } = issued.body.credentials;
    const hash = createHash('sha256').update(password, 'utf8').digest('hex');
    // The password, and the hash Redis compares it with, stay out of logs, tables and job payloads.
    secrets.push(password, hash);
    expect(Object.keys(issued.body.credentials).sort()).toEqual(['host', 'password', 'port', 'username']);
    expect({ host, port }).toEqual({ host: '127.0.0.1', port: 6379 });
    expect(username.startsWith('tsr_multi_redis_')).toBe(true);
    expect(await aclUser(username)).toMatchObject({ flags: expect.arrayContaining(['on']), passwords: [hash], keys: '~tessera:e2e:*' });

    const session = await redisSession(username, password);
    try {
      expect(await session.set('tessera:e2e:k', 'v')).toBe('OK');
      await expect(session.set('elsewhere:k', 'v')).rejects.toThrow(/^NOPERM/);
      await expect(redisSession(username, `${password}x`)).rejects.toThrow(/^WRONGPASS/);

      const view = await call('GET', `/v1/leases/${issued.body.lease_id}`);
      expect(view.body).toMatchObject({ plugin: 'redis', account: username, state: 'active' });

      expect((await call('POST', `/v1/leases/${issued.body.lease_id}/revoke`)).body).toEqual({ state: 'revoked' });
      expect(await aclUser(username)).toBeNull();
      expect(await eventually(async () => !(await sessionAlive(session)), 5000)).toBe(true);
      await expect(redisSession(username, password)).rejects.toThrow(/^WRONGPASS/);
    } finally {
      // A connection the server ended needs no disconnect (ioredis would wait 2 s for a close already seen).
      if (session.status !== 'end') session.disconnect();
      await withRedisAdmin((admin) => admin.del('tessera:e2e:k'));
    }
  });

  it('no secret reached the broker\'s log, the state tables or Redis', async () => {
    expect(secrets).toHaveLength(6);
    const state = new Client({ connectionString: doc.storage.postgres_url });
    await state.connect();
    let tables: string;
    try {
      tables = JSON.stringify([(await state.query('SELECT * FROM leases')).rows, (await state.query('SELECT * FROM audit_events')).rows]);
    } finally {
      await state.end();
    }
    const logs = await eventually(async () => (broker.output().includes('/v1/leases/') ? broker.output() : ''), 5000);
    expect(logs).toContain('/v1/creds/multi-my'); // the access log is there: the check has something to look at
    expect(logs).toContain('/v1/creds/multi-redis');
    const redis = await redisDump(doc.queue.prefix);
    for (const secret of secrets) {
      expect(logs).not.toContain(secret);
      expect(tables).not.toContain(secret);
      expect(redis).not.toContain(secret);
    }
    expect(logs).not.toContain(token);
  });
});
