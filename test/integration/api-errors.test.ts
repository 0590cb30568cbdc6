import { TestBroker, accountPrefix, startBroker } from '../support/broker';
import { rolesLike } from '../support/target';

describe('bad input and refused requests change nothing', () => {
  let broker: TestBroker;
  let workload: string;

  const snapshot = async () => ({
    leases: (await broker.state<{ n: string }>('SELECT count(*) AS n FROM leases'))[0].n,
    roles: (await rolesLike(accountPrefix('errs'))).length,
  });

  beforeAll(async () => {
    broker = await startBroker('errs', (doc) => {
      doc.roles['errs-locked'] = { connection: 'target', default_ttl: '5m', max_ttl: '1h' };
      doc.server.body_limit = '16kb';
    });
    workload = await broker.token('ns/app/api');
  });
  afterAll(() => broker.close());

  const expectError = (res: { status: number; body: any }, status: number, code?: string) => {
    expect(res.status).toBe(status);
    expect(res.body.error).toEqual({ code: code ?? expect.any(String), message: expect.any(String), request_id: expect.stringMatching(/.+/) });
  };

  it('401 without a token, with a malformed header, or with a bad token', async () => {
    const before = await snapshot();
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`), 401, 'missing_token');
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { headers: { authorization: 'Basic abc' } }), 401);
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: 'not-a-jwt' }), 401, 'invalid_token');
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: `${workload.slice(0, -4)}AAAA` }), 401, 'invalid_token');
    const expired = await broker.token('ns/app/api', { ttlSeconds: -120 });
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: expired }), 401, 'invalid_token');
    const wrongAudience = await broker.token('ns/app/api', { audience: 'someone-else' });
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: wrongAudience }), 401, 'invalid_token');
    expect(await snapshot()).toEqual(before);
    const denied = await broker.state<{ n: string }>(`SELECT count(*) AS n FROM audit_events WHERE type = 'request.denied'`);
    expect(Number(denied[0].n)).toBeGreaterThanOrEqual(6);
  });

  it('403 when policy does not allow the role, and for workloads on operator routes', async () => {
    const before = await snapshot();
    expectError(await broker.api('POST', '/v1/creds/errs-locked', { token: workload }), 403, 'policy_denied');
    const stranger = await broker.token('ns/payments-evil/x');
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: stranger }), 403, 'policy_denied');
    expectError(await broker.api('GET', '/v1/audit', { token: workload }), 403, 'operator_only');
    expectError(await broker.api('POST', '/v1/leases/revoke', { token: workload, body: { role: broker.role } }), 403);
    expect(await snapshot()).toEqual(before);
  });

  it('404 for another workload\'s lease, exactly as for an unknown one', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: {} });
    expect(issued.status).toBe(201);
    const other = await broker.token('ns/app/other');
    const id = issued.body.lease_id;
    for (const [method, path] of [
      ['GET', `/v1/leases/${id}`],
      ['POST', `/v1/leases/${id}/renew`],
      ['POST', `/v1/leases/${id}/revoke`],
    ]) {
      const theirs = await broker.api(method, path, { token: other });
      const unknown = await broker.api(method, path.replace(id, 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA'), { token: other });
      expectError(theirs, 404, 'lease_not_found');
      expect(theirs.body.error.message).toBe(unknown.body.error.message);
    }
    const view = await broker.api('GET', `/v1/leases/${id}`, { token: workload });
    expect(view.body.state).toBe('active');
  });

  it.each([
    ['negative', -5],
    ['zero', 0],
    ['zero string', '0s'],
    ['garbage', 'soon'],
    ['unit only', 'h'],
    ['fractional', 1.5],
    ['huge number', 1e308],
    ['huge string', '99999999999999999h'],
    ['object', { h: 1 }],
    ['null', null],
  ])('422 for a bad ttl (%s) and nothing is created', async (_label, ttl) => {
    const before = await snapshot();
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl } }), 422, 'invalid_request');
    expect(await snapshot()).toEqual(before);
  });

  it('a ttl above max_ttl is capped, not refused', async () => {
    const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '48h' } });
    expect(res.status).toBe(201);
    expect(res.body.ttl_seconds).toBe(3600);
  });

  it.each([
    ['unknown', 'nope'],
    ['traversal', '..%2F..%2Fadmin'],
    ['encoded slash', 'errs-ro%2Fx'],
    ['unicode', 'r%C3%B4le'],
    ['prototype key', '__proto__'],
    ['constructor', 'constructor'],
  ])('an unknown role (%s) is 403 for a workload (no probing of role names), 404 for an operator', async (_label, role) => {
    const before = await snapshot();
    expectError(await broker.api('POST', `/v1/creds/${role}`, { token: workload }), 403, 'policy_denied');
    const operator = await broker.token('ops/dana');
    expectError(await broker.api('POST', `/v1/creds/${role}`, { token: operator }), 404, 'role_not_found');
    expect(await snapshot()).toEqual(before);
  });

  it('422 for unknown fields and bad run ids; 400 for malformed JSON; 413 for an oversized body', async () => {
    const before = await snapshot();
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { tll: '1h' } }), 422);
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { run_id: "x'; DROP TABLE leases;--" } }), 422);
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: [] }), 422);
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, raw: '{"ttl": ' }), 400, 'malformed_json');
    expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, raw: JSON.stringify({ ttl: 'x'.repeat(20000) }) }), 413, 'too_large');
    expectError(await broker.api('GET', '/v1/leases?limit=0', { token: workload }), 422);
    expectError(await broker.api('GET', '/v1/leases?limit=abc', { token: workload }), 422);
    expectError(await broker.api('GET', '/v1/leases?state=exploded', { token: workload }), 422);
    expectError(await broker.api('GET', '/v1/leases?cursor=garbage', { token: workload }), 422, 'invalid_cursor');
    const farPast = Buffer.from(JSON.stringify(['-010000-01-01T00:00:00.000Z', 'tsl_AAAAAAAAAAAAAAAAAAAAAAAA'])).toString('base64url');
    expectError(await broker.api('GET', `/v1/leases?cursor=${farPast}`, { token: workload }), 422, 'invalid_cursor');
    expectError(await broker.api('GET', '/v1/leases?owner=a%00b', { token: workload }), 422);
    expectError(
      await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, raw: '{"ttl":"1h"}', headers: { 'content-type': 'text/plain' } }),
      415,
      'unsupported_media_type',
    );
    const operator = await broker.token('ops/bob');
    expectError(await broker.api('POST', '/v1/leases/revoke', { token: operator, body: {} }), 422);
    // An OIDC subject is only unique within its issuer: a bulk revoke by it must name the issuer.
    expectError(await broker.api('POST', '/v1/leases/revoke', { token: operator, body: { owner: 'repo:acme/app:ref:refs/heads/main' } }), 422);
    expectError(await broker.api('POST', '/v1/leases/revoke', { token: operator, body: { role: broker.role, owner_issuer: 'test' } }), 422);
    expectError(await broker.api('GET', '/v1/nowhere', { token: workload }), 404);
    expect(await snapshot()).toEqual(before);
  });

  it('415 for a non-JSON Content-Type on a POST even with an empty body; a bodiless POST without one is fine', async () => {
    const before = await snapshot();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, raw: '', headers: { 'content-type': type } }), 415, 'unsupported_media_type');
      expectError(await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, headers: { 'content-type': type } }), 415, 'unsupported_media_type');
    }
    expect(await snapshot()).toEqual(before);

    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m', run_id: 'ctype' } });
    expect(issued.status).toBe(201);
    // A refused request changes nothing: the lease is still there after a text/plain revoke-owned.
    expectError(await broker.api('POST', '/v1/leases/revoke-owned', { token: workload, raw: '', headers: { 'content-type': 'text/plain' } }), 415);
    expectError(await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload, headers: { 'content-type': 'text/plain' } }), 415);
    expect((await broker.api('GET', `/v1/leases/${issued.body.lease_id}`, { token: workload })).body.state).toBe('active');

    // No Content-Type and no body: fine where the route takes no body (or an optional one).
    const revoked = await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toEqual({ state: 'revoked' });
    const bare = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload });
    expect(bare.status).toBe(201);
    // JSON declared with an empty body is an empty object.
    const empty = await broker.api('POST', `/v1/leases/${bare.body.lease_id}/renew`, { token: workload, raw: '', headers: { 'content-type': 'application/json; charset=utf-8' } });
    expect(empty.status).toBe(200);
    await broker.api('POST', `/v1/leases/${bare.body.lease_id}/revoke`, { token: workload });
    // A GET is not judged by a Content-Type it has no body for.
    expect((await broker.api('GET', '/v1/whoami', { token: workload, headers: { 'content-type': 'text/plain' } })).status).toBe(200);
  });

  it('health, docs and metrics need no token', async () => {
    expect((await broker.api('GET', '/v1/health/live')).status).toBe(200);
    const ready = await broker.api('GET', '/v1/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body.details.targets).toMatchObject({ status: 'up', degraded: [] });
    const docs = await broker.api('GET', '/docs-json');
    expect(docs.status).toBe(200);
    expect(Object.keys(docs.body.paths)).toContain('/v1/creds/{role}');
    const whoami = await broker.api('GET', '/v1/whoami', { token: workload });
    expect(whoami.body).toEqual({ subject: 'spiffe://test.example/ns/app/api', issuer: 'test', operator: false });
  });
});
