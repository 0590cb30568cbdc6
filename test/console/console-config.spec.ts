import { randomBytes } from 'node:crypto';
import { ConfigError, parseConfig } from '../../src/config/config.loader';

const env = { KEY: randomBytes(32).toString('base64') };
const base = (ui: unknown, issuers: unknown[] = [{ name: 'sso', type: 'oidc', issuer: 'https://sso.example' }]) => ({
  server: { host: '127.0.0.1', port: 8200 },
  storage: { postgres_url: 'postgres://postgres@127.0.0.1:5432/tessera' },
  queue: { redis_url: 'redis://127.0.0.1:6379' },
  encryption: { key: '${KEY}' },
  identity: { audience: 'tessera', issuers: [{ name: 'dev', type: 'jwt-svid', trust_domain: 'dev.example', jwks_file: 'config/dev/jwks.json' }, ...issuers] },
  operators: [{ issuer: 'sso', subject: 'alice@example.com' }],
  connections: {},
  ui,
});

function errorOf(doc: unknown): string {
  try {
    parseConfig(doc, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

describe('ui config (DESIGN §7, §12)', () => {
  const oidc = { issuer: 'sso', client_id: 'tessera-console', client_secret: 's3cret' };

  it('accepts a console on an oidc issuer, with defaults for scopes and session_ttl', () => {
    const config = parseConfig(base({ public_url: 'https://tessera.example/', oidc }), env);
    expect(config.ui).toEqual({ public_url: 'https://tessera.example', oidc: { ...oidc, scopes: ['openid', 'profile', 'email'] }, session_ttl: 8 * 3600, max_pending_sign_ins: 1000 });
    expect(parseConfig(base({ public_url: 'https://tessera.example/', oidc, max_pending_sign_ins: 5 }), env).ui!.max_pending_sign_ins).toBe(5);
    expect(errorOf(base({ public_url: 'https://tessera.example/', oidc, max_pending_sign_ins: 0 }))).toContain('max_pending_sign_ins');
    expect(parseConfig(base({ public_url: 'http://127.0.0.1:8200', oidc: { issuer: 'sso', client_id: 'c' }, session_ttl: '1h' }), env).ui!.session_ttl).toBe(3600);
    expect(parseConfig(base(undefined), env).ui).toBeUndefined();
  });

  it('ui.oidc.issuer must name an oidc issuer of identity.issuers', () => {
    expect(errorOf(base({ public_url: 'https://t.example', oidc: { ...oidc, issuer: 'nope' } }))).toContain('ui.oidc.issuer: must name an issuer of type oidc in identity.issuers (configured: "sso"); there is no issuer named "nope"');
    expect(errorOf(base({ public_url: 'https://t.example', oidc: { ...oidc, issuer: 'dev' } }))).toContain('"dev" is of type jwt-svid');
  });

  it('refuses a public_url that is not an https origin (http only on loopback), scopes without openid, unknown keys', () => {
    expect(errorOf(base({ public_url: 'http://tessera.example', oidc }))).toContain('ui.public_url');
    expect(errorOf(base({ public_url: 'https://tessera.example/console', oidc }))).toContain('ui.public_url: must be an origin');
    expect(errorOf(base({ public_url: 'https://t.example', oidc: { ...oidc, scopes: ['profile'] } }))).toContain('ui.oidc.scopes: must include "openid"');
    expect(errorOf(base({ public_url: 'https://t.example', oidc: { ...oidc, scopes: ['open id'] } }))).toContain('ui.oidc.scopes.0');
    expect(errorOf(base({ public_url: 'https://t.example', oidc, theme: 'dark' }))).toContain('ui: unknown key(s) "theme"');
    expect(errorOf(base({ public_url: 'https://t.example', oidc: { issuer: 'sso' } }))).toContain('ui.oidc.client_id');
  });
});
