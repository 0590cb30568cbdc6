import { randomBytes } from 'node:crypto';
import { PLUGINS } from '../../plugins';
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
    ['bad duration', (d) => (d.roles.ro.default_ttl = 'soon'), /roles\.ro\.default_ttl: must be a duration/],
    ['default above max', (d) => (d.roles.ro.default_ttl = '2h'), /roles\.ro\.default_ttl: must not exceed max_ttl/],
    ['unknown plugin', (d) => (d.connections.pg.plugin = 'oracle'), /connections\.pg\.plugin: unknown plugin "oracle"/],
    ['unknown connection', (d) => (d.roles.ro.connection = 'nope'), /roles\.ro\.connection: unknown connection "nope"/],
    ['unknown role in policy', (d) => (d.policies[0].allow[0].creds = ['ghost']), /policies\.0\.allow\.0\.creds: unknown role "ghost"/],
    ['typo in a key', (d) => (d.roles.ro.member_off = ['x']), /roles\.ro: unknown key\(s\) "member_off"/],
    ['short master key', (d) => (d.encryption.key = 'c2hvcnQ='), /encryption\.key: must be the base64 of exactly 32 bytes/],
    ['mid-segment glob', (d) => (d.operators = ['spiffe://dev.example/ops*']), /operators\.0: "\*" must be a whole path segment/],
    ['bad plugin key', (d) => (d.connections.pg.scram_iterations = 0), /connections\.pg\.scram_iterations/],
    ['a Vault mount named like a native route', (d) => (d.vault = { database_mount: 'leases' }), /vault\.database_mount: must not be a path of the native API/],
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

  it('lowers the default max_token_lifetime to an hour and puts bootstrap subjects in their own namespace', () => {
    const config = parseConfig(base(), env);
    expect(config.identity.max_token_lifetime).toBe(3600);
    expect(config.identity.bootstrap.subject_prefix).toBe('bootstrap/');
  });

  it('a missing file is a clear error', () => {
    expect(() => loadConfigFile('/nonexistent/tessera.yaml')).toThrow(/cannot read \/nonexistent\/tessera.yaml: ENOENT/);
  });
});

describe('subjects are only meaningful with their issuer', () => {
  const withCi = () => {
    const doc: any = base();
    doc.identity.issuers.push({ name: 'ci', type: 'oidc', issuer: 'https://ci.example', jwks_url: 'https://ci.example/jwks' });
    return doc;
  };

  it('accepts SPIFFE patterns plain or qualified, and other subjects qualified by a configured issuer', () => {
    const doc = withCi();
    doc.policies[0].subjects = [
      'spiffe://dev.example/ns/*',
      { issuer: 'dev', subject: 'spiffe://dev.example/ns/a' },
      { issuer: 'ci', subject: 'repo:acme/*' },
      { issuer: 'bootstrap', subject: 'bootstrap/billing' },
    ];
    doc.operators = ['spiffe://dev.example/ops/*', { issuer: 'ci', subject: 'ops-admin' }];
    const config = parseConfig(doc, env);
    expect(config.operators).toEqual(['spiffe://dev.example/ops/*', { issuer: 'ci', subject: 'ops-admin' }]);
  });

  it.each<[string, (d: any) => void, RegExp]>([
    ['an unqualified OIDC subject in a policy', (d) => (d.policies[0].subjects = ['repo:acme/*']), /policies\.0\.subjects\.0: "repo:acme\/\*" is not a SPIFFE ID pattern.*\{ issuer: NAME/],
    ['an unqualified subject among operators', (d) => (d.operators = ['ops-admin']), /operators\.0: "ops-admin" is not a SPIFFE ID pattern/],
    ['a pattern naming an unknown issuer', (d) => (d.policies[0].subjects = [{ issuer: 'k9s', subject: 'system:serviceaccount:a:b' }]), /policies\.0\.subjects\.0\.issuer: unknown issuer "k9s"/],
    ['an operator naming an unknown issuer', (d) => (d.operators = [{ issuer: 'github', subject: 'ops-admin' }]), /operators\.0\.issuer: unknown issuer "github"/],
    ['a subject rule with a stray key', (d) => (d.operators = [{ issuer: 'ci', subject: 'x', claims: {} }]), /operators\.0: unknown key\(s\) "claims"/],
    ['a subject rule without a subject', (d) => (d.operators = [{ issuer: 'ci' }]), /operators\.0: must be a SPIFFE ID pattern/],
    ['an issuer named "bootstrap"', (d) => (d.identity.issuers[1].name = 'bootstrap'), /identity\.issuers\.1\.name: "bootstrap" and "x509" are reserved/],
    ['an issuer named "x509"', (d) => (d.identity.issuers[0].name = 'x509'), /identity\.issuers\.0\.name: "bootstrap" and "x509" are reserved/],
    ['bootstrap identities as operators', (d) => (d.operators = [{ issuer: 'bootstrap', subject: 'bootstrap/ops' }]), /operators\.0\.issuer: broker-signed \(bootstrap\) identities are never operators/],
    ['a bootstrap rule outside the bootstrap namespace', (d) => (d.policies[0].subjects = [{ issuer: 'bootstrap', subject: 'legacy:billing' }]), /policies\.0\.subjects\.0\.subject: bootstrap subjects start with/],
    ['x509 rules without server.tls', (d) => (d.policies[0].subjects = [{ issuer: 'x509', subject: 'spiffe://dev.example/a' }]), /policies\.0\.subjects\.0\.issuer: "x509" identities need server\.tls/],
    ['a SPIFFE ID under an OIDC issuer', (d) => (d.operators = [{ issuer: 'ci', subject: 'spiffe://dev.example/ops/a' }]), /operators\.0\.subject: an OIDC issuer never vouches for a SPIFFE ID/],
    ['another trust domain under a JWT-SVID issuer', (d) => (d.operators = [{ issuer: 'dev', subject: 'spiffe://prod.example/ops/*' }]), /operators\.0\.subject: issuer "dev" only vouches for SPIFFE IDs of dev\.example/],
    ['a bootstrap namespace without a trailing "/"', (d) => (d.identity.bootstrap = { subject_prefix: 'bootstrap' }), /identity\.bootstrap\.subject_prefix: must end with "\/"/],
    ['a jwks_origins entry with a path', (d) => (d.identity.issuers[1].jwks_origins = ['https://keys.example/jwks']), /identity\.issuers\.1\.jwks_origins\.0: must be an origin/],
    ['a jwks_origins entry that is no URL', (d) => (d.identity.issuers[1].jwks_origins = ['keys example']), /identity\.issuers\.1\.jwks_origins\.0/],
  ])('refuses %s and names the key', (_label, mutate, message) => {
    const doc = withCi();
    mutate(doc);
    expect(errorOf(doc)).toMatch(message);
  });
});

describe('server.tls.client_ca binds each trust domain to its own CA bundle', () => {
  const tls = (t: Record<string, unknown>) => ({ ...base(), server: { host: '127.0.0.1', port: 8200, tls: { cert: 'c.pem', key: 'k.pem', ...t } } });

  it('takes one bundle per trust domain', () => {
    const config = parseConfig(tls({ client_ca: { 'a.example': 'a.pem', 'b.example': 'b.pem' } }), env);
    expect(config.server.tls!.client_ca).toEqual({ 'a.example': 'a.pem', 'b.example': 'b.pem' });
  });

  it('takes a single bundle only for exactly one trust domain', () => {
    expect(parseConfig(tls({ client_ca: 'ca.pem', trust_domains: ['a.example'] }), env).server.tls!.client_ca).toEqual({ 'a.example': 'ca.pem' });
    expect(errorOf(tls({ client_ca: 'ca.pem' }))).toMatch(/server\.tls\.client_ca: one CA bundle for several trust domains/);
    expect(errorOf(tls({ client_ca: 'ca.pem', trust_domains: ['a.example', 'b.example'] }))).toMatch(/server\.tls\.client_ca: one CA bundle/);
  });

  it('refuses trust_domains beside a per-domain map, an empty map and a bad trust domain', () => {
    expect(errorOf(tls({ client_ca: { 'a.example': 'a.pem' }, trust_domains: ['b.example'] }))).toMatch(/server\.tls\.trust_domains: with client_ca per trust domain/);
    expect(errorOf(tls({ client_ca: {} }))).toMatch(/server\.tls\.client_ca/);
    expect(errorOf(tls({ client_ca: { 'A.Example': 'a.pem' } }))).toMatch(/server\.tls\.client_ca/);
  });

  it('x509 rules are accepted with server.tls', () => {
    const doc: any = tls({ client_ca: { 'dev.example': 'a.pem' } });
    doc.operators = [{ issuer: 'x509', subject: 'spiffe://dev.example/ops/*' }];
    expect(parseConfig(doc, env).operators).toHaveLength(1);
  });
});

describe('the contract example (config/examples/full.yaml)', () => {
  it('parses, with every plugin and role kind', () => {
    const config = loadConfigFile('config/examples/full.yaml', {
      TESSERA_MASTER_KEY: env.KEY,
      TESSERA_EVENTS_KEY: 'an-events-key-of-some-length',
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE000000000',
      AWS_SECRET_ACCESS_KEY: 'secret',
      TESSERA_UI_CLIENT_SECRET: 'a-console-client-secret',
    });
    expect([...config.connections.values()].map((c) => c.plugin).sort()).toEqual(['aws-iam', 'mysql', 'postgres', 'redis']);
    expect(config.roles.get('deploy-sts')).toMatchObject({ plugin: 'aws-iam', terms: { renewable: false, revocable: false } });
    expect(config.roles.get('deploy-fed')).toMatchObject({ plugin: 'aws-iam', terms: { renewable: false, revocable: false } });
    expect(config.ui).toMatchObject({ public_url: 'https://tessera.example', oidc: { issuer: 'sso', client_id: 'tessera-console' } });
    expect(config.vault).toMatchObject({ token_ttl: 3600, token_max_ttl: 86400 });
    expect(config.roles.get('cache-ro')).toMatchObject({ plugin: 'redis', settings: { acl: '~cache:* +get +mget', allow_admin: false } });
    expect(config.roles.get('reports-ro')).toMatchObject({ plugin: 'mysql', settings: { grants: ['SELECT ON test.*'] } });
    expect(config.roles.get('deploy-bot')).toMatchObject({ plugin: 'aws-iam', maxTtl: 7200 });
    expect(config.limits).toMatchObject({ per_identity_rps: 1000, max_active_leases_per_role: 10000 });
  });
});

describe('redis connections beside the broker\'s own queue', () => {
  const withRedis = (queueUrl: string, cache: Record<string, unknown>, statics: Record<string, unknown> = {}) => {
    const doc: any = base();
    doc.queue.redis_url = queueUrl;
    doc.connections.cache = { plugin: 'redis', ...cache };
    doc.static_secrets = statics;
    return doc;
  };
  const protectedUsers = (doc: unknown, connection = 'cache') => (parseConfig(doc, env).connections.get(connection)!.settings as { protected_users: string[] }).protected_users;

  it('a connection on the queue\'s server gets the queue\'s user protected (loopback names and the default port count as one server)', () => {
    expect(protectedUsers(withRedis('redis://tessera_queue:pw@localhost:6379/2', { url: 'redis://admin:x@127.0.0.1', protected_users: ['ops'] }))).toEqual(['ops', 'tessera_queue']);
    expect(protectedUsers(withRedis('rediss://tessera_queue:pw@cache.internal:6379', { url: 'rediss://admin:x@CACHE.internal:6379' }))).toEqual(['tessera_queue']);
    // No user in the queue's URL: the queue logs in as `default`.
    expect(protectedUsers(withRedis('redis://127.0.0.1:6379', { url: 'redis://admin:x@[::1]:6379' }))).toEqual(['default']);
    // Listed already: not twice.
    expect(protectedUsers(withRedis('redis://q@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6379', protected_users: ['q'] }))).toEqual(['q']);
  });

  it('a connection on another server is left as configured', () => {
    expect(protectedUsers(withRedis('redis://tessera_queue:pw@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6380' }))).toEqual([]);
    expect(protectedUsers(withRedis('redis://tessera_queue:pw@queue.internal:6379', { url: 'redis://admin:x@cache.internal:6379' }))).toEqual([]);
  });

  it('the plugin built from the parsed connection refuses the queue\'s user as a static secret, before reaching Redis', async () => {
    const config = parseConfig(withRedis('redis://tessera_queue:pw@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6379' }), env);
    const plugin = PLUGINS.redis.create('cache', config.connections.get('cache')!.settings);
    try {
      await expect(plugin.setStaticSecret!({ account: 'tessera_queue', password: 'never-sent' })).rejects.toMatchObject({ retryable: false, message: expect.stringMatching(/protected/) });
    } finally {
      await plugin.close();
    }
  });

  it('refuses a namespace that covers the queue\'s user, naming the key', () => {
    expect(errorOf(withRedis('redis://tsr_queue:pw@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6379' }))).toMatch(/connections\.cache\.user_prefix: must not be a prefix of the user "tsr_queue" of queue\.redis_url/);
    expect(parseConfig(withRedis('redis://tsr_queue:pw@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6380' }), env).connections.has('cache')).toBe(true);
  });

  it.each<[string, Record<string, unknown>, Record<string, unknown>, RegExp]>([
    ['the default user', { url: 'redis://admin:x@127.0.0.1:6380' }, { username: 'default' }, /static_secrets\.s\.username: must not be "default".*\(connection "cache"\)/],
    ['the connection\'s admin user', { url: 'redis://admin:x@127.0.0.1:6380' }, { username: 'admin' }, /static_secrets\.s\.username: must not be "admin": the admin user/],
    ['the default user as the admin', { url: 'redis://127.0.0.1:6380' }, { usernames: ['app_a', 'default'], strategy: 'alternating' }, /static_secrets\.s\.usernames\.1: must not be "default"/],
    ['a protected user', { url: 'redis://admin:x@127.0.0.1:6380', protected_users: ['ops'] }, { usernames: ['ops', 'app_b'], strategy: 'alternating' }, /static_secrets\.s\.usernames\.0: must not be "ops": protected users/],
    ['the queue\'s user on the queue\'s server', { url: 'redis://admin:x@localhost:6379' }, { username: 'tessera_queue' }, /static_secrets\.s\.username: must not be "tessera_queue": it is the user of queue\.redis_url/],
    ['a name Redis would not take as one word', { url: 'redis://admin:x@127.0.0.1:6380' }, { username: 'app user' }, /static_secrets\.s\.username: must be 1-128 letters/],
  ])('refuses a static secret naming %s at start-up, naming the key', (_label, cache, secret, message) => {
    expect(errorOf(withRedis('redis://tessera_queue:pw@127.0.0.1:6379', cache, { s: { connection: 'cache', rotate_every: '1h', ...secret } }))).toMatch(message);
  });

  it('accepts static secrets on any other user, inside the lease namespace or not, and the queue\'s user on another server', () => {
    const config = parseConfig(
      withRedis('redis://tessera_queue:pw@127.0.0.1:6379', { url: 'redis://admin:x@127.0.0.1:6380' }, {
        legacy: { connection: 'cache', username: 'legacy_app', rotate_every: '1h' },
        pair: { connection: 'cache', usernames: ['workers_a', 'workers_b'], strategy: 'alternating', rotate_every: '1h' },
        queue_named: { connection: 'cache', username: 'tessera_queue', rotate_every: '1h' },
      }),
      env,
    );
    expect(Object.keys(config.static_secrets).sort()).toEqual(['legacy', 'pair', 'queue_named']);
  });
});
