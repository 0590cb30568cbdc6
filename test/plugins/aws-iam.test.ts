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
    await expect(plugin.revokeUser({ username: 'tsr_ghost_aaaaaaaaaaaa', role, issuedAt: new Date(Date.now() - 3_600_000) })).resolves.toBeUndefined();
    await expect(plugin.revokeUser({ username: 'tsr_ghost_aaaaaaaaaaaa', role })).resolves.toBeUndefined();
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
    expect(await plugin.verifyLogin({ username: 'tsr_half_dddddddddddd', keyId: String(credentials.access_key_id), password: String(credentials.secret_access_key) })).toBe(false);
  });

  it('the connection config names its problems', () => {
    expect(() => awsIamConnectionSchema.parse({ region: 'us-east-1', access_key_id: 'AKIDTESSERAADMIN0000' })).toThrow(/both access_key_id and secret_access_key/);
    expect(() => awsIamConnectionSchema.parse({ region: 'mars' })).toThrow(/AWS region/);
    expect(() => awsIamRoleSchema.parse({ policy_arns: ['arn:aws:s3:::bucket'] })).toThrow(/IAM policy ARN/);
  });
});
