import { IAMClient, ListRolesCommand } from '@aws-sdk/client-iam';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { ConfigDoc, TestBroker, eventually, redisDump, startBroker, testConfigDoc } from '../support/broker';
import { IamTestServer } from '../support/iam-server';
import { cliEnv, spawnCli } from '../support/cli';
import { ConfigError, parseConfig } from '../../src/config/config.loader';
import { sourceIdentity } from '../../plugins/aws-iam/aws-sts';

const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] };
const SUBJECT = 'spiffe://test.example/ns/app/api';
/** A role in another account whose name is also a role of the connection's account. */
const FOREIGN_ARN = 'arn:aws:iam::210987654321:role/deploy';

/** STS credentials through the broker's HTTP API (DESIGN §14), against the IAM test server. */
describe('aws-iam STS roles through the API', () => {
  const iam = new IamTestServer();
  let broker: TestBroker;
  let workload: string;
  let operator: string;
  let endpoint = '';
  let deployArn = '';
  let deploy2Arn = '';

  const configure = (doc: ConfigDoc) => {
    doc.connections.aws = { plugin: 'aws-iam', region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'admin-secret', max_attempts: 1 };
    doc.roles['deploy-sts'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: [deployArn, deploy2Arn], external_id: 'tessera-test', default_ttl: '15m', max_ttl: '1h' };
    doc.roles['deploy-fed'] = { connection: 'aws', credential_type: 'federation_token', policy: POLICY, default_ttl: '15m', max_ttl: '36h' };
    doc.roles['deploy-user'] = { connection: 'aws', default_ttl: '15m', max_ttl: '1h', inline_policy: POLICY };
    doc.roles['deploy-foreign'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: [deploy2Arn, FOREIGN_ARN], default_ttl: '15m', max_ttl: '1h' };
    doc.policies[0].allow.push({ creds: ['deploy-sts', 'deploy-fed', 'deploy-user'] });
  };
  const clients = (c: Record<string, string>) => {
    const credentials = { accessKeyId: c.access_key_id, secretAccessKey: c.secret_access_key, sessionToken: c.session_token };
    const cfg = { region: 'us-east-1', endpoint, credentials, maxAttempts: 1 };
    return { sts: new STSClient(cfg), iam: new IAMClient(cfg) };
  };
  /** A signed call that a deny policy can refuse (AWS answers GetCallerIdentity whatever a policy says). */
  const listRoles = async (c: Record<string, string>) => {
    const { iam: client } = clients(c);
    try {
      await client.send(new ListRolesCommand({}));
      return 'ok';
    } catch (err) {
      return (err as Error).name;
    } finally {
      client.destroy();
    }
  };
  const issue = (role: string, body: unknown = {}) => broker.api('POST', `/v1/creds/${role}`, { token: workload, body });
  const audit = async (type: string, leaseId?: string) =>
    (await broker.state<{ actor: string; detail: any }>(`SELECT actor, body::jsonb->'detail' AS detail FROM audit_events WHERE type = $1 AND ($2::text IS NULL OR lease_id = $2) ORDER BY id`, [type, leaseId ?? null]));

  beforeAll(async () => {
    endpoint = await iam.start();
    deployArn = iam.createRole('deploy', { externalId: 'tessera-test' });
    deploy2Arn = iam.createRole('deploy-eu', { externalId: 'tessera-test' });
    broker = await startBroker('awssts', configure);
    workload = await broker.token('ns/app/api');
    operator = await broker.token('ops/alice');
  });
  afterAll(async () => {
    await broker.close();
    await iam.stop();
  });

  it('assumed_role: session credentials, named for the lease and the workload in AWS, not renewable', async () => {
    const res = await issue('deploy-sts', { ttl: '20m' });
    expect(res.status).toBe(201);
    const { lease_id, credentials } = res.body;
    expect(Object.keys(credentials).sort()).toEqual(['access_key_id', 'arn', 'expiration', 'secret_access_key', 'session_token']);
    expect(res.body).toMatchObject({ plugin: 'aws-iam', ttl_seconds: 1200, renewable: false });
    expect(res.body.max_expires_at).toBe(res.body.expires_at);
    expect(Math.abs(Date.parse(credentials.expiration) - Date.parse(res.body.expires_at))).toBeLessThan(2000);

    const session = iam.stsSessions().find((s) => s.keyId === credentials.access_key_id)!;
    expect(session).toMatchObject({
      roleArn: deployArn,
      sessionName: `tessera-${lease_id}`,
      sourceIdentity: sourceIdentity('test', SUBJECT),
      externalId: 'tessera-test',
      durationSeconds: 1200,
      tags: { 'tessera-subject': SUBJECT, 'tessera-issuer': 'test', 'tessera-lease': lease_id },
    });
    expect(credentials.arn).toBe(`arn:aws:sts::123456789012:assumed-role/deploy/tessera-${lease_id}`);
    const { sts } = clients(credentials);
    expect((await sts.send(new GetCallerIdentityCommand({}))).Arn).toBe(credentials.arn);
    sts.destroy();
    // The full subject is in the audit trail; the secret key and session token are nowhere but the answer.
    expect((await audit('lease.issued', lease_id))[0].actor).toBe(SUBJECT);
    const stored = JSON.stringify(await broker.state('SELECT body FROM audit_events')) + JSON.stringify(await broker.state('SELECT * FROM leases')) + (await redisDump(broker.doc.queue.prefix));
    for (const secret of [credentials.secret_access_key, credentials.session_token]) expect(stored).not.toContain(secret);

    // Renew: 409 not_renewable, and nothing changes.
    const renew = await broker.api('POST', `/v1/leases/${lease_id}/renew`, { token: workload, body: { increment: '30m' } });
    expect(renew.status).toBe(409);
    expect(renew.body.error.code).toBe('not_renewable');
    const view = await broker.api('GET', `/v1/leases/${lease_id}`, { token: workload });
    expect(view.body).toMatchObject({ state: 'active', expires_at: res.body.expires_at, max_expires_at: res.body.expires_at });
    expect(await audit('lease.renewed', lease_id)).toEqual([]);
  });

  it('revoking an STS lease ends the record only: no call to AWS, audited, and the credential lives until it expires', async () => {
    const { lease_id, credentials } = (await issue('deploy-sts')).body;
    const calls = iam.calls.length;
    const res = await broker.api('POST', `/v1/leases/${lease_id}/revoke`, { token: workload });
    expect(res).toMatchObject({ status: 200, body: { state: 'revoked' } });
    expect(iam.calls.slice(calls)).toEqual([]);
    expect((await audit('lease.revoked', lease_id))[0].detail).toMatchObject({ reason: 'revoked', credential_revoked: false });
    expect(await listRoles(credentials)).toBe('ok');
  });

  it('an expired STS lease is ended by the expiry machinery like any other', async () => {
    const { lease_id } = (await issue('deploy-sts')).body;
    await broker.state(`UPDATE leases SET expires_at = now() - interval '1 second' WHERE id = $1`, [lease_id]);
    expect(await eventually(async () => (await broker.api('GET', `/v1/leases/${lease_id}`, { token: workload })).body.state === 'revoked')).toBe(true);
    expect((await audit('lease.expired', lease_id))[0].detail).toMatchObject({ reason: 'expired', credential_revoked: false });
  });

  it('revoke-sessions: a credential issued before fails its next signed call, one issued after works; audited', async () => {
    const before = (await issue('deploy-sts')).body.credentials;
    expect(await listRoles(before)).toBe('ok');

    const res = await broker.api('POST', '/v1/roles/deploy-sts/revoke-sessions', { token: operator });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ role: 'deploy-sts', revoked_before: expect.any(String) });
    const cutOff = res.body.revoked_before;
    expect(Date.parse(cutOff)).toBeLessThanOrEqual(Date.now());
    const deny = { Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThan: { 'aws:TokenIssueTime': cutOff } } }] };
    expect(iam.rolePolicy('deploy', 'AWSRevokeOlderSessions')).toEqual(deny);
    expect(iam.rolePolicy('deploy-eu', 'AWSRevokeOlderSessions')).toEqual(deny);

    expect(await listRoles(before)).toBe('AccessDenied');
    const after = (await issue('deploy-sts')).body.credentials;
    expect(await listRoles(after)).toBe('ok');
    const [event] = await audit('role.sessions_revoked');
    expect(event).toMatchObject({ actor: 'spiffe://test.example/ops/alice', detail: { role: 'deploy-sts', revoked_before: cutOff, outcome: 'revoked', targets: [deployArn, deploy2Arn], failed: [] } });
  });

  it('revoke-sessions: operators only, assumed_role roles only, and a refusal changes nothing', async () => {
    const policies = () => [iam.rolePolicy('deploy', 'AWSRevokeOlderSessions'), iam.rolePolicy('deploy-eu', 'AWSRevokeOlderSessions')];
    const was = JSON.stringify(policies());
    const events = (await audit('role.sessions_revoked')).length;
    expect((await broker.api('POST', '/v1/roles/deploy-sts/revoke-sessions', { token: workload })).status).toBe(403);
    const fed = await broker.api('POST', '/v1/roles/deploy-fed/revoke-sessions', { token: operator });
    expect(fed.status).toBe(409);
    expect(fed.body.error).toMatchObject({ code: 'sessions_not_revocable', message: expect.stringContaining('assumed_role') });
    const pg = await broker.api('POST', `/v1/roles/${broker.role}/revoke-sessions`, { token: operator });
    expect(pg).toMatchObject({ status: 409, body: { error: { code: 'sessions_not_revocable' } } });
    expect((await broker.api('POST', '/v1/roles/nope/revoke-sessions', { token: operator })).status).toBe(404);
    expect(JSON.stringify(policies())).toBe(was);
    expect((await audit('role.sessions_revoked')).length).toBe(events);
  });

  it('revoke-sessions refuses a role ARN in another account (409 role_not_in_account, naming it), changes nothing, and audits the refusal', async () => {
    const policies = () => [iam.rolePolicy('deploy', 'AWSRevokeOlderSessions'), iam.rolePolicy('deploy-eu', 'AWSRevokeOlderSessions')];
    const was = JSON.stringify(policies());
    const calls = iam.calls.length;
    const events = (await audit('role.sessions_revoked')).length;
    const res = await broker.api('POST', '/v1/roles/deploy-foreign/revoke-sessions', { token: operator });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'role_not_in_account', message: expect.stringContaining(FOREIGN_ARN) });
    expect(res.body.error.message).toContain("in another account than the connection's credentials");
    // Neither the same-named local role nor the role listed before the foreign one got a policy.
    expect(iam.calls.slice(calls)).not.toContain('PutRolePolicy');
    expect(JSON.stringify(policies())).toBe(was);
    const all = await audit('role.sessions_revoked');
    expect(all.length).toBe(events + 1);
    expect(all.at(-1)!.detail).toMatchObject({ role: 'deploy-foreign', outcome: 'failed', error: 'role_not_in_account', targets: [], failed: [] });
  });

  it('revoke-sessions where one role\'s PutRolePolicy fails: 503 naming the role not done, and the audit event lists both', async () => {
    iam.failWhen('PutRolePolicy', { RoleName: 'deploy-eu' }, 'AccessDenied');
    try {
      const events = (await audit('role.sessions_revoked')).length;
      const eu = JSON.stringify(iam.rolePolicy('deploy-eu', 'AWSRevokeOlderSessions'));
      const res = await broker.api('POST', '/v1/roles/deploy-sts/revoke-sessions', { token: operator });
      expect(res.status).toBe(503);
      expect(res.body.error).toMatchObject({ code: 'sessions_partly_revoked', message: expect.stringContaining(`not on ${deploy2Arn} (AccessDenied)`) });
      expect(res.body.error.message).toContain(`revoked on ${deployArn}`);
      expect(JSON.stringify(iam.rolePolicy('deploy-eu', 'AWSRevokeOlderSessions'))).toBe(eu);
      const all = await audit('role.sessions_revoked');
      expect(all.length).toBe(events + 1);
      const { detail } = all.at(-1)!;
      expect(detail).toMatchObject({ role: 'deploy-sts', outcome: 'partial', targets: [deployArn], failed: [{ target: deploy2Arn, code: 'AccessDenied' }] });
      expect(iam.rolePolicy('deploy', 'AWSRevokeOlderSessions')).toMatchObject({ Statement: [{ Condition: { DateLessThan: { 'aws:TokenIssueTime': detail.revoked_before } } }] });
    } finally {
      iam.failWhen('PutRolePolicy', { RoleName: 'deploy-eu' }, null);
    }
  });

  it('tessera roles revoke-sessions ROLE does the same from the command line', async () => {
    const env = cliEnv({ TESSERA_ADDR: broker.url, TESSERA_TOKEN: operator });
    const ok = spawnCli(['roles', 'revoke-sessions', 'deploy-sts', '--output', 'json'], env);
    await ok.closed;
    expect(await ok.exited).toMatchObject({ code: 0 });
    const out = JSON.parse(ok.stdout());
    expect(out).toEqual({ role: 'deploy-sts', revoked_before: expect.any(String) });
    expect(iam.rolePolicy('deploy', 'AWSRevokeOlderSessions')).toMatchObject({ Statement: [{ Condition: { DateLessThan: { 'aws:TokenIssueTime': out.revoked_before } } }] });
    const refused = spawnCli(['roles', 'revoke-sessions', 'deploy-fed'], env);
    await refused.closed;
    expect((await refused.exited).code).not.toBe(0);
    expect(refused.stderr()).toContain('assumed_role');
  });

  it('federation_token: a federated user named for the lease, tagged with the workload', async () => {
    const res = await issue('deploy-fed', { ttl: '2h' });
    expect(res.status).toBe(201);
    const { lease_id, credentials } = res.body;
    expect(res.body).toMatchObject({ ttl_seconds: 7200, renewable: false });
    const session = iam.stsSessions().find((s) => s.keyId === credentials.access_key_id)!;
    expect(session).toMatchObject({ kind: 'federated-user', sessionName: `tessera-${lease_id}`.slice(0, 32), durationSeconds: 7200, tags: { 'tessera-subject': SUBJECT } });
    expect(JSON.parse(session.policy!)).toEqual(POLICY);
    expect(await listRoles(credentials)).toBe('ok');
  });

  it('a ttl below what STS allows is a 422 and leases nothing', async () => {
    const sessions = iam.stsSessions().length;
    const leases = (await broker.state('SELECT count(*)::int AS n FROM leases'))[0].n;
    const res = await issue('deploy-sts', { ttl: '10m' });
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'ttl_too_short', message: expect.stringContaining('900s') });
    expect(iam.stsSessions().length).toBe(sessions);
    expect((await broker.state('SELECT count(*)::int AS n FROM leases'))[0].n).toBe(leases);
  });

  it('the Vault API returns security_token (and arn) for STS roles; renew is refused as Vault refuses it', async () => {
    const read = await broker.api('GET', '/v1/aws/creds/deploy-sts', { headers: { 'x-vault-token': workload } });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ renewable: false, lease_duration: 900, mount_type: 'aws' });
    expect(Object.keys(read.body.data).sort()).toEqual(['access_key', 'arn', 'secret_key', 'security_token']);
    const session = iam.stsSessions().find((s) => s.keyId === read.body.data.access_key)!;
    expect(read.body.data.security_token).toBe(session.token);
    const renew = await broker.api('PUT', '/v1/sys/leases/renew', { headers: { 'x-vault-token': workload }, body: { lease_id: read.body.lease_id } });
    expect(renew).toMatchObject({ status: 400, body: { errors: ['lease is not renewable'] } });
    const lookup = await broker.api('PUT', '/v1/sys/leases/lookup', { headers: { 'x-vault-token': workload }, body: { lease_id: read.body.lease_id } });
    expect(lookup.body.data.renewable).toBe(false);
  });

  it("Vault's aws/sts/{role} path (GET and POST) leases STS roles; an IAM user role there is a 400 and the database mount has no sts/", async () => {
    for (const method of ['GET', 'POST'] as const) {
      const read = await broker.api(method, '/v1/aws/sts/deploy-fed', { headers: { 'x-vault-token': workload }, ...(method === 'POST' && { body: {} }) });
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ renewable: false, mount_type: 'aws' });
      expect(read.body.data.security_token).toEqual(expect.any(String));
      expect(iam.stsSessions().some((s) => s.keyId === read.body.data.access_key && s.token === read.body.data.security_token)).toBe(true);
    }
    const leases = (await broker.state('SELECT count(*)::int AS n FROM leases'))[0].n;
    const user = await broker.api('GET', '/v1/aws/sts/deploy-user', { headers: { 'x-vault-token': workload } });
    expect(user.status).toBe(400);
    expect(user.body.errors[0]).toContain('aws/creds/deploy-user');
    expect((await broker.api('GET', '/v1/database/sts/deploy-sts', { headers: { 'x-vault-token': workload } })).status).toBe(404);
    expect((await broker.state('SELECT count(*)::int AS n FROM leases'))[0].n).toBe(leases);
  });

  it('an STS lease whose role has since left the config is still ended without a call to AWS (the lease row says so)', async () => {
    const { lease_id } = (await issue('deploy-fed')).body;
    const key = broker.doc.encryption.key;
    await broker.close();
    broker = await startBroker(
      'awssts',
      (doc) => {
        configure(doc);
        doc.encryption.key = key;
        delete doc.roles['deploy-fed'];
        doc.policies[0].allow = doc.policies[0].allow.map((a: { creds?: string[] }) => (a.creds ? { ...a, creds: a.creds.filter((c) => c !== 'deploy-fed') } : a));
      },
      { reset: false },
    );
    const calls = iam.calls.length;
    const res = await broker.api('POST', `/v1/leases/${lease_id}/revoke`, { token: operator });
    expect(res).toMatchObject({ status: 200, body: { state: 'revoked' } });
    // The restarted broker's background probe of the connection may read; nothing may be changed.
    expect(iam.calls.slice(calls).filter((action) => !/^(Get|List)/.test(action))).toEqual([]);
    expect((await audit('lease.revoked', lease_id))[0].detail).toMatchObject({ credential_revoked: false });
  });

  it('an IAM user lease issued before its role was switched to assumed_role still has its user and key deleted on revoke', async () => {
    const issued = await issue('deploy-user');
    expect(issued.status).toBe(201);
    const { lease_id, credentials } = issued.body;
    const user = credentials.iam_user as string;
    expect(iam.accessKeys(user)).toHaveLength(1);
    const key = broker.doc.encryption.key;
    await broker.close();
    broker = await startBroker(
      'awssts',
      (doc) => {
        configure(doc);
        doc.encryption.key = key;
        doc.roles['deploy-user'] = { connection: 'aws', credential_type: 'assumed_role', role_arns: [deployArn], external_id: 'tessera-test', default_ttl: '15m', max_ttl: '1h' };
      },
      { reset: false },
    );
    const res = await broker.api('POST', `/v1/leases/${lease_id}/revoke`, { token: operator });
    expect(res).toMatchObject({ status: 200, body: { state: 'revoked' } });
    expect(iam.hasUser(user)).toBe(false);
    expect(iam.accessKeys(user)).toEqual([]);
    expect((await audit('lease.revoked', lease_id))[0].detail).toMatchObject({ reason: 'revoked' });
  });

  describe('config: bad STS roles stop start-up with a message naming the key', () => {
    const roleProblem = async (role: Record<string, unknown>) => {
      const doc = await testConfigDoc('awssts');
      configure(doc);
      doc.roles.bad = { connection: 'aws', default_ttl: '15m', max_ttl: '1h', ...role };
      try {
        parseConfig(doc, {}, 'test');
        return 'accepted';
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
    };
    it.each([
      [{ credential_type: 'assumed_role', role_arns: ['deploy'] }, 'roles.bad.role_arns.0: must be an IAM role ARN'],
      [{ credential_type: 'assumed_role' }, 'roles.bad.role_arns'],
      [{ credential_type: 'federation_token' }, 'roles.bad.policy'],
      [{ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:role/deploy'], max_ttl: '2h' }, 'roles.bad.max_ttl: must be at most 3600s'],
      [{ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:role/deploy'], default_ttl: '5m' }, 'roles.bad.default_ttl: must be at least 900s'],
      [{ credential_type: 'federation_token', policy: POLICY, max_ttl: '37h' }, 'roles.bad.max_ttl: must be at most 129600s'],
    ])('%j', async (role, message) => {
      expect(await roleProblem(role)).toContain(message);
    });
    it('a longer MaxSessionDuration allows a longer max_ttl', async () => {
      expect(await roleProblem({ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:role/deploy'], max_session_duration: '2h', max_ttl: '2h' })).toBe('accepted');
    });
  });
});
