import { randomBytes } from 'node:crypto';
import type { Request } from 'express';
import { ConfigError, parseConfig } from '../../src/config/config.loader';
import { vaultErrorSurface, vaultRouteMatcher } from '../../src/vault/vault-http';

const doc = (vault?: unknown) => ({
  server: { host: '127.0.0.1', port: 8200 },
  storage: { postgres_url: 'postgres://postgres@127.0.0.1:5432/tessera' },
  queue: { redis_url: 'redis://127.0.0.1:6379' },
  encryption: { key: randomBytes(32).toString('base64') },
  identity: { audience: 'tessera', issuers: [{ name: 'dev', type: 'jwt-svid', trust_domain: 'dev.example', jwks_file: 'config/dev/jwks.json' }] },
  connections: {},
  ...(vault === undefined ? {} : { vault }),
});
const req = (path: string, headers: Record<string, string> = {}) => ({ path, headers }) as unknown as Request;

describe('vault config', () => {
  it('has the documented defaults', () => {
    expect(parseConfig(doc(), {}).vault).toEqual({ token_ttl: 3600, token_max_ttl: 86400, database_mount: 'database', aws_mount: 'aws', revoke_leases_with_token: false });
  });

  it('refuses a token_ttl above token_max_ttl, equal mounts and unknown keys', () => {
    expect(() => parseConfig(doc({ token_ttl: '2h', token_max_ttl: '1h' }), {})).toThrow(ConfigError);
    expect(() => parseConfig(doc({ database_mount: 'x', aws_mount: 'x' }), {})).toThrow(ConfigError);
    expect(() => parseConfig(doc({ kv_mount: 'secret' }), {})).toThrow(/kv_mount/);
  });
});

describe('vault routes', () => {
  const config = parseConfig(doc({ database_mount: 'db' }), {});
  const isVault = vaultRouteMatcher(config);

  it('claims the Vault paths and leaves the native API alone', () => {
    for (const path of ['/v1/auth/jwt/login', '/v1/auth/kubernetes/login', '/v1/auth/token/lookup-self', '/v1/db/creds/r', '/v1/aws/creds/r', '/v1/sys/health']) {
      expect(isVault(req(path))).toBe(true);
    }
    for (const path of ['/v1/auth/bootstrap', '/v1/auth/bootstrap-secrets', '/v1/creds/r', '/v1/leases/x/renew', '/v1/database/creds/r', '/v1/health/ready', '/metrics']) {
      expect(isVault(req(path))).toBe(false);
    }
  });

  it('maps errors to Vault\'s status codes and messages', () => {
    const surface = vaultErrorSurface(config);
    const rendered: Array<[number, unknown]> = [];
    const res = { status: (s: number) => ({ json: (b: unknown) => rendered.push([s, b]) }) } as never;
    surface.render(req('/v1/sys/health'), res, { status: 401, code: 'invalid_token', message: 'bad signature' });
    surface.render(req('/v1/sys/health'), res, { status: 403, code: 'policy_denied', message: 'policy does not allow x' });
    surface.render(req('/v1/sys/health'), res, { status: 422, code: 'invalid_request', message: 'lease_id: required' });
    surface.render(req('/v1/sys/health'), res, { status: 503, code: 'target_unavailable', message: 'try again' });
    expect(rendered).toEqual([
      [403, { errors: ['permission denied'] }],
      [403, { errors: ['permission denied'] }],
      [400, { errors: ['lease_id: required'] }],
      [503, { errors: ['try again'] }],
    ]);
    expect(surface.matches(req('/v1/secret/data/x', { 'x-vault-request': 'true' }))).toBe(true);
    expect(surface.matches(req('/v1/creds/r'))).toBe(false);
  });
});
