import { request } from 'node:http';
import { TestBroker, accountPrefix, eventually, startBroker } from '../support/broker';
import { VaultTokenSweeper } from '../../src/vault/vault-token.sweeper';
import { pgLogin, rolesLike } from '../support/target';

interface RawResponse {
  status: number;
  contentType: string | undefined;
  body: any;
}

/**
 * What Vault's Go client (and so the CLI, Agent, consul-template and ESO) sends: PUT with a JSON body and
 * no Content-Type, the token in X-Vault-Token, X-Vault-Request: true.
 */
function goClient(base: string, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  const headers: Record<string, string> = { 'X-Vault-Request': 'true', ...(opts.headers ?? {}) };
  if (opts.token) headers['X-Vault-Token'] = opts.token;
  if (payload !== undefined) headers['Content-Length'] = String(Buffer.byteLength(payload));
  return new Promise((resolve, reject) => {
    const req = request(`${base}/v1/${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, contentType: res.headers['content-type'], body: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

describe('Vault-compatible API on the wire, as the Go client speaks it', () => {
  let broker: TestBroker;
  let jwt: string;
  let token: string;
  const vault = (method: string, path: string, opts?: Parameters<typeof goClient>[3]) => goClient(broker.url, method, path, opts);
  const denied = (res: RawResponse) => {
    expect(res.status).toBe(403);
    expect(res.contentType).toMatch(/^application\/json/);
    expect(res.body).toEqual({ errors: ['permission denied'] });
  };

  beforeAll(async () => {
    broker = await startBroker('vaultwire');
    jwt = await broker.token('ns/app/api');
    const login = await vault('PUT', 'auth/jwt/login', { body: { role: 'app', jwt } });
    expect(login.status).toBe(200);
    token = login.body.auth.client_token;
  });
  afterAll(async () => {
    try {
      // Nothing a test leased may outlive the suite.
      expect(await eventually(async () => (await rolesLike(accountPrefix('vaultwire'))).length === 0)).toBe(true);
    } finally {
      await broker.close();
    }
  });

  it('runs the whole flow with PUT, JSON bodies without Content-Type, and X-Vault-Token', async () => {
    const issued = await vault('GET', `database/creds/${broker.role}`, { token });
    expect(issued.status).toBe(200);
    expect(Object.keys(issued.body).sort()).toEqual(['auth', 'data', 'lease_duration', 'lease_id', 'mount_type', 'renewable', 'request_id', 'warnings', 'wrap_info']);
    expect((await pgLogin(issued.body.data)).ok).toBe(true);
    const leaseId = issued.body.lease_id;

    // increment as a number, a numeric string and a duration string
    for (const [increment, seconds] of [[600, 600], ['900', 900], ['20m', 1200]] as const) {
      const renewed = await vault('PUT', 'sys/leases/renew', { token, body: { lease_id: leaseId, increment } });
      expect(renewed.status).toBe(200);
      expect(renewed.body.lease_id).toBe(leaseId);
      expect(Math.abs(renewed.body.lease_duration - seconds)).toBeLessThanOrEqual(1);
    }
    // the lease id in the path
    const inPath = await vault('PUT', `sys/leases/renew/${leaseId}`, { token, body: { increment: '10m' } });
    expect(inPath.status).toBe(200);
    const lookup = await vault('PUT', 'sys/leases/lookup', { token, body: { lease_id: leaseId } });
    expect(lookup.status).toBe(200);
    expect(lookup.body.data.id).toBe(leaseId);

    const self = await vault('GET', 'auth/token/lookup-self', { token });
    expect(self.body.data.id).toBe(token);
    expect((await vault('PUT', 'auth/token/renew-self', { token, body: { increment: '2h' } })).status).toBe(200);

    const revoked = await vault('PUT', 'sys/leases/revoke', { token, body: { lease_id: leaseId } });
    expect(revoked.status).toBe(204);
    expect((await pgLogin(issued.body.data)).ok).toBe(false);
  });

  it('a JWT works directly in X-Vault-Token, and a client token as Bearer', async () => {
    expect((await vault('GET', 'auth/token/lookup-self', { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    const issued = await vault('GET', `database/creds/${broker.role}`, { token: jwt });
    expect(issued.status).toBe(200);
    expect((await vault('PUT', 'sys/leases/revoke', { token: jwt, body: { lease_id: issued.body.lease_id } })).status).toBe(204);
  });

  it('a client token is no credential on the native API, and never outlives identity.max_token_lifetime', async () => {
    // The native API refuses it in its own shape, as with X-Vault-Token as with a Bearer header.
    const viaHeader = await broker.api('GET', '/v1/whoami', { headers: { 'x-vault-token': token } });
    expect(viaHeader.status).toBe(401);
    expect(viaHeader.body.error.code).toEqual(expect.any(String));
    expect((await broker.api('GET', '/v1/whoami', { headers: { authorization: `Bearer ${token}` } })).status).toBe(401);
    // Renewal is capped at the broker's own token lifetime (1 h here), not token_max_ttl (24 h).
    const renewed = await vault('PUT', 'auth/token/renew-self', { token, body: { increment: '20h' } });
    expect(renewed.status).toBe(200);
    expect(renewed.body.auth.lease_duration).toBeLessThanOrEqual(broker.config.identity.max_token_lifetime);
    // The renewal is audited by accessor, never with the token itself.
    const accessor = token.split('.')[1];
    const events = await broker.state<{ body: string }>(`SELECT body FROM audit_events WHERE type = 'vault.token_renewed'`);
    expect(events.some((e) => e.body.includes(accessor))).toBe(true);
    expect(events.some((e) => e.body.includes(token))).toBe(false);
  });

  it('a request from a web page (Origin, or Sec-Fetch-Site: cross-site) is refused and changes nothing', async () => {
    const before = await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM leases`);
    for (const headers of [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }] as Record<string, string>[]) {
      const res = await vault('GET', `database/creds/${broker.role}`, { token, headers });
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ errors: [expect.any(String)] });
    }
    expect(await broker.state(`SELECT count(*)::int AS n FROM leases`)).toEqual(before);
  });

  it('no token, a garbage token, an expired or revoked one: 403 permission denied', async () => {
    denied(await vault('GET', `database/creds/${broker.role}`));
    denied(await vault('GET', `database/creds/${broker.role}`, { token: 'garbage' }));
    denied(await vault('GET', `database/creds/${broker.role}`, { token: `${token.slice(0, -2)}xx` }));
    denied(await vault('PUT', 'auth/jwt/login', { body: { jwt: 'not-a-jwt' } }));
    const login = await vault('PUT', 'auth/kubernetes/login', { body: { role: 'x', jwt } });
    const expiring = login.body.auth.client_token;
    await broker.state(`UPDATE vault_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [login.body.auth.accessor]);
    denied(await vault('GET', `database/creds/${broker.role}`, { token: expiring }));
    denied(await vault('PUT', 'auth/token/renew-self', { token: expiring }));
  });

  it('policy says no: 403; unknown role: 400 for operators, 403 for workloads', async () => {
    const other = (await vault('PUT', 'auth/jwt/login', { body: { jwt: await broker.token('ns/other/x') } })).body.auth.client_token;
    denied(await vault('GET', `database/creds/${broker.role}`, { token: other }));
    denied(await vault('GET', 'database/creds/nope', { token }));
    const ops = (await vault('PUT', 'auth/jwt/login', { body: { jwt: await broker.token('ops/alice') } })).body.auth.client_token;
    const unknown = await vault('GET', 'database/creds/nope', { token: ops });
    expect(unknown).toMatchObject({ status: 400, body: { errors: ['unknown role: nope'] } });
  });

  it('unknown leases: renew and lookup 400 lease not found, revoke 204', async () => {
    const unknown = `database/creds/${broker.role}/tsl_AAAAAAAAAAAAAAAAAAAAAAAA`;
    expect(await vault('PUT', 'sys/leases/renew', { token, body: { lease_id: unknown } })).toMatchObject({ status: 400, body: { errors: ['lease not found'] } });
    expect(await vault('PUT', 'sys/leases/lookup', { token, body: { lease_id: 'garbage' } })).toMatchObject({ status: 400, body: { errors: ['lease not found'] } });
    expect((await vault('PUT', 'sys/leases/revoke', { token, body: { lease_id: unknown } })).status).toBe(204);
    // Someone else's lease is not found either.
    const issued = await vault('GET', `database/creds/${broker.role}`, { token });
    const stranger = (await vault('PUT', 'auth/jwt/login', { body: { jwt: await broker.token('ns/app/stranger') } })).body.auth.client_token;
    expect(await vault('PUT', 'sys/leases/renew', { token: stranger, body: { lease_id: issued.body.lease_id } })).toMatchObject({ status: 400, body: { errors: ['lease not found'] } });
    expect((await vault('PUT', 'sys/leases/revoke', { token: stranger, body: { lease_id: issued.body.lease_id } })).status).toBe(204);
    expect((await pgLogin(issued.body.data)).ok).toBe(true);
    // An expired lease.
    await broker.state(`UPDATE leases SET expires_at = now() - interval '1 second' WHERE id = $1`, [issued.body.lease_id.split('/').pop()]);
    expect(await vault('PUT', 'sys/leases/renew', { token, body: { lease_id: issued.body.lease_id } })).toMatchObject({ status: 400, body: { errors: ['lease expired'] } });
    expect((await vault('PUT', 'sys/leases/revoke', { token, body: { lease_id: issued.body.lease_id } })).status).toBe(204);
  });

  it('malformed bodies, wrapping, namespaces and unknown paths', async () => {
    const malformed = await vault('PUT', 'sys/leases/renew', { token, raw: '{"lease_id":' });
    expect(malformed.status).toBe(400);
    expect(malformed.contentType).toMatch(/^application\/json/);
    expect(malformed.body.errors).toHaveLength(1);
    expect((await vault('PUT', 'sys/leases/renew', { token, body: { lease_id: 5 } })).status).toBe(400);
    expect((await vault('PUT', 'sys/leases/renew', { token, body: { lease_id: 'x', increment: 'soon' } })).status).toBe(400);
    expect(await vault('GET', `database/creds/${broker.role}`, { token, headers: { 'X-Vault-Wrap-TTL': '60s' } })).toMatchObject({
      status: 400,
      body: { errors: ['response wrapping is not supported'] },
    });
    expect((await vault('GET', 'auth/token/lookup-self', { token, headers: { 'X-Vault-Namespace': 'root' } })).status).toBe(200);
    expect((await vault('GET', 'auth/token/lookup-self', { token, headers: { 'X-Vault-Namespace': 'team-a' } })).status).toBe(400);
    const unknownPath = await vault('GET', 'secret/data/foo', { token });
    expect(unknownPath.status).toBe(404);
    expect(unknownPath.body).toEqual({ errors: [expect.any(String)] });
    expect((await vault('GET', 'sys/mounts', { token })).body).toEqual({ errors: ['unsupported path'] });
  });

  it('without revoke_leases_with_token, an expired token leaves its leases alone', async () => {
    const login = await vault('PUT', 'auth/jwt/login', { body: { jwt } });
    const issued = await vault('GET', `database/creds/${broker.role}`, { token: login.body.auth.client_token });
    await broker.state(`UPDATE vault_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [login.body.auth.accessor]);
    expect((await broker.app.get(VaultTokenSweeper).tick()).revoked).toBe(0);
    expect((await pgLogin(issued.body.data)).ok).toBe(true);
    expect((await vault('PUT', 'sys/leases/revoke', { token: jwt, body: { lease_id: issued.body.lease_id } })).status).toBe(204);
  });

  it('the native API is untouched: JSON errors in its own shape, non-JSON bodies still 415', async () => {
    const native = await broker.api('POST', `/v1/creds/${broker.role}`, { raw: '{}', headers: { 'content-type': 'text/plain' }, token: jwt });
    expect(native.status).toBe(415);
    expect(native.body.error.code).toBe('unsupported_media_type');
  });

  it('every Vault issue, renew and revoke is audited like its native twin', async () => {
    const issued = await vault('GET', `database/creds/${broker.role}`, { token });
    await vault('PUT', 'sys/leases/revoke', { token, body: { lease_id: issued.body.lease_id } });
    const id = issued.body.lease_id.split('/').pop();
    const types = (await broker.state<{ type: string }>('SELECT type FROM audit_events WHERE lease_id = $1 ORDER BY id', [id])).map((r) => r.type);
    expect(types).toEqual(['lease.issued', 'lease.revoked']);
    const logins = await broker.state('SELECT count(*)::int AS n FROM audit_events WHERE type = $1', ['vault.token_created']);
    expect(logins[0].n).toBeGreaterThan(0);
    // A refused login is audited although the route needs no token.
    const refusedLogins = await broker.state(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'request.denied' AND body LIKE '%vault.login%'`);
    expect(refusedLogins[0].n).toBeGreaterThan(0);
  });
});

describe('vault.revoke_leases_with_token: true restores Vault\'s behaviour', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker('vaultrlt', (doc) => {
      doc.vault = { revoke_leases_with_token: true };
    });
  });
  afterAll(() => broker.close());

  it('revoke-self revokes the leases issued with the token', async () => {
    const login = await goClient(broker.url, 'PUT', 'auth/jwt/login', { body: { jwt: await broker.token('ns/app/api') } });
    const token = login.body.auth.client_token;
    const issued = await goClient(broker.url, 'GET', `database/creds/${broker.role}`, { token });
    expect((await pgLogin(issued.body.data)).ok).toBe(true);
    expect((await goClient(broker.url, 'PUT', 'auth/token/revoke-self', { token })).status).toBe(204);
    expect((await pgLogin(issued.body.data)).ok).toBe(false);
  });

  it('a token that expires takes its leases with it at the next sweep; ended tokens are deleted a day later', async () => {
    const login = await goClient(broker.url, 'PUT', 'auth/jwt/login', { body: { jwt: await broker.token('ns/app/api') } });
    const { client_token: token, accessor } = login.body.auth;
    const issued = await goClient(broker.url, 'GET', `database/creds/${broker.role}`, { token });
    await broker.state(`UPDATE vault_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, [accessor]);
    // The sweeper also runs every reconcile_every (1s here): tick it now, and accept either run's work.
    const sweeper = broker.app.get(VaultTokenSweeper);
    await sweeper.tick();
    expect(await eventually(async () => !(await pgLogin(issued.body.data)).ok)).toBe(true);
    await broker.state(`UPDATE vault_tokens SET expires_at = now() - interval '25 hours' WHERE id = $1`, [accessor]);
    await sweeper.tick();
    expect(await broker.state('SELECT id FROM vault_tokens WHERE id = $1', [accessor])).toEqual([]);
  });
});
