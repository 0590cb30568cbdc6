import { createHash } from 'node:crypto';
import { TestBroker, startBroker } from '../support/broker';
import { claims, otherKey, signRaw } from '../support/forge';
import { spiffe } from '../support/identity';

describe('bootstrap secrets for legacy apps', () => {
  let broker: TestBroker;
  let operator: string;
  let ci: Awaited<ReturnType<typeof otherKey>>;
  const ciIssuer = 'https://ci.example';

  beforeAll(async () => {
    ci = await otherKey('ci-boot');
    broker = await startBroker('boot', (doc) => {
      doc.identity.issuers.push({ name: 'ci', type: 'oidc', issuer: ciIssuer, jwks_file: ci.file });
      doc.policies.push({ name: 'legacy', subjects: [{ issuer: 'bootstrap', subject: 'bootstrap/billing' }], allow: [{ creds: ['boot-ro'] }] });
      // A rule of another issuer whose subjects happen to look like bootstrap ones, on a role of its own.
      doc.roles['boot-ci'] = { ...doc.roles['boot-ro'] };
      doc.policies.push({ name: 'lookalike', subjects: [{ issuer: 'ci', subject: 'bootstrap/*' }], allow: [{ creds: ['boot-ci'] }] });
      doc.identity.bootstrap = { token_ttl: '5m', max_secret_ttl: '1h' };
    });
    operator = await broker.token('ops/erin');
  });
  afterAll(() => broker.close());

  const create = (body: unknown, token = operator) => broker.api('POST', '/v1/auth/bootstrap-secrets', { token, body });
  const exchange = (secret_id: unknown) => broker.api('POST', '/v1/auth/bootstrap', { body: { secret_id } });

  it('a secret works once, for its subject, and never again; it is stored only as a keyed hash', async () => {
    const created = await create({ subject: 'bootstrap/billing', expires_in: '10m' });
    expect(created.status).toBe(201);
    const secretId: string = created.body.secret_id;
    expect(secretId).toMatch(/^tsb_[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{43}$/);

    const rows = await broker.state<{ id: string; hash: Buffer }>('SELECT * FROM bootstrap_secrets');
    expect(JSON.stringify(rows)).not.toContain(secretId.split('.')[1]);
    // Not a plain SHA-256 of the secret: a copy of the table is no dictionary to test guesses against.
    const [id, secret] = secretId.slice(4).split('.');
    const row = rows.find((r) => r.id === id)!;
    for (const text of [secret, `${id}.${secret}`]) expect(row.hash.equals(createHash('sha256').update(text).digest())).toBe(false);

    const first = await exchange(secretId);
    expect(first.status).toBe(200);
    expect(Date.parse(first.body.expires_at) - Date.now()).toBeLessThanOrEqual(5 * 60_000 + 2000);
    const whoami = await broker.api('GET', '/v1/whoami', { token: first.body.token });
    expect(whoami.body).toEqual({ subject: 'bootstrap/billing', issuer: 'bootstrap', operator: false });
    const lease = await broker.api('POST', '/v1/creds/boot-ro', { token: first.body.token, body: { ttl: '1m' } });
    expect(lease.status).toBe(201);

    const second = await exchange(secretId);
    expect(second.status).toBe(401);
    expect(second.body.error.code).toBe('invalid_bootstrap_secret');
  });

  it('a bootstrap identity is matched only by rules naming issuer bootstrap', async () => {
    const exchanged = await exchange((await create({ subject: 'bootstrap/billing' })).body.secret_id);
    expect((await broker.api('POST', '/v1/creds/boot-ci', { token: exchanged.body.token, body: { ttl: '1m' } })).status).toBe(403);
    // The same subject from the issuer the rule names is allowed: the rule is fine, the issuer is not.
    const ciToken = await signRaw({ alg: 'ES256', kid: 'ci-boot' }, claims('bootstrap/billing', { iss: ciIssuer }), ci.privateJwk);
    const lease = await broker.api('POST', '/v1/creds/boot-ci', { token: ciToken, body: { ttl: '1m' } });
    expect(lease.status).toBe(201);
    await broker.api('POST', `/v1/leases/${lease.body.lease_id}/revoke`, { token: ciToken });
  });

  it.each([
    ['a workload\'s SPIFFE ID', spiffe('ns/app/api')],
    ['an OIDC workload\'s subject', 'system:serviceaccount:payments:api'],
    ['a subject outside the namespace', 'legacy:billing'],
    ['the bare namespace', 'bootstrap/'],
    ['an empty segment', 'bootstrap//billing'],
  ])('refuses a bootstrap secret for %s (422)', async (_label, subject) => {
    const res = await create({ subject });
    expect(res.status).toBe(422);
    expect(res.body.error.message).toMatch(/subject_prefix/);
  });

  it('an expired secret fails', async () => {
    const created = await create({ subject: 'bootstrap/billing', expires_in: 1 });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await exchange(created.body.secret_id)).status).toBe(401);
  });

  it('a secret with its last byte changed fails (and does not use up the real one)', async () => {
    const created = await create({ subject: 'bootstrap/billing' });
    const id: string = created.body.secret_id;
    const forged = id.slice(0, -1) + (id.endsWith('A') ? 'B' : 'A');
    expect((await exchange(forged)).status).toBe(401);
    expect((await exchange(id)).status).toBe(200);
  });

  it('uses: n allows exactly n exchanges, even when they race', async () => {
    const created = await create({ subject: 'bootstrap/billing', uses: 3 });
    const results = await Promise.all(Array.from({ length: 8 }, () => exchange(created.body.secret_id)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(3);
    expect(results.filter((r) => r.status === 401)).toHaveLength(5);
  });

  it('only operators create secrets; bad input is a 4xx', async () => {
    expect((await create({ subject: 'bootstrap/billing' }, await broker.token('ns/app/api'))).status).toBe(403);
    expect((await create({ subject: 'bootstrap/billing', expires_in: '2h' })).status).toBe(422);
    expect((await create({ subject: '' })).status).toBe(422);
    expect((await create({ subject: 'a\u0000b' })).status).toBe(422);
    expect((await create({ subject: 'bootstrap/x', uses: 0 })).status).toBe(422);
    // A bootstrap secret can never be a way to become an operator.
    expect((await create({ subject: 'spiffe://test.example/ops/root' })).status).toBe(422);
    expect((await exchange('garbage')).status).toBe(401);
    expect((await exchange(42)).status).toBe(422);
  });

  it('a flood of unknown bootstrap secrets turns into 429s instead of unbounded audit writes', async () => {
    const count = async () => (await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'request.denied'`))[0].n;
    const before = await count();
    const forged = (i: number) => `tsb_${String(i).padStart(16, 'x')}.${'A'.repeat(43)}`;
    const statuses = await Promise.all(Array.from({ length: 120 }, (_, i) => exchange(forged(i)).then((r) => r.status)));
    expect(statuses.every((st) => st === 401 || st === 429)).toBe(true);
    expect(statuses.filter((st) => st === 429).length).toBeGreaterThan(0);
    expect((await count()) - before).toBeLessThanOrEqual(60);
  });
});

describe('limits', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('limits', (doc) => {
      doc.limits = { per_identity_rps: 5, max_active_leases_per_role: 3 };
    });
  });
  afterAll(() => broker.close());

  it('per-identity rate limit: beyond per_identity_rps, 429 for that identity only', async () => {
    const noisy = await broker.token('ns/app/noisy');
    const statuses = await Promise.all(Array.from({ length: 12 }, () => broker.api('GET', '/v1/whoami', { token: noisy }).then((r) => r.status)));
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(5);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(5);
    expect((await broker.api('GET', '/v1/whoami', { token: await broker.token('ns/app/quiet') })).status).toBe(200);
  });

  it('per-role cap on live leases: 429 beyond it, and room again after a revoke', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const token = await broker.token('ns/app/capped');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await broker.api('POST', '/v1/creds/limits-ro', { token, body: { ttl: '1m' } });
      expect(res.status).toBe(201);
      ids.push(res.body.lease_id);
    }
    const over = await broker.api('POST', '/v1/creds/limits-ro', { token, body: {} });
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('role_lease_limit');
    await broker.api('POST', `/v1/leases/${ids[0]}/revoke`, { token });
    expect((await broker.api('POST', '/v1/creds/limits-ro', { token, body: {} })).status).toBe(201);
  });

  it('a flood of bad tokens from one address turns into 429s instead of unbounded audit writes', async () => {
    const before = (await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'request.denied'`))[0].n;
    const statuses = await Promise.all(Array.from({ length: 120 }, () => broker.api('GET', '/v1/whoami', { token: 'a.b.c' }).then((r) => r.status)));
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    const after = (await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'request.denied'`))[0].n;
    expect(after - before).toBeLessThanOrEqual(60);
  });
});

describe('per-owner cap on live leases', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('ownercap', (doc) => {
      doc.limits = { max_active_leases_per_owner: 3, max_active_leases_per_role: 5 };
      doc.roles['ownercap-two'] = { connection: 'target', default_ttl: '5m', max_ttl: '1h', member_of: ['tessera_test_readonly'] };
      doc.policies[0].allow.push({ creds: ['ownercap-two'] });
    });
  });
  afterAll(() => broker.close());

  const issue = (token: string, role = broker.role) => broker.api('POST', `/v1/creds/${role}`, { token, body: { ttl: '1m' } });

  it('one owner at its cap gets 429 on every role, and leaves the role usable by another owner', async () => {
    const greedy = await broker.token('ns/app/greedy');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await issue(greedy, i === 2 ? 'ownercap-two' : broker.role);
      expect(res.status).toBe(201);
      ids.push(res.body.lease_id);
    }
    for (const role of [broker.role, 'ownercap-two']) {
      const over = await issue(greedy, role);
      expect(over.status).toBe(429);
      expect(over.body.error.code).toBe('owner_lease_limit');
      expect(over.body.error.message).toContain('limits.max_active_leases_per_owner');
    }
    // Refused issues wrote nothing.
    const rows = await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM leases WHERE owner = $1`, ['spiffe://test.example/ns/app/greedy']);
    expect(rows[0].n).toBe(3);

    // The role the greedy owner filled up to its own cap still serves everybody else.
    const other = await broker.token('ns/app/modest');
    const theirs = await issue(other);
    expect(theirs.status).toBe(201);

    // A revoke makes room again for that owner.
    await broker.api('POST', `/v1/leases/${ids[0]}/revoke`, { token: greedy });
    expect((await issue(greedy)).status).toBe(201);

    // The role's own cap still applies across owners (5 on this role: greedy 2, modest 1, two more).
    expect((await issue(await broker.token('ns/app/third'))).status).toBe(201);
    expect((await issue(await broker.token('ns/app/fourth'))).status).toBe(201);
    const full = await issue(await broker.token('ns/app/fifth'));
    expect(full.status).toBe(429);
    expect(full.body.error.code).toBe('role_lease_limit');
  });
});
