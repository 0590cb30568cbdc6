import { IssuedLease, LeaseKeeper } from '../../src/client';
import { childEnv } from '../../src/cli/run-env';

const lease = (role: string, credentials: Record<string, string>): IssuedLease => ({
  lease_id: `tsl_${role}`, role, plugin: 'aws-iam', credentials, ttl_seconds: 900, expires_at: '', max_expires_at: '', renewable: false,
});
const sts = { access_key_id: 'ASIAONE', secret_access_key: 's1', session_token: 'tok1', expiration: '2030-01-01T00:00:00Z' };

describe('tessera run: STS credentials', () => {
  it('sets AWS_SESSION_TOKEN with the keys, replacing the parent\'s', () => {
    const env = childEnv({ AWS_SESSION_TOKEN: 'parent', AWS_PROFILE: 'dev' }, [lease('deploy-sts', sts)], 'run');
    expect(env).toMatchObject({ AWS_ACCESS_KEY_ID: 'ASIAONE', AWS_SECRET_ACCESS_KEY: 's1', AWS_SESSION_TOKEN: 'tok1', TESSERA_DEPLOY_STS_AWS_SESSION_TOKEN: 'tok1' });
    expect(env.AWS_PROFILE).toBeUndefined();
  });

  it('a second AWS lease keeps the first one\'s session token in the plain variables', () => {
    const other = { access_key_id: 'ASIATWO', secret_access_key: 's2', session_token: 'tok2', expiration: '' };
    const env = childEnv({}, [lease('deploy-sts', sts), lease('other', other)], 'run');
    expect(env).toMatchObject({ AWS_ACCESS_KEY_ID: 'ASIAONE', AWS_SESSION_TOKEN: 'tok1', TESSERA_OTHER_AWS_SESSION_TOKEN: 'tok2' });
  });

  it('an IAM user lease (no session token) leaves none set', () => {
    const env = childEnv({ AWS_SESSION_TOKEN: 'parent' }, [lease('bot', { access_key_id: 'AKIA', secret_access_key: 's', iam_user: 'u' })], 'run');
    expect(env.AWS_SESSION_TOKEN).toBeUndefined();
  });
});

describe('tessera run: a lease that cannot be renewed', () => {
  it('is never renewed (its max_expires_at is its expires_at); the workload is told when it ends', () => {
    const expires = new Date(Date.now() + 900_000).toISOString();
    const renew = jest.fn();
    const warnings: string[] = [];
    const keeper = new LeaseKeeper({ renew }, { ...lease('deploy-sts', sts), expires_at: expires, max_expires_at: expires }, { onWarning: (m) => warnings.push(m) });
    keeper.start();
    keeper.stop();
    expect(renew).not.toHaveBeenCalled();
    expect(warnings).toEqual([expect.stringContaining(`cannot be renewed further; its credentials stop working then`)]);
  });
});
