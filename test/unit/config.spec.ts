import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfigFile, parseConfig } from '../../src/config/config.loader';

const base = () => ({
  server: { host: '127.0.0.1', port: 8200 },
  storage: { postgres_url: 'postgres://postgres@127.0.0.1:5432/tessera' },
  queue: { redis_url: 'redis://127.0.0.1:6379', prefix: 'tessera' },
  encryption: { key: '${KEY}' },
  identity: { audience: 'tessera', issuers: [{ name: 'dev', type: 'jwt-svid', trust_domain: 'dev.example', jwks_file: 'config/dev/jwks.json' }] },
  operators: ['spiffe://dev.example/ops/*'],
  policies: [{ name: 'p', subjects: ['spiffe://dev.example/ns/*'], allow: [{ creds: ['ro'], max_ttl: '1h' }] }],
  connections: { pg: { plugin: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/app' } },
  roles: { ro: { connection: 'pg', default_ttl: '15m', max_ttl: '1h', member_of: ['app_readonly'] } },
});
const env = { KEY: randomBytes(32).toString('base64') };

function errorOf(doc: unknown, e: NodeJS.ProcessEnv = env): string {
  try {
    parseConfig(doc, e);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

describe('config', () => {
  it('parses the development config shipped in config/tessera.yaml', () => {
    const config = loadConfigFile('config/tessera.yaml', { TESSERA_MASTER_KEY: env.KEY });
    expect(config.roles.get('payments-ro')).toMatchObject({ connection: 'app-pg', plugin: 'postgres', defaultTtl: 900, maxTtl: 3600 });
    expect(config.reconcile_every).toBe(30);
  });

  it('substitutes ${VAR} and names the key when the variable is unset', () => {
    expect(parseConfig(base(), env).encryption.key).toBe(env.KEY);
    expect(errorOf(base(), {})).toMatch(/encryption\.key: environment variable KEY is not set/);
  });

  it.each<[string, (d: any) => void, RegExp]>([
    ['bad duration', (d) => (d.roles.ro.default_ttl = 'soon'), /roles\.ro\.default_ttl: invalid duration/],
    ['default above max', (d) => (d.roles.ro.default_ttl = '2h'), /roles\.ro\.default_ttl: must not exceed max_ttl/],
    ['unknown plugin', (d) => (d.connections.pg.plugin = 'oracle'), /connections\.pg\.plugin: unknown plugin "oracle"/],
    ['unknown connection', (d) => (d.roles.ro.connection = 'nope'), /roles\.ro\.connection: unknown connection "nope"/],
    ['unknown role in policy', (d) => (d.policies[0].allow[0].creds = ['ghost']), /policies\.0\.allow\.0\.creds: unknown role "ghost"/],
    ['typo in a key', (d) => (d.roles.ro.member_off = ['x']), /roles\.ro: unknown key\(s\) "member_off"/],
    ['short master key', (d) => (d.encryption.key = 'c2hvcnQ='), /encryption\.key: must be the base64 of exactly 32 bytes/],
    ['mid-segment glob', (d) => (d.operators = ['spiffe://dev.example/ops*']), /operators\.0: "\*" must be a whole path segment/],
    ['bad plugin key', (d) => (d.connections.pg.scram_iterations = 0), /connections\.pg\.scram_iterations/],
    ['bad template', (d) => (d.roles.ro.creation_statements = ['CREATE ROLE {{nam}}']), /roles\.ro\.creation_statements\.0: unknown placeholder \{\{nam\}\}/],
    [
      'prototype name',
      (d) => Object.defineProperty(d.roles, '__proto__', { value: { connection: 'pg', default_ttl: 1, max_ttl: 1 }, enumerable: true }),
      /roles\.__proto__/,
    ],
  ])('refuses %s and names the key', (_label, mutate, message) => {
    const doc = base();
    mutate(doc);
    expect(errorOf(doc)).toMatch(message);
  });

  it('a missing file is a clear error', () => {
    expect(() => loadConfigFile('/nonexistent/tessera.yaml')).toThrow(/cannot read \/nonexistent\/tessera.yaml: ENOENT/);
  });
});

describe('the contract example (config/examples/full.yaml)', () => {
  it('parses, with every plugin and role kind', () => {
    const config = loadConfigFile('config/examples/full.yaml', {
      TESSERA_MASTER_KEY: env.KEY,
      TESSERA_EVENTS_KEY: 'an-events-key-of-some-length',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE000000000',
      AWS_SECRET_ACCESS_KEY: 'secret',
    });
    expect([...config.connections.values()].map((c) => c.plugin).sort()).toEqual(['aws-iam', 'mysql', 'postgres']);
    expect(config.roles.get('reports-ro')).toMatchObject({ plugin: 'mysql', settings: { grants: ['SELECT ON test.*'] } });
    expect(config.roles.get('deploy-bot')).toMatchObject({ plugin: 'aws-iam', maxTtl: 7200 });
    expect(config.limits).toEqual({ per_identity_rps: 1000, max_active_leases_per_role: 10000 });
  });
});
