import { awsIamPlugin } from '../../plugins/aws-iam/aws-iam.plugin';
import { awsIamRoleSchema } from '../../plugins/aws-iam/aws-iam.config';

const ARN = 'arn:aws:iam::123456789012:role/deploy';
const POLICY = { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' }] };
const problems = (v: unknown) => {
  const r = awsIamRoleSchema.safeParse(v);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('aws-iam role settings: credential types', () => {
  it('defaults to iam_user, today\'s behaviour', () => {
    expect(awsIamRoleSchema.parse({})).toEqual({ credential_type: 'iam_user', policy_arns: [], groups: [] });
    expect(awsIamPlugin.leaseTerms!(awsIamRoleSchema.parse({}))).toEqual({ renewable: true, revocable: true });
  });

  it('assumed_role: role ARNs, optional session policy and external id; not renewable, not revocable, TTL 900 s .. the role\'s maximum', () => {
    const role = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: [ARN], session_policy: POLICY, external_id: 'tenant-42' });
    expect(role).toMatchObject({ credential_type: 'assumed_role', role_arns: [ARN], external_id: 'tenant-42', max_session_duration: 3600 });
    expect(awsIamPlugin.leaseTerms!(role)).toEqual({ renewable: false, revocable: false, minTtl: 900, maxTtl: 3600 });
    const longer = awsIamRoleSchema.parse({ credential_type: 'assumed_role', role_arns: [ARN], max_session_duration: '12h' });
    expect(awsIamPlugin.leaseTerms!(longer).maxTtl).toBe(43200);
  });

  it('federation_token: a policy; TTL 900 s .. 36 h', () => {
    const role = awsIamRoleSchema.parse({ credential_type: 'federation_token', policy: POLICY });
    expect(awsIamPlugin.leaseTerms!(role)).toEqual({ renewable: false, revocable: false, minTtl: 900, maxTtl: 129600 });
  });

  it.each([
    [{ credential_type: 'assumed_role' }, 'role_arns'],
    [{ credential_type: 'assumed_role', role_arns: [] }, 'role_arns: an assumed_role role needs at least one role ARN'],
    [{ credential_type: 'assumed_role', role_arns: ['deploy'] }, 'role_arns.0: must be an IAM role ARN'],
    [{ credential_type: 'assumed_role', role_arns: ['arn:aws:iam::123456789012:policy/deploy'] }, 'role_arns.0: must be an IAM role ARN'],
    [{ credential_type: 'assumed_role', role_arns: [`${ARN}"&Action=DeleteRole`] }, 'role_arns.0: must be an IAM role ARN'],
    [{ credential_type: 'assumed_role', role_arns: [ARN], external_id: 'x' }, 'external_id'],
    [{ credential_type: 'assumed_role', role_arns: [ARN], max_session_duration: '13h' }, 'max_session_duration: must be at most 12h'],
    [{ credential_type: 'assumed_role', role_arns: [ARN], inline_policy: POLICY }, 'inline_policy'],
    [{ credential_type: 'federation_token' }, 'policy'],
    [{ credential_type: 'federation_token', policy: POLICY, role_arns: [ARN] }, 'role_arns'],
    [{ role_arns: [ARN] }, 'role_arns'],
    [{ credential_type: 'session' }, 'credential_type'],
  ])('refuses %j, naming the key', (settings, key) => {
    expect(problems(settings).join('\n')).toContain(key);
  });
});
