import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createHash } from 'node:crypto';
import { IncomingMessage, Server, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { DomainError } from '../../src/common/errors';
import { OidcClient } from '../../src/console/oidc-client';

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/** A minimal provider on loopback: discovery, keys, and a token endpoint answering with the ID token a test sets. */
class FakeProvider {
  server?: Server;
  url = '';
  idToken = '';
  tokenError?: { status: number; body: unknown };
  lastTokenRequest?: { authorization?: string; body: URLSearchParams };
  keys: unknown[] = [];

  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.url === '/.well-known/openid-configuration') {
        return json(200, { issuer: this.url, authorization_endpoint: `${this.url}/auth`, token_endpoint: `${this.url}/token`, jwks_uri: `${this.url}/jwks` });
      }
      if (req.url === '/jwks') return json(200, { keys: this.keys });
      if (req.url === '/token' && req.method === 'POST') {
        this.lastTokenRequest = { authorization: req.headers.authorization, body: new URLSearchParams(await read(req)) };
        if (this.tokenError) return json(this.tokenError.status, this.tokenError.body);
        return json(200, { access_token: 'at', token_type: 'Bearer', id_token: this.idToken });
      }
      json(404, {});
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server!.close(() => r()));
  }
}

async function read(req: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
}

describe('the console\'s OpenID Connect client', () => {
  const provider = new FakeProvider();
  let key: Key;
  let otherKey: Key;
  let client: OidcClient;
  const NONCE = 'nonce-of-this-sign-in';

  beforeAll(async () => {
    await provider.start();
    ({ privateKey: key } = await generateKeyPair('RS256', { extractable: true }));
    ({ privateKey: otherKey } = await generateKeyPair('RS256', { extractable: true }));
    const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = await exportJWK(key);
    provider.keys = [{ ...pub, kid: 'k1', alg: 'RS256', use: 'sig' }];
    client = new OidcClient({
      name: 'sso',
      issuer: provider.url,
      jwksOrigins: [],
      jwksCooldownSeconds: 0,
      clientId: 'tessera-console',
      clientSecret: 'se:cret',
      scopes: ['openid', 'profile'],
      redirectUri: 'https://tessera.example/ui/callback',
    });
  });
  afterAll(() => provider.stop());

  const sign = (claims: Record<string, unknown>, opts: { key?: Key; alg?: string; kid?: string } = {}) =>
    new SignJWT({ nonce: NONCE, ...claims })
      .setProtectedHeader({ alg: opts.alg ?? 'RS256', kid: opts.kid ?? 'k1' })
      .setIssuer(String(claims.iss ?? provider.url))
      .setAudience((claims.aud as string | string[]) ?? 'tessera-console')
      .setSubject(String(claims.sub ?? 'alice'))
      .setIssuedAt()
      .setExpirationTime((claims.exp as number) ?? '10m')
      .sign(opts.key ?? key);

  async function refusal(idToken: string, nonce = NONCE): Promise<DomainError> {
    provider.idToken = idToken;
    const err = await client.signIn('the-code', 'the-verifier', nonce).then(() => undefined, (e: unknown) => e);
    if (!(err instanceof DomainError)) throw new Error(`expected a refusal, got ${String(err)}`);
    return err;
  }

  it('sends the browser to the provider with state, nonce and an S256 PKCE challenge', async () => {
    const url = new URL(await client.authorizationUrl({ state: 'st', nonce: 'no', codeVerifier: 'verifier-123' }));
    expect(url.origin + url.pathname).toBe(`${provider.url}/auth`);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code',
      client_id: 'tessera-console',
      redirect_uri: 'https://tessera.example/ui/callback',
      scope: 'openid profile',
      state: 'st',
      nonce: 'no',
      code_challenge: createHash('sha256').update('verifier-123').digest('base64url'),
      code_challenge_method: 'S256',
    });
  });

  it('exchanges the code with the verifier and client authentication, and returns the verified claims', async () => {
    provider.idToken = await sign({ name: 'Alice' });
    const claims = await client.signIn('the-code', 'the-verifier', NONCE);
    expect(claims).toMatchObject({ sub: 'alice', name: 'Alice', aud: 'tessera-console', iss: provider.url });
    const { authorization, body } = provider.lastTokenRequest!;
    expect(authorization).toBe(`Basic ${Buffer.from('tessera-console:se%3Acret').toString('base64')}`);
    expect(Object.fromEntries(body)).toEqual({ grant_type: 'authorization_code', code: 'the-code', redirect_uri: 'https://tessera.example/ui/callback', code_verifier: 'the-verifier' });
  });

  it.each([
    ['another nonce', async () => sign({ nonce: 'someone-elses' })],
    ['another audience', async () => sign({ aud: 'other-client' })],
    ['several audiences without azp', async () => sign({ aud: ['tessera-console', 'other'] })],
    ['another issuer', async () => sign({ iss: 'https://evil.example' })],
    ['an expired token', async () => sign({ exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['a key that is not the provider\'s', async () => sign({}, { key: otherKey })],
    ['an unknown kid', async () => sign({}, { kid: 'k-unknown' })],
    ['a SPIFFE ID as subject', async () => sign({ sub: 'spiffe://prod.example/ops/x' })],
    ['a symmetric algorithm', async () => new SignJWT({ nonce: NONCE }).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setIssuer(provider.url).setAudience('tessera-console').setSubject('alice').setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode('x'.repeat(32)))],
    ['no signature', async () => `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: provider.url, aud: 'tessera-console', sub: 'alice', nonce: NONCE, exp: 9999999999, iat: 1 })).toString('base64url')}.`],
  ])('refuses an ID token with %s', async (_what, make) => {
    expect(await refusal(await make())).toMatchObject({ kind: 'unauthenticated', code: 'sign_in_failed' });
  });

  it('refuses when the token endpoint refuses, naming only the error code', async () => {
    provider.tokenError = { status: 400, body: { error: 'invalid_grant', error_description: 'code <script>reused</script>' } };
    try {
      const err = await refusal('');
      expect(err.message).toContain('(invalid_grant)');
      expect(err.message).not.toContain('script');
    } finally {
      provider.tokenError = undefined;
    }
  });

  it('accepts several audiences when azp names this client', async () => {
    provider.idToken = await sign({ aud: ['tessera-console', 'other'], azp: 'tessera-console' });
    await expect(client.signIn('c', 'v', NONCE)).resolves.toMatchObject({ sub: 'alice' });
  });
});
