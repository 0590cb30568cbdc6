import { TestBroker, sleep, startBroker } from '../support/broker';
import { claims, otherKey, signRaw } from '../support/forge';
import { OidcTestServer } from '../support/oidc-server';

describe('OIDC issuers (Kubernetes, CI) served by a local issuer', () => {
  const idp = new OidcTestServer();
  let broker: TestBroker;
  let key1: Awaited<ReturnType<typeof otherKey>>;
  let key2: Awaited<ReturnType<typeof otherKey>>;
  let issuer: string;

  const token = (key: typeof key1, sub: string, extra: Record<string, unknown> = {}) =>
    signRaw({ alg: key.privateJwk.alg!, kid: key.privateJwk.kid }, claims(sub, { iss: issuer, ...extra }), key.privateJwk);
  const whoami = async (t: string) => broker.api('GET', '/v1/whoami', { token: t });

  beforeAll(async () => {
    issuer = await idp.start();
    key1 = await otherKey('k8s-1', 'RS256');
    key2 = await otherKey('k8s-2', 'ES256');
    idp.keys = [key1.publicJwk];
    broker = await startBroker('oidc', (doc) => {
      // Keys by discovery (no jwks_file or jwks_url); a one-second cooldown keeps the test short.
      doc.identity.issuers.push({ name: 'k8s', type: 'oidc', issuer, jwks_cooldown: '1s' });
      doc.policies.push({
        name: 'deploys',
        subjects: ['repo:acme/*'],
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
