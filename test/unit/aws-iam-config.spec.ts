import { awsIamConnectionSchema } from '../../plugins/aws-iam/aws-iam.config';

describe('aws-iam connection config', () => {
  const connection = (access_key_id: unknown) => awsIamConnectionSchema.safeParse({ region: 'us-east-1', endpoint: 'http://127.0.0.1:5000', access_key_id, secret_access_key: 'x' });

  it.each(['test', 'testing', 'AKIAIOSFODNN7EXAMPLE'])('accepts any non-empty access_key_id (%s): moto and LocalStack use short ones', (id) => {
    expect(connection(id).success).toBe(true);
  });

  it.each(['', 'x'.repeat(129), 42])('refuses an empty, oversized or non-string access_key_id (%p)', (id) => {
    expect(connection(id).success).toBe(false);
  });
});
