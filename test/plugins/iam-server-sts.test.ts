import { GetRolePolicyCommand, IAMClient, ListRolesCommand, PutRolePolicyCommand } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, AssumeRoleCommandInput, GetCallerIdentityCommand, GetFederationTokenCommand, STSClient } from '@aws-sdk/client-sts';
import { IamTestServer } from '../support/iam-server';

/** The STS half of the IAM test server answers as real STS does, through the real SDK. */
describe('IAM test server: STS and IAM roles', () => {
  const server = new IamTestServer();
  let endpoint = '';
  let admin: STSClient;
  let iam: IAMClient;
  let deployArn = '';
  const adminCreds = { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' };
  const client = <T>(C: new (cfg: object) => T, credentials: object) => new C({ region: 'us-east-1', endpoint, credentials, maxAttempts: 1 });
  const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: { name?: string; message?: string }) => `${e.name}: ${e.message}`);
  const assume = (input: Partial<AssumeRoleCommandInput> = {}) => admin.send(new AssumeRoleCommand({ RoleArn: deployArn, RoleSessionName: 'tessera-one', ...input }));
  const asSession = (c: { AccessKeyId?: string; SecretAccessKey?: string; SessionToken?: string }) => {
    const creds = { accessKeyId: c.AccessKeyId!, secretAccessKey: c.SecretAccessKey!, sessionToken: c.SessionToken! };
    return { sts: client(STSClient, creds), iam: client(IAMClient, creds) };
  };

  beforeAll(async () => {
    endpoint = await server.start();
    admin = client(STSClient, adminCreds);
    iam = client(IAMClient, adminCreds);
  });
  beforeEach(() => {
    server.reset();
    deployArn = server.createRole('deploy', { maxSessionDuration: 7200 });
  });
  afterAll(async () => {
    admin.destroy();
    iam.destroy();
    await server.stop();
  });

  it('AssumeRole answers with session credentials; the session is recorded with its name, source identity and tags', async () => {
    const out = await assume({ DurationSeconds: 900, SourceIdentity: 'payments.api', Tags: [{ Key: 'tessera-subject', Value: 'spiffe://x/y' }] });
    expect(out.Credentials?.AccessKeyId).toMatch(/^ASIA/);
    expect(out.Credentials?.Expiration).toBeInstanceOf(Date);
    expect(out.AssumedRoleUser?.Arn).toBe('arn:aws:sts::123456789012:assumed-role/deploy/tessera-one');
    expect(out.SourceIdentity).toBe('payments.api');
    const [session] = server.stsSessions();
    expect(session).toMatchObject({ sessionName: 'tessera-one', sourceIdentity: 'payments.api', tags: { 'tessera-subject': 'spiffe://x/y' }, durationSeconds: 900, roleArn: deployArn });
    const { sts } = asSession(out.Credentials!);
    expect((await sts.send(new GetCallerIdentityCommand({}))).Arn).toBe(out.AssumedRoleUser?.Arn);
  });

  it.each([
    [{ DurationSeconds: 899 }, 'ValidationError: 1 validation error detected: Value \'899\' at \'durationSeconds\' failed to satisfy constraint: Member must have value greater than or equal to 900'],
    [{ DurationSeconds: 7201 }, 'ValidationError: The requested DurationSeconds exceeds the MaxSessionDuration set for this role.'],
    [{ RoleSessionName: 'x' }, 'ValidationError: 1 validation error detected: Value \'x\' at \'roleSessionName\' failed to satisfy constraint: Member must have length greater than or equal to 2'],
    [{ RoleSessionName: 'a'.repeat(65) }, 'roleSessionName\' failed to satisfy constraint: Member must have length less than or equal to 64'],
    [{ RoleSessionName: 'spiffe://x' }, 'ValidationError: 1 validation error detected: Value \'spiffe://x\' at \'roleSessionName\' failed to satisfy constraint'],
    [{ SourceIdentity: 'spiffe://x/y' }, 'at \'sourceIdentity\' failed to satisfy constraint'],
    [{ SourceIdentity: 'a'.repeat(65) }, 'at \'sourceIdentity\' failed to satisfy constraint: Member must have length less than or equal to 64'],
    [{ RoleArn: 'arn:aws:iam::123456789012:role/nobody' }, 'AccessDenied: User: arn:aws:iam::123456789012:user/tessera-admin is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/nobody'],
    [{ Tags: [{ Key: 'k', Value: 'a'.repeat(257) }] }, 'ValidationError'],
    [{ Policy: '{not json' }, 'MalformedPolicyDocument'],
  ])('AssumeRole refuses %j as STS does', async (input, expected) => {
    expect(await codeOf(assume(input))).toContain(expected);
    expect(server.stsSessions()).toEqual([]);
  });

  it('a role whose trust policy requires an external id refuses AssumeRole without it', async () => {
    const arn = server.createRole('partner', { externalId: 'tenant-42' });
    expect(await codeOf(assume({ RoleArn: arn }))).toMatch(/^AccessDenied/);
    expect(await codeOf(assume({ RoleArn: arn, ExternalId: 'tenant-41' }))).toMatch(/^AccessDenied/);
    expect(await codeOf(assume({ RoleArn: arn, ExternalId: 'tenant-42' }))).toBe('ok');
  });

  it('GetFederationToken: a federated user named as asked, 900 s .. 36 h, never with session credentials', async () => {
    const policy = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] });
    const out = await admin.send(new GetFederationTokenCommand({ Name: 'tessera-fed', DurationSeconds: 129600, Policy: policy }));
    expect(out.FederatedUser?.Arn).toBe('arn:aws:sts::123456789012:federated-user/tessera-fed');
    expect(server.stsSessions()[0]).toMatchObject({ kind: 'federated-user', policy, durationSeconds: 129600 });
    expect(await codeOf(admin.send(new GetFederationTokenCommand({ Name: 'x'.repeat(33) })))).toMatch(/^ValidationError.*'name'.*less than or equal to 32/);
    expect(await codeOf(admin.send(new GetFederationTokenCommand({ Name: 'tessera-fed', DurationSeconds: 129601 })))).toMatch(/^ValidationError.*durationSeconds/);
    const { sts } = asSession(out.Credentials!);
    expect(await codeOf(sts.send(new GetFederationTokenCommand({ Name: 'again' })))).toMatch(/^AccessDenied/);
  });

  it('a deny on aws:TokenIssueTime cuts off the sessions issued before it; later ones and GetCallerIdentity still work', async () => {
    const old = asSession((await assume()).Credentials!);
    expect(await codeOf(old.iam.send(new ListRolesCommand({})))).toBe('ok');
    server.advanceClock(2); // token issue times have whole seconds: the deny's time is after the old session's
    const before = new Date(Date.now() + 2000 - 500).toISOString();
    const PolicyDocument = JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThan: { 'aws:TokenIssueTime': before } } }] });
    await iam.send(new PutRolePolicyCommand({ RoleName: 'deploy', PolicyName: 'AWSRevokeOlderSessions', PolicyDocument }));
    expect(decodeURIComponent((await iam.send(new GetRolePolicyCommand({ RoleName: 'deploy', PolicyName: 'AWSRevokeOlderSessions' }))).PolicyDocument!)).toBe(PolicyDocument);

    expect(await codeOf(old.iam.send(new ListRolesCommand({})))).toMatch(/^AccessDenied: User: arn:aws:sts::123456789012:assumed-role\/deploy\/tessera-one is not authorized to perform: iam:ListRoles with an explicit deny/);
    expect(await codeOf(old.sts.send(new GetCallerIdentityCommand({})))).toBe('ok'); // as in AWS
    server.advanceClock(1);
    const fresh = asSession((await assume({ RoleSessionName: 'tessera-two' })).Credentials!);
    expect(await codeOf(fresh.iam.send(new ListRolesCommand({})))).toBe('ok');
  });

  it('an expired session is refused with ExpiredToken; a wrong session token with InvalidClientTokenId', async () => {
    const creds = (await assume({ DurationSeconds: 900 })).Credentials!;
    const live = asSession(creds);
    const forged = asSession({ ...creds, SessionToken: 'forged' });
    expect(await codeOf(forged.sts.send(new GetCallerIdentityCommand({})))).toMatch(/^InvalidClientTokenId/);
    expect(await codeOf(live.sts.send(new GetCallerIdentityCommand({})))).toBe('ok');
    server.advanceClock(901);
    expect(await codeOf(live.sts.send(new GetCallerIdentityCommand({})))).toMatch(/^ExpiredToken/);
    expect(await codeOf(live.iam.send(new ListRolesCommand({})))).toMatch(/^ExpiredToken/);
  });
});
