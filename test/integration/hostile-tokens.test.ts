import { TestBroker, startBroker } from '../support/broker';
import { b64, claims, otherKey, signEs256ByHand, signRaw, unsigned } from '../support/forge';
import { spiffe, testIssuer } from '../support/identity';
import { TokenVerifier } from '../../src/identity/token-verifier';

/**
 * Hostile tokens and requests, each refused with 401/403/413/429 and never a 5xx. The test titles are
 * the list of what is refused.
 */
describe('hostile tokens and requests are refused', () => {
  let broker: TestBroker;
  let good: { privateJwk: any; kid: string };
  let ci: Awaited<ReturnType<typeof otherKey>>;
  const sub = spiffe('ns/app/api');
  const ciIssuer = 'https://ci.example';

  beforeAll(async () => {
    ci = await otherKey('ci-key-1');
    broker = await startBroker('hostile', (doc) => {
      // Every case here is refused at a signature check; the per-address limit on them is tested below.
      doc.identity.verify_per_address_rps = 100_000;
      // Every case is also a refusal without an identity; their per-address limit is tested below.
      doc.limits = { ...doc.limits, unidentified_denials_per_address_rps: 100_000 };
      doc.identity.issuers.push({ name: 'ci', type: 'oidc', issuer: ciIssuer, jwks_file: ci.file });
      doc.policies.push({ name: 'ci', subjects: [{ issuer: 'ci', subject: 'repo:acme/*' }], allow: [{ creds: ['hostile-ro'] }] });
    });
    const issuer = await testIssuer();
    good = { privateJwk: issuer.privateJwk, kid: issuer.privateJwk.kid! };
  });
  afterAll(() => broker.close());

  const es256 = (payload: unknown, header: Record<string, unknown> = {}) => signRaw({ alg: 'ES256', kid: good.kid, ...header }, payload, good.privateJwk);
  const ciToken = (payload: unknown) => signRaw({ alg: 'ES256', kid: 'ci-key-1' }, payload, ci.privateJwk);

  /** Every hostile request: refused with the expected status, nothing issued. */
  async function refused(token: string, status = 401, path = `/v1/creds/${broker.role}`) {
    const before = await broker.state<{ n: number }>('SELECT count(*)::int AS n FROM leases');
    const res = await broker.api('POST', path, { token, body: {} });
    expect(res.status).toBe(status);
    expect(res.body.error.code).toEqual(expect.any(String));
    expect(await broker.state<{ n: number }>('SELECT count(*)::int AS n FROM leases')).toEqual(before);
  }

  it('control: a well-formed JWT-SVID is accepted', async () => {
    const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: await es256(claims(sub)), body: { ttl: 60 } });
    expect(res.status).toBe(201);
    await broker.api('POST', `/v1/leases/${res.body.lease_id}/revoke`, { token: await es256(claims(sub)) });
  });

  it('control: a well-formed OIDC token is accepted', async () => {
    const res = await broker.api('GET', '/v1/whoami', { token: await ciToken(claims('repo:acme/app:ref:main', { iss: ciIssuer })) });
    expect(res.body).toEqual({ subject: 'repo:acme/app:ref:main', issuer: 'ci', operator: false });
  });

  it('alg "none"', async () => refused(unsigned({ alg: 'none', kid: good.kid }, claims(sub))));
  it('alg "none" with a fake signature', async () => refused(`${unsigned({ alg: 'none', kid: good.kid }, claims(sub))}AAAA`));
  it('HS256 signed with the issuer\'s public key as the secret', async () => {
    const pub = Buffer.from(JSON.stringify({ ...good.privateJwk, d: undefined }));
    await refused(await signRaw({ alg: 'HS256', kid: good.kid }, claims(sub), new Uint8Array(pub)));
  });
  it('HS256 signed with the PEM public key', async () => refused(await signRaw({ alg: 'HS256', kid: 'ci-key-1' }, claims('repo:acme/x', { iss: ciIssuer }), new Uint8Array(Buffer.from(ci.spki)))));
  it('EdDSA, even with a known kid', async () => {
    const ed = await otherKey(good.kid, 'EdDSA');
    await refused(await signRaw({ alg: 'EdDSA', kid: good.kid }, claims(sub), ed.privateJwk));
  });
  it('expired', async () => refused(await es256(claims(sub, { exp: Math.floor(Date.now() / 1000) - 120 }))));
  it('exp missing', async () => refused(await es256(claims(sub, { exp: undefined }))));
  it('exp as a string', async () => refused(await es256(claims(sub, { exp: String(Math.floor(Date.now() / 1000) + 600) }))));
  it('nbf in the future', async () => refused(await es256(claims(sub, { nbf: Math.floor(Date.now() / 1000) + 600 }))));
  it('iat in the future', async () => refused(await es256(claims(sub, { iat: Math.floor(Date.now() / 1000) + 3600, exp: Math.floor(Date.now() / 1000) + 4000 }))));
  it('lifetime beyond max_token_lifetime', async () => refused(await es256(claims(sub, { exp: Math.floor(Date.now() / 1000) + 3 * 86400 }))));
  it('lifetime of two hours (max_token_lifetime defaults to one)', async () => refused(await es256(claims(sub, { exp: Math.floor(Date.now() / 1000) + 7200 }))));
  it('aud missing', async () => refused(await es256(claims(sub, { aud: undefined }))));
  it('aud wrong', async () => refused(await es256(claims(sub, { aud: 'vault' }))));
  it('aud numeric', async () => refused(await es256(claims(sub, { aud: 12345 }))));
  it('aud with several audiences', async () => refused(await es256(claims(sub, { aud: ['tessera', 'other'] }))));
  it('sub missing', async () => refused(await es256(claims(sub, { sub: undefined }))));
  it('sub not a string', async () => refused(await ciToken(claims('x', { iss: ciIssuer, sub: 42 }))));
  it('iss off by a trailing slash', async () => refused(await ciToken(claims('repo:acme/app', { iss: `${ciIssuer}/` }))));
  it('iss differing in case', async () => refused(await ciToken(claims('repo:acme/app', { iss: 'https://CI.example' }))));
  it('OIDC token claiming a SPIFFE ID as subject', async () => refused(await ciToken(claims(spiffe('ops/admin'), { iss: ciIssuer }))));
  it('kid from another issuer\'s key set (the OIDC key signing a JWT-SVID)', async () => refused(await ciToken(claims(sub))));
  it('kid missing', async () => refused(await signRaw({ alg: 'ES256' }, claims(sub), good.privateJwk)));
  it('unknown kid', async () => refused(await signRaw({ alg: 'ES256', kid: 'no-such-kid' }, claims(sub), good.privateJwk)));
  it('known kid, signed by an attacker\'s key', async () => {
    const attacker = await otherKey(good.kid);
    await refused(await signRaw({ alg: 'ES256', kid: good.kid }, claims(sub), attacker.privateJwk));
  });
  it('signature stripped', async () => refused((await es256(claims(sub))).replace(/\.[^.]+$/, '.')));
  it('payload swapped under a valid signature', async () => {
    const [h, , s] = (await es256(claims(sub))).split('.');
    await refused(`${h}.${b64(claims(spiffe('ops/admin')))}.${s}`);
  });
  it('sub in a foreign trust domain', async () => refused(await es256(claims('spiffe://evil.example/ns/app/api'))));
  it('sub with percent-encoding', async () => refused(await es256(claims('spiffe://test.example/ns/app%2Fapi'))));
  it('sub with ".."', async () => refused(await es256(claims('spiffe://test.example/ns/app/../../ops/admin'))));
  it('sub with "//"', async () => refused(await es256(claims('spiffe://test.example/ns//app/api'))));
  it('sub with a trailing "/"', async () => refused(await es256(claims('spiffe://test.example/ns/app/api/'))));
  it('sub with an uppercase trust domain', async () => refused(await es256(claims('spiffe://TEST.example/ns/app/api'))));
  it('sub with a homoglyph trust domain (Cyrillic "е")', async () => refused(await es256(claims('spiffe://tеst.example/ns/app/api'))));
  it('sub of 2049 bytes', async () => refused(await es256(claims(`spiffe://test.example/ns/app/${'a'.repeat(2049 - 'spiffe://test.example/ns/app/'.length)}`))));
  it('jku header pointing at an attacker\'s key set (never fetched)', async () => {
    const attacker = await otherKey('attacker');
    await refused(await signRaw({ alg: 'ES256', kid: 'attacker', jku: 'http://127.0.0.1:1/jwks.json' }, claims(sub), attacker.privateJwk));
  });
  it('x5u header (never fetched)', async () => {
    const attacker = await otherKey('attacker');
    await refused(await signRaw({ alg: 'ES256', kid: 'attacker', x5u: 'http://127.0.0.1:1/cert.pem' }, claims(sub), attacker.privateJwk));
  });
  it('jwk header embedding the attacker\'s own key', async () => {
    const attacker = await otherKey('attacker');
    await refused(await signRaw({ alg: 'ES256', kid: 'attacker', jwk: attacker.publicJwk }, claims(sub), attacker.privateJwk));
  });
  it('control: a hand-signed token is accepted (so the crit case below tests crit alone)', async () => {
    const res = await broker.api('GET', '/v1/whoami', { token: signEs256ByHand({ kid: good.kid }, claims(sub), good.privateJwk) });
    expect(res.status).toBe(200);
  });
  it('crit header naming an unknown extension', async () => refused(signEs256ByHand({ kid: good.kid, crit: ['exp-ext'], 'exp-ext': 1 }, claims(sub), good.privateJwk)));
  it('JWE-shaped token (five parts)', async () => refused(`${b64({ alg: 'RSA-OAEP', enc: 'A256GCM' })}.AAAA.AAAA.AAAA.AAAA`));
  it('JSON-serialized JWS', async () => {
    const [protectedHeader, payload, signature] = (await es256(claims(sub))).split('.');
    await refused(JSON.stringify({ protected: protectedHeader, payload, signature }));
  });
  it('not a JWT at all', async () => refused('hello'));
  it('an 8 KiB+ Authorization header', async () => refused(`${'a'.repeat(9000)}.b.c`));
  it('a Basic instead of a Bearer Authorization header', async () => {
    const res = await broker.api('GET', '/v1/whoami', { headers: { authorization: `Basic ${Buffer.from('admin:admin').toString('base64')}` } });
    expect({ status: res.status, body: res.body }).toMatchObject({ status: 401 });
  });
  it('role name with "../"', async () => refused(await es256(claims(sub)), 403, '/v1/creds/..%2F..%2Fadmin'));
  it('role name with an encoded slash', async () => refused(await es256(claims(sub)), 403, `/v1/creds/${broker.role}%2Fx`));
  it('role name in unicode', async () => refused(await es256(claims(sub)), 403, '/v1/creds/h%C3%B6stile-ro'));
  it('role name with SQL', async () => refused(await es256(claims(sub)), 403, "/v1/creds/x'%3B%20DROP%20TABLE%20leases%3B--"));
  it('an oversized body (413)', async () => {
    const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: await es256(claims(sub)), raw: JSON.stringify({ ttl: 'x'.repeat(100_000) }) });
    expect(res.status).toBe(413);
  });
});

describe('token verification is rate limited per client address before any signature is checked', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('verifylimit', (doc) => {
      // One new token a second (a burst of 2): the check after the flood stays clear of the next refill.
      doc.identity.verify_per_address_rps = 1;
      doc.limits = { ...doc.limits, unidentified_denials_per_address_rps: 5 };
    });
  });
  afterAll(() => broker.close());

  it('a flood of forged tokens gets 429s after a burst of signature checks; a token already verified still works', async () => {
    const good = await broker.token('ns/app/api');
    expect((await broker.api('GET', '/v1/whoami', { token: good })).status).toBe(200);
    const checks = jest.spyOn(TokenVerifier.prototype as any, 'verifyUncached');
    try {
      const kid = (await testIssuer()).privateJwk.kid!;
      const attacker = await otherKey(kid);
      const forged = await Promise.all(Array.from({ length: 40 }, (_, i) => signRaw({ alg: 'ES256', kid }, claims(spiffe(`ns/app/f${i}`)), attacker.privateJwk)));
      const statuses = await Promise.all(forged.map((t) => broker.api('GET', '/v1/whoami', { token: t }).then((r) => r.status)));
      expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
      expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(25);
      expect(checks.mock.calls.length).toBeLessThanOrEqual(4); // the burst (twice the rate) and a little refill
      // Verified before the flood: served from the cache, no signature check, no limit.
      expect((await broker.api('GET', '/v1/whoami', { token: good })).status).toBe(200);
      // A new token from the flooded address waits for the bucket to refill.
      expect((await broker.api('GET', '/v1/whoami', { token: await broker.token('ns/app/other') })).body.error.code).toBe('too_many_verifications');
    } finally {
      checks.mockRestore();
    }
  });
});

describe('refusals without an identity are bounded per client address', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('denylimit', (doc) => {
      // Every refusal let through is audited as its own row (no sampling), so the rows can be counted.
      doc.limits = { ...doc.limits, unidentified_denials_per_address_rps: 5, audited_denials_per_identity: 1000 };
    });
  });
  afterAll(() => broker.close());

  it('requests with no token are audited up to a burst, then get 429 and write nothing; an identified caller is not affected', async () => {
    const denials = async () => (await broker.state<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE type = 'request.denied'"))[0].n;
    const before = await denials();
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 30 }, () => broker.api('GET', '/v1/whoami', { headers: { authorization: 'Basic eDp5' } })));
    // The burst (twice the rate), and what refilled at 5/s while the 30 were answered.
    const allowed = 10 + Math.ceil((5 * (performance.now() - started)) / 1000);
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    const refused = statuses.filter((s) => s === 401).length;
    expect(refused).toBeGreaterThanOrEqual(10);
    expect(refused).toBeLessThanOrEqual(allowed);
    expect(await denials()).toBe(before + refused); // a 429 writes nothing
    for (const limited of answers.filter((a) => a.status === 429)) expect(limited.body.error.code).toBe('too_many_denied_requests');
    expect((await broker.api('GET', '/v1/whoami', { token: await broker.token('ns/app/api') })).status).toBe(200);
  });
});
