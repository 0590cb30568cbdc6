// A real OpenID Provider for the console tests: the `oidc-provider` package (ESM only, hence a child
// process), on loopback, with one confidential client that must use PKCE and the package's development
// login and consent forms (any login name is accepted; it becomes the subject).
//
// Input: the environment variable OIDC_TEST_CLIENT, JSON {client_id, client_secret, redirect_uri, host?}.
// Output: one line of JSON on stdout, {"issuer": "..."}, once it listens.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const client = JSON.parse(process.env.OIDC_TEST_CLIENT ?? '{}');
const host = client.host ?? 'localhost';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `test-${process.pid}`, use: 'sig', alg: 'RS256' };

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://${host}:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: client.client_id,
        client_secret: client.client_secret,
        redirect_uris: [client.redirect_uri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    pkce: { required: () => true },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    findAccount: (_ctx, id) => ({
      accountId: id,
      claims: () => ({ sub: id, name: `${id[0].toUpperCase()}${id.slice(1)} Example`, email: `${id}@example.test` }),
    }),
    features: { devInteractions: { enabled: true } },
  });
  // Development mode's warnings about http and loopback are expected here.
  provider.on('server_error', (_ctx, err) => console.error(`oidc-provider: ${err.message}`));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
