import { TestBroker, sleep, startBroker, testConfigDoc } from '../support/broker';
import { claims, otherKey, signRaw } from '../support/forge';
import { OidcTestServer } from '../support/oidc-server';
import { BrokerKeys } from '../../src/identity/broker-keys';
import { TokenVerifier } from '../../src/identity/token-verifier';
import { parseConfig } from '../../src/config/config.loader';

describe('OIDC issuers (Kubernetes, CI) served by a local issuer', () => {
  const idp = new OidcTestServer();
  let broker: TestBroker;
  let key1: Awaited<ReturnType<typeof otherKey>>;
  let key2: Awaited<ReturnType<typeof otherKey>>;
  let ghKey: Awaited<ReturnType<typeof otherKey>>;
  let issuer: string;
  const ghIssuer = 'https://gh.example';

  const token = (key: typeof key1, sub: string, extra: Record<string, unknown> = {}) =>
    signRaw({ alg: key.privateJwk.alg!, kid: key.privateJwk.kid }, claims(sub, { iss: issuer, ...extra }), key.privateJwk);
  /** A second configured issuer, which can emit any `sub` it likes. */
  const ghToken = (sub: string, extra: Record<string, unknown> = {}) =>
    signRaw({ alg: 'ES256', kid: 'gh-1' }, claims(sub, { iss: ghIssuer, ...extra }), ghKey.privateJwk);
  const whoami = async (t: string) => broker.api('GET', '/v1/whoami', { token: t });

  beforeAll(async () => {
    issuer = await idp.start();
    key1 = await otherKey('k8s-1', 'RS256');
    key2 = await otherKey('k8s-2', 'ES256');
    ghKey = await otherKey('gh-1', 'ES256');
    idp.keys = [key1.publicJwk];
    broker = await startBroker('oidc', (doc) => {
      // Keys by discovery (no jwks_file or jwks_url); a one-second cooldown keeps the test short.
      doc.identity.issuers.push({ name: 'k8s', type: 'oidc', issuer, jwks_cooldown: '1s' });
      doc.identity.issuers.push({ name: 'gh', type: 'oidc', issuer: ghIssuer, jwks_file: ghKey.file });
      doc.operators.push({ issuer: 'k8s', subject: 'ops-admin' });
      doc.policies.push({
        name: 'deploys',
        subjects: [{ issuer: 'k8s', subject: 'repo:acme/*' }],
        claims: { repository_id: '42', environment: 'prod' },
        allow: [{ creds: ['oidc-ro'], max_ttl: '10m' }],
      });
    });
  });
  afterAll(async () => {
    await broker.close();
    await idp.stop();
  });

  it('finds the keys through discovery and accepts the issuer\'s tokens', async () => {
    const res = await whoami(await token(key1, 'system:serviceaccount:payments:api'));
    expect(res.body).toEqual({ subject: 'system:serviceaccount:payments:api', issuer: 'k8s', operator: false });
    expect(idp.discoveryHits).toBeGreaterThanOrEqual(1);
  });

  it('claim conditions: a token from another repository or environment of the same platform is refused', async () => {
    const ok = await broker.api('POST', '/v1/creds/oidc-ro', { token: await token(key1, 'repo:acme/app', { repository_id: '42', environment: 'prod' }), body: { ttl: '1m' } });
    expect(ok.status).toBe(201);
    expect(ok.body.ttl_seconds).toBe(60);
    const otherRepo = await broker.api('POST', '/v1/creds/oidc-ro', { token: await token(key1, 'repo:acme/app', { repository_id: '43', environment: 'prod' }) });
    expect(otherRepo.status).toBe(403);
    const otherEnv = await broker.api('POST', '/v1/creds/oidc-ro', { token: await token(key1, 'repo:acme/app', { repository_id: '42', environment: 'dev' }) });
    expect(otherEnv.status).toBe(403);
    const numeric = await broker.api('POST', '/v1/creds/oidc-ro', { token: await token(key1, 'repo:acme/app', { repository_id: 42, environment: 'prod' }) });
    expect(numeric.status).toBe(403); // claim equality is exact, type included
  });

  it('another configured issuer\'s token with the same sub matches neither the rule nor the operator entry of the first', async () => {
    const prod = { repository_id: '42', environment: 'prod' };
    expect((await broker.api('POST', '/v1/creds/oidc-ro', { token: await token(key1, 'repo:acme/app', prod), body: { ttl: '1m' } })).status).toBe(201);
    const lookalike = await ghToken('repo:acme/app', prod);
    expect((await whoami(lookalike)).body).toEqual({ subject: 'repo:acme/app', issuer: 'gh', operator: false });
    expect((await broker.api('POST', '/v1/creds/oidc-ro', { token: lookalike, body: { ttl: '1m' } })).status).toBe(403);

    expect((await whoami(await token(key1, 'ops-admin'))).body).toEqual({ subject: 'ops-admin', issuer: 'k8s', operator: true });
    const impostor = await ghToken('ops-admin');
    expect((await whoami(impostor)).body).toEqual({ subject: 'ops-admin', issuer: 'gh', operator: false });
    expect((await broker.api('GET', '/v1/roles', { token: impostor })).status).toBe(403);
  });

  it('follows a key rotation: the new key is fetched on its unknown kid, the removed key stops working', async () => {
    const old = await token(key1, 'rotating');
    expect((await whoami(old)).status).toBe(200);
    idp.keys = [key2.publicJwk];
    await sleep(1100); // past the cooldown since the last fetch
    expect((await whoami(await token(key2, 'rotating'))).status).toBe(200);
    expect((await whoami(old)).status).toBe(401);
  });

  it('a flood of unknown kids costs at most one key fetch per cooldown', async () => {
    await sleep(1100);
    const before = idp.jwksHits;
    const attacker = await Promise.all(Array.from({ length: 25 }, (_, i) => otherKey(`flood-${i}`)));
    const results = await Promise.all(attacker.map(async (k) => (await whoami(await token(k, 'flood'))).status));
    expect(results.every((s) => s === 401)).toBe(true);
    expect(idp.jwksHits - before).toBeLessThanOrEqual(1);
  });

  it('keeps the last good keys while the issuer is down', async () => {
    idp.down = true;
    try {
      await sleep(1100);
      const before = idp.requests;
      // An unknown kid makes the broker try a refresh, which fails...
      expect((await whoami(await token(await otherKey('unknown-during-outage'), 'x'))).status).toBe(401);
      expect(idp.requests).toBeGreaterThan(before);
      // ...and the keys it had keep working.
      expect((await whoami(await token(key2, 'during-outage'))).status).toBe(200);
    } finally {
      idp.down = false;
    }
  });

  it('a token whose iss differs from the configured issuer is refused', async () => {
    const t = await signRaw({ alg: 'ES256', kid: 'k8s-2' }, claims('x', { iss: `${issuer}/other` }), key2.privateJwk);
    expect((await whoami(t)).status).toBe(401);
  });
});

describe('OIDC discovery that names another issuer', () => {
  it('is not trusted: the issuer\'s tokens are refused (503, the broker cannot get keys it may trust)', async () => {
    const idp = new OidcTestServer();
    const issuer = await idp.start();
    const key = await otherKey('k1');
    idp.keys = [key.publicJwk];
    idp.claimedIssuer = 'https://accounts.evil.example';
    const broker = await startBroker('oidcbad', (doc) => {
      doc.identity.issuers.push({ name: 'bad', type: 'oidc', issuer, jwks_cooldown: '1s' });
    });
    try {
      const t = await signRaw({ alg: 'ES256', kid: 'k1' }, claims('svc', { iss: issuer }), key.privateJwk);
      const res = await broker.api('GET', '/v1/whoami', { token: t });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('identity_keys_unavailable');
      expect(idp.jwksHits).toBe(0); // the keys of a mismatched issuer are never even fetched
    } finally {
      await broker.close();
      await idp.stop();
    }
  });
});

/** The verifier alone (no broker): for what only its internals can show. */
async function verifierFor(customise: (doc: Record<string, any>) => void): Promise<TokenVerifier> {
  const doc = await testConfigDoc('oidcverifier');
  customise(doc);
  return new TokenVerifier(parseConfig(doc, {}, 'test:oidcverifier'), {} as BrokerKeys);
}
const client = { ip: '127.0.0.1' };

describe('OIDC discovery and key fetching against a hostile issuer', () => {
  const idp = new OidcTestServer();
  let issuer: string;
  let key: Awaited<ReturnType<typeof otherKey>>;
  const token = (sub = 'svc', kid = 'd1', signer = key) => signRaw({ alg: 'ES256', kid }, claims(sub, { iss: issuer }), signer.privateJwk);

  beforeAll(async () => {
    issuer = await idp.start();
    key = await otherKey('d1');
  });
  beforeEach(() => {
    idp.keys = [key.publicJwk];
    idp.jwksUri = undefined;
    idp.endlessKeys = false;
  });
  afterAll(() => idp.stop());

  it('refuses a jwks_uri on another origin than the issuer (the keys are never fetched), unless jwks_origins lists it', async () => {
    // Same server, another origin: localhost is not 127.0.0.1 as far as origins go.
    const elsewhere = issuer.replace('127.0.0.1', 'localhost');
    idp.jwksUri = `${elsewhere}/keys`;
    const strict = await verifierFor((doc) => doc.identity.issuers.push({ name: 'far', type: 'oidc', issuer }));
    await expect(strict.verify(await token(), client)).rejects.toMatchObject({ kind: 'unavailable', code: 'identity_keys_unavailable' });
    expect(idp.jwksHits).toBe(0);

    const listed = await verifierFor((doc) => doc.identity.issuers.push({ name: 'far', type: 'oidc', issuer, jwks_origins: [elsewhere] }));
    await expect(listed.verify(await token(), client)).resolves.toMatchObject({ subject: 'svc', issuer: 'far' });
    expect(idp.jwksHits).toBe(1);
  });

  it('cuts off a key document that never ends while reading it, instead of buffering until the timeout', async () => {
    idp.endlessKeys = true;
    const verifier = await verifierFor((doc) => doc.identity.issuers.push({ name: 'endless', type: 'oidc', issuer }));
    const started = Date.now();
    await expect(verifier.verify(await token(), client)).rejects.toMatchObject({ code: 'identity_keys_unavailable' });
    expect(Date.now() - started).toBeLessThan(2500); // the fetch timeout is 5 s
    await sleep(100);
    expect(idp.endlessBytesWritten).toBeDefined(); // the broker hung up...
    expect(idp.endlessBytesWritten!).toBeLessThan(32 * 1024 * 1024); // ...long before the timeout
  }, 10_000);

  it('a refetch for an unknown kid that finds no new keys keeps the verified tokens; one that removes a key drops them', async () => {
    const verifier = await verifierFor((doc) => doc.identity.issuers.push({ name: 'cached', type: 'oidc', issuer, jwks_cooldown: '1s' }));
    const good = await token('cached-svc');
    // The first verification also fetches the keys; by the second the token is cached.
    await verifier.verify(good, client);
    await verifier.verify(good, client);
    const checks = jest.spyOn(verifier as any, 'verifyUncached');
    await verifier.verify(good, client);
    expect(checks).not.toHaveBeenCalled();

    await sleep(1100); // past the cooldown
    const fetches = idp.jwksHits;
    await expect(verifier.verify(await token('x', 'random-kid', await otherKey('random-kid')), client)).rejects.toMatchObject({ kind: 'unauthenticated' });
    expect(idp.jwksHits).toBe(fetches + 1);
    await verifier.verify(good, client);
    expect(checks).toHaveBeenCalledTimes(1); // the unknown kid's own check; the good token came from the cache

    idp.keys = [];
    await sleep(1100);
    await expect(verifier.verify(await token('x', 'another-random-kid', await otherKey('another-random-kid')), client)).rejects.toThrow();
    await expect(verifier.verify(good, client)).rejects.toMatchObject({ kind: 'unauthenticated' });
  });
});
