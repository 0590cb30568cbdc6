import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import nodeVault from 'node-vault';
import { TestBroker, accountPrefix, eventually, startBroker } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { mysqlLogin, mysqlUsersLike, prepareMysqlTarget } from '../support/mysql';
import { MYSQL_ADMIN_URL } from '../support/services';
import { createPgAccount, owned } from '../support/statics';
import { pgLogin, rolesLike, withAdmin } from '../support/target';

/** The Vault-compatible API (DESIGN §11) through node-vault, the npm package, unmodified. */
describe('Vault-compatible API with node-vault', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;
  let jwt: string;

  const client = (token?: string) => nodeVault({ apiVersion: 'v1', endpoint: broker.url, token, noCustomHTTPVerbs: true });
  const login = async (path = 'ns/app/api') => {
    const vault = client();
    const res = await vault.jwtLogin({ role: 'ignored', jwt: path === 'ns/app/api' ? jwt : await broker.token(path) });
    vault.token = res.auth.client_token;
    return { vault, auth: res.auth };
  };

  beforeAll(async () => {
    const endpoint = await iam.start();
    await prepareMysqlTarget();
    await createPgAccount('tess_vault_static', 'initial-password-1');
    broker = await startBroker('vault', (doc) => {
      // Client tokens never outlive identity.max_token_lifetime; this broker allows a day, as Vault's default.
      doc.identity.max_token_lifetime = '24h';
      doc.connections.mysql = { plugin: 'mysql', url: MYSQL_ADMIN_URL };
      doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'admin-secret', max_attempts: 1 };
      doc.roles['vault-my'] = { connection: 'mysql', default_ttl: '5m', max_ttl: '1h', grants: ['SELECT ON test.*'] };
      doc.roles['vault-aws'] = {
        connection: 'aws',
        default_ttl: '5m',
        max_ttl: '1h',
        inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] },
      };
      doc.policies[0].allow.push({ creds: ['vault-my', 'vault-aws'] }, { static: ['vault-legacy'] });
      doc.static_secrets = { 'vault-legacy': { connection: 'target', username: 'tess_vault_static', rotate_every: '24h' } };
    });
    jwt = await broker.token('ns/app/api');
  });
  afterAll(async () => {
    try {
      // Nothing a test leased may outlive the suite.
      expect(await eventually(async () => (await rolesLike(accountPrefix('vault'))).length === 0)).toBe(true);
      expect(await mysqlUsersLike('tsr_vault_my_')).toEqual([]);
    } finally {
      await broker.close();
      await iam.stop();
      await withAdmin('postgres', (c) => c.query('DROP ROLE IF EXISTS tess_vault_static'));
    }
  });

  it('logs in with a JWT-SVID and gets an opaque client token carrying subject and issuer', async () => {
    const { vault, auth } = await login();
    expect(auth).toMatchObject({
      renewable: true,
      token_type: 'service',
      orphan: true,
      lease_duration: 3600,
      metadata: { subject: 'spiffe://test.example/ns/app/api', issuer: 'test' },
    });
    expect(auth.client_token).toMatch(/^tvs\./);
    const [stored] = await broker.state('SELECT * FROM vault_tokens WHERE id = $1', [auth.accessor]);
    expect(JSON.stringify(stored)).not.toContain(auth.client_token.split('.')[2]);

    const self = await vault.tokenLookupSelf();
    expect(self.data).toMatchObject({ accessor: auth.accessor, type: 'service', renewable: true, meta: { subject: 'spiffe://test.example/ns/app/api', issuer: 'test' } });
    expect(self.data.ttl).toBeGreaterThan(3590);
    const renewed = await vault.tokenRenewSelf({ increment: 7200 });
    expect(renewed.auth.lease_duration).toBeGreaterThan(7190);
  });

  it('postgres: reads database/creds, logs in, renews capped at max, looks up, revokes, and the account is gone', async () => {
    const { vault } = await login();
    const secret = await vault.read(`database/creds/${broker.role}`);
    expect(secret).toMatchObject({ renewable: true, lease_duration: 300, wrap_info: null, warnings: null, auth: null, mount_type: 'database' });
    expect(secret.lease_id).toMatch(new RegExp(`^database/creds/${broker.role}/tsl_[A-Za-z0-9_-]{24}$`));
    expect(Object.keys(secret.data).sort()).toEqual(['password', 'username']);
    expect((await pgLogin(secret.data)).ok).toBe(true);

    const renewed = await vault.renew({ lease_id: secret.lease_id, increment: 1200 });
    expect(renewed).toMatchObject({ lease_id: secret.lease_id, renewable: true, warnings: null });
    expect(renewed.lease_duration).toBeGreaterThanOrEqual(1199);
    const capped = await vault.renew({ lease_id: secret.lease_id, increment: 360000 });
    expect(capped.lease_duration).toBeLessThanOrEqual(3600);
    expect(capped.renewable).toBe(false);
    expect(capped.warnings[0]).toMatch(/capped/);

    const looked = await vault.write('sys/leases/lookup', { lease_id: secret.lease_id });
    expect(looked.data).toMatchObject({ id: secret.lease_id, renewable: false, last_renewal: null });
    expect(Date.parse(looked.data.expire_time)).toBeGreaterThan(Date.now());

    // The same lease through the native API.
    const tesseraId = secret.lease_id.split('/').pop();
    const native = await broker.api('GET', `/v1/leases/${tesseraId}`, { token: jwt });
    expect(native.body).toMatchObject({ state: 'active', account: secret.data.username });

    await vault.revoke({ lease_id: secret.lease_id });
    expect(await pgLogin(secret.data)).toEqual({ ok: false, code: '28P01' });
    expect(await rolesLike(secret.data.username)).toEqual([]);
    await expect(vault.renew({ lease_id: secret.lease_id, increment: 60 })).rejects.toMatchObject({ message: 'lease not found', response: { statusCode: 400 } });
    // Revoking it again, or an unknown lease, is 204 too.
    await vault.revoke({ lease_id: secret.lease_id });
  });

  it('mysql (MariaDB): reads database/creds, logs in, renews, revokes, and the account is gone', async () => {
    const { vault } = await login();
    const secret = await vault.read('database/creds/vault-my');
    expect(secret.lease_id).toMatch(/^database\/creds\/vault-my\/tsl_/);
    expect(await mysqlLogin(secret.data.username, secret.data.password)).toEqual({ ok: true, rows: 3 });
    const renewed = await vault.renew({ lease_id: secret.lease_id, increment: 600 });
    expect(renewed.lease_duration).toBeGreaterThanOrEqual(599);
    await vault.revoke({ lease_id: secret.lease_id });
    expect(await mysqlLogin(secret.data.username, secret.data.password)).toMatchObject({ ok: false, code: expect.stringMatching(/^ER_ACCESS_DENIED/) });
    expect(await mysqlUsersLike(secret.data.username)).toEqual([]);
  });

  it('aws: reads aws/creds with a key that works, revokes, and the user is gone', async () => {
    const { vault } = await login();
    const secret = await vault.read('aws/creds/vault-aws');
    expect(secret.lease_id).toMatch(/^aws\/creds\/vault-aws\/tsl_/);
    expect(secret.mount_type).toBe('aws');
    expect(Object.keys(secret.data).sort()).toEqual(['access_key', 'secret_key', 'security_token']);
    const sts = new STSClient({ region: 'us-east-1', endpoint: broker.doc.connections.aws.endpoint, credentials: { accessKeyId: secret.data.access_key, secretAccessKey: secret.data.secret_key } });
    try {
      expect((await sts.send(new GetCallerIdentityCommand({}))).Arn).toContain('user/tessera/');
      await vault.revoke({ lease_id: secret.lease_id });
      await expect(sts.send(new GetCallerIdentityCommand({}))).rejects.toMatchObject({ name: 'InvalidClientTokenId' });
    } finally {
      sts.destroy();
    }
    // A database role is not served by the aws mount, nor an aws role by the database mount.
    await expect(vault.read(`aws/creds/${broker.role}`)).rejects.toMatchObject({ response: { statusCode: 400 } });
    await expect(vault.read('database/creds/vault-aws')).rejects.toMatchObject({ response: { statusCode: 400 } });
  });

  it('revoke-self ends the token but not the leases it issued', async () => {
    const { vault } = await login();
    const secret = await vault.read(`database/creds/${broker.role}`);
    await vault.tokenRevokeSelf();
    await expect(vault.read(`database/creds/${broker.role}`)).rejects.toMatchObject({ message: 'permission denied', response: { statusCode: 403 } });
    await expect(vault.tokenLookupSelf()).rejects.toMatchObject({ response: { statusCode: 403 } });
    expect((await pgLogin(secret.data)).ok).toBe(true);
    // The workload still owns it: its JWT renews and revokes it.
    const again = client(jwt);
    await again.renew({ lease_id: secret.lease_id, increment: 60 });
    await again.revoke({ lease_id: secret.lease_id });
    expect((await pgLogin(secret.data)).ok).toBe(false);
  });

  it('reads a static secret at database/static-creds; other workloads get 403', async () => {
    await owned(broker, jwt, 'vault-legacy');
    const { vault } = await login();
    const secret = await vault.read('database/static-creds/vault-legacy');
    expect(secret).toMatchObject({ lease_id: '', renewable: false, lease_duration: 0 });
    expect(secret.data).toMatchObject({ username: 'tess_vault_static', rotation_period: 86400 });
    expect(secret.data.ttl).toBeGreaterThan(86000);
    expect(Date.parse(secret.data.last_vault_rotation)).toBeLessThanOrEqual(Date.now());
    expect((await pgLogin(secret.data)).ok).toBe(true);
    await expect(vault.read('aws/static-creds/vault-legacy')).rejects.toMatchObject({ response: { statusCode: 400 } });
    const { vault: other } = await login('ns/other/x');
    await expect(other.read('database/static-creds/vault-legacy')).rejects.toMatchObject({ message: 'permission denied', response: { statusCode: 403 } });
  });

  it('health and mount discovery', async () => {
    const health = await client().health();
    expect(health).toMatchObject({ initialized: true, sealed: false, standby: false });
    expect(typeof health.version).toBe('string');
    const mounts = await client().read('sys/internal/ui/mounts/database/creds/x');
    expect(mounts.data).toEqual({ path: 'database/', type: 'database', options: null });
    await expect(client().read('sys/internal/ui/mounts/secret/foo')).rejects.toMatchObject({ response: { statusCode: 404 } });
  });

  it('operators revoke by prefix exactly the matching leases; a workload gets 403', async () => {
    const { vault } = await login();
    const pg1 = await vault.read(`database/creds/${broker.role}`);
    const pg2 = await vault.read(`database/creds/${broker.role}`);
    const my = await vault.read('database/creds/vault-my');
    await expect(vault.revokePrefix({ path_prefix: `database/creds/${broker.role}` })).rejects.toMatchObject({ message: 'permission denied', response: { statusCode: 403 } });

    const { vault: ops } = await login('ops/alice');
    await ops.revokePrefix({ path_prefix: `database/creds/${broker.role}` });
    expect(await eventually(async () => !(await pgLogin(pg1.data)).ok && !(await pgLogin(pg2.data)).ok)).toBe(true);
    expect((await mysqlLogin(my.data.username, my.data.password)).ok).toBe(true);
    await ops.write(`sys/leases/revoke-prefix/database/creds/vault-my`, {});
    expect(await eventually(async () => !(await mysqlLogin(my.data.username, my.data.password)).ok)).toBe(true);
  });
});
