import { execFileSync } from 'node:child_process';
import { IssuedLease } from '../../src/client';
import { shellQuote } from '../../src/cli/output';
import { childEnv, credentialVars, staticVars } from '../../src/cli/run-env';

const lease = (role: string, plugin: string, credentials: Record<string, string | number>): IssuedLease => ({
  lease_id: `tsl_${role}`,
  role,
  plugin,
  credentials,
  ttl_seconds: 60,
  expires_at: '2030-01-01T00:00:00.000Z',
  max_expires_at: '2030-01-01T01:00:00.000Z',
  renewable: true,
});

describe('environment for tessera run', () => {
  it('postgres: PG* variables and a DATABASE_URL whose parts are URL-encoded', () => {
    const vars = credentialVars('postgres', { username: 'u@x', password: 'p:/@%#?', host: '127.0.0.1', port: 5433, database: 'my db' });
    expect(vars).toEqual({
      PGUSER: 'u@x',
      PGPASSWORD: 'p:/@%#?',
      PGHOST: '127.0.0.1',
      PGPORT: '5433',
      PGDATABASE: 'my db',
      DATABASE_URL: 'postgres://u%40x:p%3A%2F%40%25%23%3F@127.0.0.1:5433/my%20db',
    });
    const url = new URL(vars.DATABASE_URL);
    expect([decodeURIComponent(url.username), decodeURIComponent(url.password)]).toEqual(['u@x', 'p:/@%#?']);
    expect(credentialVars('postgres', { username: 'u', password: 'p', host: '::1', port: 5432, database: 'd' }).DATABASE_URL).toBe('postgres://u:p@[::1]:5432/d');
    expect(credentialVars('postgres', { username: 'u', password: 'p' })).toEqual({ PGUSER: 'u', PGPASSWORD: 'p' });
  });

  it('mysql and aws-iam variables; unknown plugins get TESSERA_<FIELD>', () => {
    expect(credentialVars('mysql', { username: 'u', password: 'p', host: 'db', port: 3306, database: 'test' })).toEqual({
      MYSQL_USER: 'u',
      MYSQL_PASSWORD: 'p',
      MYSQL_HOST: 'db',
      MYSQL_TCP_PORT: '3306',
      MYSQL_DATABASE: 'test',
    });
    expect(credentialVars('aws-iam', { access_key_id: 'AKIA1', secret_access_key: 's', iam_user: 'u' })).toEqual({ AWS_ACCESS_KEY_ID: 'AKIA1', AWS_SECRET_ACCESS_KEY: 's' });
    expect(credentialVars('mongodb', { user: 'u', 'api-key': 'k' })).toEqual({ TESSERA_USER: 'u', TESSERA_API_KEY: 'k' });
  });

  it('redis: REDIS_USERNAME, REDIS_PASSWORD and a REDIS_URL whose user and password are URL-encoded', () => {
    const vars = credentialVars('redis', { username: 'tsr_cache_ro_x', password: 'p:/@%#?', host: '127.0.0.1', port: 6380 });
    expect(vars).toEqual({ REDIS_USERNAME: 'tsr_cache_ro_x', REDIS_PASSWORD: 'p:/@%#?', REDIS_URL: 'redis://tsr_cache_ro_x:p%3A%2F%40%25%23%3F@127.0.0.1:6380' });
    const url = new URL(vars.REDIS_URL);
    expect([decodeURIComponent(url.username), decodeURIComponent(url.password), url.hostname, url.port]).toEqual(['tsr_cache_ro_x', 'p:/@%#?', '127.0.0.1', '6380']);
    expect(credentialVars('redis', { username: 'u', password: 'p', host: '::1', port: 6379, tls: 'true' }).REDIS_URL).toBe('rediss://u:p@[::1]:6379');
    expect(credentialVars('redis', { username: 'u', password: 'p' })).toEqual({ REDIS_USERNAME: 'u', REDIS_PASSWORD: 'p' });
    expect(staticVars('cache-legacy', { plugin: 'redis', username: 'legacy_app', password: 'p', host: 'cache', port: 6379 })).toMatchObject({
      REDIS_USERNAME: 'legacy_app',
      REDIS_URL: 'redis://legacy_app:p@cache:6379',
      TESSERA_CACHE_LEGACY_REDIS_PASSWORD: 'p',
    });
  });

  it('redis: a static secret on a rediss:// connection gives a rediss:// REDIS_URL, as a lease does', () => {
    // The answer of GET /v1/static/{name}/creds on a rediss:// connection (the plugin adds tls: "true").
    const answer = { name: 'cache-legacy', plugin: 'redis', username: 'legacy_app', password: 'p@ss', host: 'cache.internal', port: 6380, tls: 'true', version: 2 };
    const vars = staticVars('cache-legacy', answer);
    expect(vars).toMatchObject({ REDIS_URL: 'rediss://legacy_app:p%40ss@cache.internal:6380', TESSERA_CACHE_LEGACY_REDIS_URL: 'rediss://legacy_app:p%40ss@cache.internal:6380' });
    expect(vars.REDIS_URL).toBe(credentialVars('redis', answer).REDIS_URL);
    expect(staticVars('cache-legacy', { ...answer, tls: undefined }).REDIS_URL).toBe('redis://legacy_app:p%40ss@cache.internal:6380');
  });

  it('first role of a plugin owns the plain names; every role gets TESSERA_<ROLE>_ names; stale AWS settings are cleared', () => {
    const env = childEnv(
      { PATH: '/bin', AWS_SESSION_TOKEN: 'old', AWS_PROFILE: 'dev', PGUSER: 'parent' },
      [lease('app-ro', 'postgres', { username: 'a', password: 'pa' }), lease('audit.rw', 'postgres', { username: 'b', password: 'pb' }), lease('deploy', 'aws-iam', { access_key_id: 'K', secret_access_key: 'S' })],
      'run-1',
    );
    expect(env).toMatchObject({ PATH: '/bin', PGUSER: 'a', PGPASSWORD: 'pa', TESSERA_APP_RO_PGUSER: 'a', TESSERA_AUDIT_RW_PGUSER: 'b', TESSERA_AUDIT_RW_PGPASSWORD: 'pb' });
    expect(env).toMatchObject({ AWS_ACCESS_KEY_ID: 'K', TESSERA_DEPLOY_AWS_SECRET_ACCESS_KEY: 'S', TESSERA_RUN_ID: 'run-1' });
    expect(env.AWS_SESSION_TOKEN).toBeUndefined();
    expect(env.AWS_PROFILE).toBeUndefined();
  });

  it('static secrets: TESSERA_<NAME>_<FIELD> always, plus the plugin\'s own variables when the answer names it', () => {
    expect(staticVars('batch-keys', { name: 'batch-keys', plugin: 'aws-iam', access_key_id: 'K', secret_access_key: 'S', version: 1 })).toEqual({
      AWS_ACCESS_KEY_ID: 'K',
      AWS_SECRET_ACCESS_KEY: 'S',
      TESSERA_BATCH_KEYS_AWS_ACCESS_KEY_ID: 'K',
      TESSERA_BATCH_KEYS_AWS_SECRET_ACCESS_KEY: 'S',
      TESSERA_BATCH_KEYS_ACCESS_KEY_ID: 'K',
      TESSERA_BATCH_KEYS_SECRET_ACCESS_KEY: 'S',
    });
    expect(staticVars('billing', { username: 'b', password: 'p', version: 3 })).toEqual({ TESSERA_BILLING_USERNAME: 'b', TESSERA_BILLING_PASSWORD: 'p' });
    expect(staticVars('billing', { plugin: 'postgres', username: 'b', password: 'p' })).toMatchObject({
      PGUSER: 'b',
      PGPASSWORD: 'p',
      TESSERA_BILLING_PGUSER: 'b',
      TESSERA_BILLING_USERNAME: 'b',
    });
  });

  it('shell quoting survives a real shell', () => {
    const nasty = `it's "$HOME" \`id\` \\ ; $(rm -rf /) \n end`;
    expect(execFileSync('sh', ['-c', `printf %s ${shellQuote(nasty)}`], { encoding: 'utf8' })).toBe(nasty);
  });

  it('the child never inherits the token that leased its credentials', () => {
    const env = childEnv({ PATH: '/bin', TESSERA_TOKEN: 'secret-token', TESSERA_TOKEN_FILE: '/run/token' }, [], 'run-1');
    expect(env.TESSERA_TOKEN).toBeUndefined();
    expect(env.TESSERA_TOKEN_FILE).toBeUndefined();
    expect(env).toMatchObject({ PATH: '/bin', TESSERA_RUN_ID: 'run-1' });
  });
});
