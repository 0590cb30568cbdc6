import { CreateLoginProfileCommand, CreateServiceSpecificCredentialCommand, EnableMFADeviceCommand, IAMClient, UploadSSHPublicKeyCommand, UploadSigningCertificateCommand } from '@aws-sdk/client-iam';
import { PluginError } from '../../plugins/contract';
import { AwsIamPlugin } from '../../plugins/aws-iam/aws-iam.plugin';
import { awsIamConnectionSchema, awsIamRoleSchema } from '../../plugins/aws-iam/aws-iam.config';
import { IamTestServer } from '../support/iam-server';

/** What only the IAM plugin does, beyond the shared conformance suite. */
describe('aws-iam plugin specifics', () => {
  const server = new IamTestServer();
  let plugin: AwsIamPlugin;
  const role = awsIamRoleSchema.parse({ inline_policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] } });
  const expiresAt = new Date(Date.now() + 60_000);

  beforeAll(async () => {
    const endpoint = await server.start();
    plugin = new AwsIamPlugin(
      'aws',
      awsIamConnectionSchema.parse({ region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', wait_for_key: true, max_attempts: 1 }),
    );
  });
  afterAll(async () => {
    await plugin.close();
    await server.stop();
  });

  it('a user missing moments after its lease went live is "not visible yet": retry, not success', async () => {
    const err = await plugin.revokeUser({ username: 'tsr_ghost_aaaaaaaaaaaa', role, issuedAt: new Date() }).catch((e) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(err.retryable).toBe(true);
    // Long after, or for a lease that never went live, missing means gone.
    await expect(plugin.revokeUser({ username: 'tsr_ghost_aaaaaaaaaaaa', role, issuedAt: new Date(Date.now() - 3_600_000) })).resolves.toEqual({});
    await expect(plugin.revokeUser({ username: 'tsr_ghost_aaaaaaaaaaaa', role })).resolves.toEqual({});
  });

  it('revoke deletes the user and its keys of a lease issued as an IAM user after its role was switched to STS', async () => {
    const { credentials } = await plugin.createUser({ username: 'tsr_switch_dddddddddddd', password: 'unused', expiresAt, role });
    expect(server.accessKeys('tsr_switch_dddddddddddd')).toHaveLength(1);
    const nowSts = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:role/deploy'] });
    await expect(plugin.revokeUser({ username: 'tsr_switch_dddddddddddd', role: nowSts, issuedAt: new Date(Date.now() - 60_000) })).resolves.toEqual({});
    expect(server.hasUser('tsr_switch_dddddddddddd')).toBe(false);
    expect(server.accessKeys('tsr_switch_dddddddddddd')).toEqual([]);
    expect((await plugin.verifyLogin({ username: 'tsr_switch_dddddddddddd', keyId: credentials.access_key_id as string, password: 'x' })).ok).toBe(false);
  });

  it('for an STS role, a user that does not exist is gone at once, not "not visible yet" (no retries)', async () => {
    for (const credential_type of ['assumed_role', 'federation_token'] as const) {
      const sts = awsIamRoleSchema.parse(
        credential_type === 'assumed_role' ? { credential_type, role_arns: ['arn:aws:iam::123456789012:role/deploy'] } : { credential_type, policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] } },
      );
      await expect(plugin.revokeUser({ username: 'tsr_never_eeeeeeeeeeee', role: sts, issuedAt: new Date() })).resolves.toEqual({});
    }
  });

  it('with wait_for_key, issue answers only once the new key signs a call', async () => {
    const before = server.calls.length;
    const { credentials } = await plugin.createUser({ username: 'tsr_wait_bbbbbbbbbbbb', password: 'unused', expiresAt, role });
    expect(server.calls.slice(before)).toContain('GetCallerIdentity');
    expect(server.accessKeys('tsr_wait_bbbbbbbbbbbb')).toEqual([{ id: credentials.access_key_id, status: 'Active' }]);
    await plugin.revokeUser({ username: 'tsr_wait_bbbbbbbbbbbb', role });
  });

  it('a failure at the last step (CreateAccessKey) undoes the user and its policy', async () => {
    server.failNext('CreateAccessKey', 'LimitExceeded');
    const err = await plugin.createUser({ username: 'tsr_undo_cccccccccccc', password: 'unused', expiresAt, role }).catch((e) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(server.hasUser('tsr_undo_cccccccccccc')).toBe(false);
  });

  it('revoke continues a half-finished revocation (keys already deleted, user still there)', async () => {
    const { credentials } = await plugin.createUser({ username: 'tsr_half_dddddddddddd', password: 'unused', expiresAt, role });
    server.failNext('DeleteUser', 'ServiceUnavailable');
    await expect(plugin.revokeUser({ username: 'tsr_half_dddddddddddd', role })).rejects.toMatchObject({ retryable: true });
    expect(server.accessKeys('tsr_half_dddddddddddd')).toEqual([]);
    expect(server.hasUser('tsr_half_dddddddddddd')).toBe(true);
    await plugin.revokeUser({ username: 'tsr_half_dddddddddddd', role });
    expect(server.hasUser('tsr_half_dddddddddddd')).toBe(false);
    expect((await plugin.verifyLogin({ username: 'tsr_half_dddddddddddd', keyId: String(credentials.access_key_id), password: String(credentials.secret_access_key) })).ok).toBe(false);
  });

  it('revoke removes every other credential someone added to the user (console password, SSH and service credentials, certificates, MFA)', async () => {
    const user = 'tsr_extra_eeeeeeeeeeee';
    await plugin.createUser({ username: user, password: 'unused', expiresAt, role });
    const iam = new IAMClient({ region: 'us-east-1', endpoint: (plugin as unknown as { iam: IAMClient }).iam.config.endpoint as never, credentials: { accessKeyId: 'AKIDTESSERAADMIN0000', secretAccessKey: 'x' } });
    try {
      await iam.send(new CreateLoginProfileCommand({ UserName: user, Password: 'Console-Passw0rd!' }));
      await iam.send(new UploadSSHPublicKeyCommand({ UserName: user, SSHPublicKeyBody: 'ssh-rsa AAAAB3Nza' }));
      await iam.send(new CreateServiceSpecificCredentialCommand({ UserName: user, ServiceName: 'codecommit.amazonaws.com' }));
      await iam.send(new UploadSigningCertificateCommand({ UserName: user, CertificateBody: '-----BEGIN CERTIFICATE-----' }));
      await iam.send(new EnableMFADeviceCommand({ UserName: user, SerialNumber: `arn:aws:iam::123456789012:mfa/${user}`, AuthenticationCode1: '123456', AuthenticationCode2: '654321' }));
    } finally {
      iam.destroy();
    }
    expect(server.otherCredentials(user)).toHaveLength(5);
    await plugin.revokeUser({ username: user, role });
    expect(server.otherCredentials(user)).toEqual([]);
    expect(server.hasUser(user)).toBe(false);
  });

  it('retire deletes one key, or every key but the ones kept', async () => {
    const user = 'tsr_keys_ffffffffffff';
    await plugin.createUser({ username: user, password: 'unused', expiresAt, role });
    const second = await plugin.setStaticSecret({ account: user, password: '' });
    expect(server.accessKeys(user)).toHaveLength(2);
    await plugin.retireStaticSecret({ account: user, keep: [second.handle!] });
    expect(server.accessKeys(user).map((k) => k.id)).toEqual([second.handle]);
    await plugin.retireStaticSecret({ account: user, handle: second.handle! });
    await plugin.retireStaticSecret({ account: user, handle: second.handle! }); // idempotent
    expect(server.accessKeys(user)).toEqual([]);
    await plugin.revokeUser({ username: user, role });
    await expect(plugin.retireStaticSecret({ account: user, keep: [] })).resolves.toEqual({}); // user gone: nothing left to retire
  });

  it('the connection config names its problems', () => {
    expect(() => awsIamConnectionSchema.parse({ region: 'us-east-1', access_key_id: 'AKIDTESSERAADMIN0000' })).toThrow(/both access_key_id and secret_access_key/);
    expect(() => awsIamConnectionSchema.parse({ region: 'mars' })).toThrow(/AWS region/);
    expect(() => awsIamRoleSchema.parse({ policy_arns: ['arn:aws:s3:::bucket'] })).toThrow(/IAM policy ARN/);
  });
});
