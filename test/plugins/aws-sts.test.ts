import { PluginError } from '../../plugins/contract';
import { AwsIamPlugin } from '../../plugins/aws-iam/aws-iam.plugin';
import { awsIamConnectionSchema, awsIamRoleSchema } from '../../plugins/aws-iam/aws-iam.config';
import { REVOKE_POLICY_NAME, sourceIdentity, tagValue } from '../../plugins/aws-iam/aws-sts';
import { IamTestServer } from '../support/iam-server';

const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] };

/** What only the aws-iam plugin's STS credential types do, beyond the shared conformance suite. */
describe('aws-iam plugin: STS credentials', () => {
  const server = new IamTestServer();
  let plugin: AwsIamPlugin;
  let arn = '';
  const assumed = () => awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: [arn], session_policy: POLICY });
  const federation = awsIamRoleSchema.parse({ credential_type: 'federation_token', policy: POLICY });
  const inSeconds = (s: number) => new Date(Date.now() + s * 1000);
  const issue = (subject: string, role = assumed(), expiresAt = inSeconds(900)) =>
    plugin.createUser({ username: 'tsr_unused', password: 'unused', expiresAt, role, leaseId: 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA', subject });
  const lastSession = () => server.stsSessions().at(-1)!;

  beforeAll(async () => {
    const endpoint = await server.start();
    plugin = new AwsIamPlugin('aws', awsIamConnectionSchema.parse({ region: 'us-east-1', endpoint, access_key_id: 'AKIDTESSERAADMIN0000', secret_access_key: 'x', max_attempts: 1 }));
  });
  beforeEach(() => {
    server.reset();
    arn = server.createRole('deploy');
  });
  afterAll(async () => {
    await plugin.close();
    await server.stop();
  });

  it('SourceIdentity: the subject in AWS\'s characters; a long one keeps its end behind a hash, so two stay apart', async () => {
    await issue('spiffe://prod.example/ns/payments/api');
    expect(lastSession()).toMatchObject({ sessionName: 'tessera-tsl_AAAAAAAAAAAAAAAAAAAAAAAA', sourceIdentity: 'spiffe___prod.example_ns_payments_api' });

    const long = (n: string) => `spiffe://prod.example/${n}/${'x'.repeat(100)}/api`;
    await issue(long('a'));
    const a = lastSession();
    await issue(long('b'));
    const b = lastSession();
    for (const s of [a, b]) {
      expect(s.sourceIdentity).toMatch(/^[0-9a-f]{8}-[\w+=,.@-]{55}$/);
      expect(s.sourceIdentity!.endsWith('x_api')).toBe(true);
      expect(s.tags['tessera-subject']).toBe(tagValue(long(s === a ? 'a' : 'b')));
    }
    expect(a.sourceIdentity).not.toBe(b.sourceIdentity);
    // Too short for AWS, or made only of characters it refuses.
    await issue('a');
    expect(lastSession().sourceIdentity).toBe('a_');
    expect(sourceIdentity('repo:acme/app:ref:refs/heads/main')).toBe('repo_acme_app_ref_refs_heads_main');
    expect(tagValue(`é${'y'.repeat(300)}`)).toHaveLength(256);
    expect(tagValue('a"b{c}')).toBe('a_b_c_');
  });

  it('asks STS for the lease\'s TTL within what STS allows, with the session policy as a document', async () => {
    await issue('spiffe://x/y', assumed(), inSeconds(60));
    expect(lastSession().durationSeconds).toBe(900);
    await issue('spiffe://x/y', assumed(), inSeconds(5 * 3600));
    expect(lastSession().durationSeconds).toBe(3600);
    await issue('spiffe://x/y', federation, inSeconds(48 * 3600));
    expect(lastSession().durationSeconds).toBe(129600);
    expect(JSON.parse(lastSession().policy!)).toEqual(POLICY);
  });

  it('an AssumeRole STS refuses is a non-retryable error that names AWS\'s code and holds no secret', async () => {
    const role = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:role/nobody'] });
    const err = await issue('spiffe://x/y', role).catch((e) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect(err).toMatchObject({ retryable: false, message: expect.stringContaining('AccessDenied') });
    server.failNext('AssumeRole', 'ServiceUnavailable');
    expect(await issue('spiffe://x/y').catch((e) => e)).toMatchObject({ retryable: true });
    expect(server.stsSessions()).toEqual([]);
  });

  it('revokeSessions puts the deny policy on every role ARN; only assumed_role roles can', async () => {
    const second = server.createRole('deploy-eu', { path: '/teams/' });
    const role = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: [arn, second] });
    const before = new Date('2030-01-01T00:00:01.000Z');
    expect(await plugin.revokeSessions({ role, before })).toEqual({ targets: [arn, second] });
    for (const name of ['deploy', 'deploy-eu']) {
      expect(server.rolePolicy(name, REVOKE_POLICY_NAME)).toEqual({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThan: { 'aws:TokenIssueTime': '2030-01-01T00:00:01.000Z' } } }],
      });
    }
    for (const other of [federation, awsIamRoleSchema.parse({})]) {
      expect(await plugin.revokeSessions({ role: other, before }).catch((e) => e)).toMatchObject({ code: 'not_supported', retryable: false });
    }
    server.failNext('PutRolePolicy', 'ServiceUnavailable');
    expect(await plugin.revokeSessions({ role, before }).catch((e) => e)).toMatchObject({ retryable: true });
  });
});
