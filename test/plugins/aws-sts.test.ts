import { PluginError } from '../../plugins/contract';
import { AwsIamPlugin } from '../../plugins/aws-iam/aws-iam.plugin';
import { awsIamConnectionSchema, awsIamRoleSchema } from '../../plugins/aws-iam/aws-iam.config';
import { REVOKE_POLICY_NAME, identityHash, sourceIdentity, tagValue } from '../../plugins/aws-iam/aws-sts';
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
    plugin.createUser({ username: 'tsr_unused', password: 'unused', expiresAt, role, leaseId: 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA', subject, issuer: 'spire' });
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

  it('SourceIdentity: the end of the subject in AWS\'s characters, then a hash of issuer and subject; tags name both', async () => {
    await issue('spiffe://prod.example/ns/payments/api');
    const s = lastSession();
    expect(s).toMatchObject({ sessionName: 'tessera-tsl_AAAAAAAAAAAAAAAAAAAAAAAA', sourceIdentity: sourceIdentity('spire', 'spiffe://prod.example/ns/payments/api') });
    expect(s.sourceIdentity).toMatch(/^spiffe___prod\.example_ns_payments_api\.[0-9a-f]{16}$/);
    expect(s.tags).toMatchObject({ 'tessera-subject': 'spiffe://prod.example/ns/payments/api', 'tessera-issuer': 'spire', 'tessera-lease': 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA' });
    // A long subject and a one-character one both make a SourceIdentity STS accepts.
    for (const subject of [`spiffe://prod.example/${'x'.repeat(300)}/api`, 'a', '']) {
      await issue(subject);
      expect(lastSession().sourceIdentity).toBe(sourceIdentity('spire', subject));
    }
  });

  describe('SourceIdentity tells every (issuer, subject) apart', () => {
    const AWS_NAME = /^[\w+=,.@-]{2,64}$/;
    const long = `spiffe://prod.example/ns/payments/${'x'.repeat(100)}/api`;
    it.each([
      ['characters AWS refuses', ['oidc', 'system:serviceaccount:prod:payments'], ['oidc', 'system_serviceaccount_prod_payments']],
      ['the same subject from two issuers', ['ci-a', 'repo:acme/app:ref:refs/heads/main'], ['ci-b', 'repo:acme/app:ref:refs/heads/main']],
      ['issuer and subject split differently', ['ab', 'c'], ['a', 'bc']],
      ['two long subjects that end alike', ['spire', long], ['spire', long.replace('payments', 'billing')]],
      // A short subject shaped like a long one's whole SourceIdentity is hashed itself, so it cannot equal it.
      ['a short subject forged to look like a long one\'s value', ['spire', long], ['spire', sourceIdentity('spire', long)]],
      ['a subject forged as another\'s tail and hash', ['spire', 'a'], ['spire', `a.${sourceIdentity('spire', 'a').split('.').pop()}`]],
    ])('%s', (_why, [i1, s1], [i2, s2]) => {
      const [a, b] = [sourceIdentity(i1, s1), sourceIdentity(i2, s2)];
      expect(a).not.toBe(b);
      for (const v of [a, b]) {
        expect(v).toMatch(AWS_NAME);
        expect(v.toLowerCase().startsWith('aws:')).toBe(false);
      }
    });

    it('holds its length and alphabet for any subject, and is the same for the same identity', () => {
      const subjects = ['', 'a', 'aws:x', '😀'.repeat(40), 'é/ü:ß', ' '.repeat(70), 'x'.repeat(1000), 'spiffe://a/b'];
      const seen = new Map<string, string>();
      for (const issuer of ['', 'spire', 'issuer with spaces']) {
        for (const subject of subjects) {
          const v = sourceIdentity(issuer, subject);
          expect(v).toMatch(AWS_NAME);
          expect(v.endsWith(`.${identityHash(issuer, subject)}`)).toBe(true);
          expect(sourceIdentity(issuer, subject)).toBe(v);
          const key = JSON.stringify([issuer, subject]);
          expect(seen.get(v) ?? key).toBe(key);
          seen.set(v, key);
        }
      }
    });
  });

  it('a tag value is cut to 256 whole code points, never half a surrogate pair', () => {
    expect(tagValue(`é${'y'.repeat(300)}`)).toHaveLength(256);
    expect(tagValue('a"b{c}')).toBe('a_b_c_');
    // 𝒜 is a letter outside the BMP: two UTF-16 units. Cut at an odd offset, the old slice kept a lone high surrogate.
    const cut = tagValue(`y${'𝒜'.repeat(200)}`);
    expect(cut).toBe(`y${'𝒜'.repeat(127)}`);
    expect(cut).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
    expect(tagValue('😀x')).toBe('_x'); // not a letter: one `_` for the whole character
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
    expect(await plugin.revokeSessions({ role, before })).toEqual({ targets: [arn, second], failed: [] });
    for (const name of ['deploy', 'deploy-eu']) {
      expect(server.rolePolicy(name, REVOKE_POLICY_NAME)).toEqual({
        Version: '2012-10-17',
        Statement: [{ Effect: 'Deny', Action: ['*'], Resource: ['*'], Condition: { DateLessThan: { 'aws:TokenIssueTime': '2030-01-01T00:00:01.000Z' } } }],
      });
    }
    for (const other of [federation, awsIamRoleSchema.parse({})]) {
      expect(await plugin.revokeSessions({ role: other, before }).catch((e) => e)).toMatchObject({ code: 'not_supported', retryable: false });
    }
    server.failNext('GetRole', 'ServiceUnavailable');
    expect(await plugin.revokeSessions({ role, before }).catch((e) => e)).toMatchObject({ retryable: true });
  });

  it('revokeSessions reports each role: one PutRolePolicy failing does not hide that the other was changed', async () => {
    const second = server.createRole('deploy-eu');
    const role = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: [arn, second] });
    server.failWhen('PutRolePolicy', { RoleName: 'deploy-eu' }, 'ServiceUnavailable');
    const out = await plugin.revokeSessions({ role, before: new Date('2030-01-01T00:00:01.000Z') });
    expect(out).toEqual({ targets: [arn], failed: [{ target: second, code: 'ServiceUnavailable', retryable: true, message: expect.stringContaining('ServiceUnavailable') }] });
    expect(server.rolePolicy('deploy', REVOKE_POLICY_NAME)).toBeDefined();
    expect(server.rolePolicy('deploy-eu', REVOKE_POLICY_NAME)).toBeUndefined();
  });

  it('revokeSessions refuses a role ARN of another account, even when a role of that name is here, and changes nothing', async () => {
    const foreign = 'arn:aws:iam::210987654321:role/deploy';
    const missing = 'arn:aws:iam::123456789012:role/nobody';
    for (const arns of [[arn, foreign], [missing, arn]]) {
      const role = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: arns });
      const before = server.calls.length;
      const err = await plugin.revokeSessions({ role, before: new Date('2030-01-01T00:00:01.000Z') }).catch((e) => e);
      expect(err).toBeInstanceOf(PluginError);
      expect(err).toMatchObject({ code: 'role_not_in_account', retryable: false });
      expect(err.message).toContain(arns.find((a) => a !== arn));
      expect(err.message).toContain("in another account than the connection's credentials");
      expect(server.calls.slice(before)).not.toContain('PutRolePolicy');
      expect(server.rolePolicy('deploy', REVOKE_POLICY_NAME)).toBeUndefined();
    }
  });
});
