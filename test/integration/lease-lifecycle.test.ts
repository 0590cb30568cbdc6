import { TestBroker, accountPrefix, redisDump, startBroker } from '../support/broker';
import { pgLogin, rolesLike } from '../support/target';

describe('lease lifecycle against real PostgreSQL, Redis and BullMQ', () => {
  let broker: TestBroker;
  let workload: string;

  beforeAll(async () => {
    broker = await startBroker('life');
    workload = await broker.token('ns/app/api');
  });
  afterAll(() => broker.close());

  it('issues a credential that logs in, renews within max, revokes, and the login then fails', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '10m', run_id: 'job-1' } });
    expect(issued.status).toBe(201);
    const { lease_id, credentials, ttl_seconds, expires_at, max_expires_at, renewable, plugin } = issued.body;
    expect(lease_id).toMatch(/^tsl_[A-Za-z0-9_-]{24}$/);
    expect(plugin).toBe('postgres');
    expect(ttl_seconds).toBe(600);
    expect(renewable).toBe(true);
    expect(credentials.username.startsWith(accountPrefix('life'))).toBe(true);
    expect(Date.parse(max_expires_at) - Date.parse(expires_at)).toBe(50 * 60 * 1000);

    const login = await pgLogin(credentials);
    expect(login).toEqual({ ok: true, user: credentials.username, widgets: 2 });
    expect(await pgLogin({ ...credentials, password: `${credentials.password}x` })).toEqual({ ok: false, code: '28P01' });


    const renewed = await broker.api('POST', `/v1/leases/${lease_id}/renew`, { token: workload, body: { increment: '30m' } });
    expect(renewed.status).toBe(200);
    expect(Date.parse(renewed.body.expires_at)).toBeGreaterThan(Date.parse(expires_at));
    expect(Date.parse(renewed.body.expires_at)).toBeLessThanOrEqual(Date.parse(max_expires_at));

    const capped = await broker.api('POST', `/v1/leases/${lease_id}/renew`, { token: workload, body: { increment: '100h' } });
    expect(capped.status).toBe(200);
    expect(capped.body.expires_at).toBe(max_expires_at);
    expect((await pgLogin(credentials)).ok).toBe(true);

    const revoked = await broker.api('POST', `/v1/leases/${lease_id}/revoke`, { token: workload });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toEqual({ state: 'revoked' });
    expect(await pgLogin(credentials)).toEqual({ ok: false, code: '28P01' });
    expect(await rolesLike(credentials.username)).toEqual([]);

    const again = await broker.api('POST', `/v1/leases/${lease_id}/revoke`, { token: workload });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ state: 'revoked' });

    const view = await broker.api('GET', `/v1/leases/${lease_id}`, { token: workload });
    expect(view.status).toBe(200);
    expect(Object.keys(view.body).sort()).toEqual(
      ['account', 'created_at', 'expires_at', 'last_error', 'last_error_detail', 'lease_id', 'max_expires_at', 'owner', 'owner_issuer', 'plugin', 'revoked_at', 'role', 'run_id', 'state'].sort(),
    );
    expect(view.body).toMatchObject({ state: 'revoked', run_id: 'job-1', account: credentials.username, owner: 'spiffe://test.example/ns/app/api', owner_issuer: 'test' });
    expect(view.body.revoked_at).not.toBeNull();

    const renewRevoked = await broker.api('POST', `/v1/leases/${lease_id}/renew`, { token: workload });
    expect(renewRevoked.status).toBe(409);
  });

  it('sets VALID UNTIL on the role at the lease expiry and moves it on renew', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: 120 } });
    const [{ v }] = await broker.state<{ v: Date }>('SELECT rolvaliduntil AS v FROM pg_roles WHERE rolname = $1', [issued.body.credentials.username]);
    expect(Math.abs(v.getTime() - Date.parse(issued.body.expires_at))).toBeLessThan(1000);
    const renewed = await broker.api('POST', `/v1/leases/${issued.body.lease_id}/renew`, { token: workload, body: { increment: '20m' } });
    const [{ v: moved }] = await broker.state<{ v: Date }>('SELECT rolvaliduntil AS v FROM pg_roles WHERE rolname = $1', [issued.body.credentials.username]);
    expect(Math.abs(moved.getTime() - Date.parse(renewed.body.expires_at))).toBeLessThan(1000);
  });

  it('bulk revoke by owner matches the owner within the issuer named, and only there', async () => {
    const operator = await broker.token('ops/alice');
    const issued = await Promise.all([1, 2].map(() => broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { run_id: 'by-owner' } })));
    expect(issued.map((r) => r.status)).toEqual([201, 201]);
    const owner = 'spiffe://test.example/ns/app/api';
    const other = await broker.api('POST', '/v1/leases/revoke', { token: operator, body: { owner, owner_issuer: 'another', run_id: 'by-owner' } });
    expect(other.body.matched).toBe(0);
    const own = await broker.api('POST', '/v1/leases/revoke', { token: operator, body: { owner, owner_issuer: 'test', run_id: 'by-owner' } });
    expect(own.body.matched).toBe(2);
  });

  it('revoke-owned revokes only the caller\'s leases of one run', async () => {
    const other = await broker.token('ns/app/other');
    const mine1 = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { run_id: 'run-a' } });
    const mine2 = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { run_id: 'run-b' } });
    const theirs = await broker.api('POST', `/v1/creds/${broker.role}`, { token: other, body: { run_id: 'run-a' } });
    const res = await broker.api('POST', '/v1/leases/revoke-owned', { token: workload, body: { run_id: 'run-a' } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ revoked: 1 });
    expect((await pgLogin(mine1.body.credentials)).ok).toBe(false);
    expect((await pgLogin(mine2.body.credentials)).ok).toBe(true);
    expect((await pgLogin(theirs.body.credentials)).ok).toBe(true);
    const all = await broker.api('POST', '/v1/leases/revoke-owned', { token: workload, body: {} });
    expect(all.body.revoked).toBeGreaterThanOrEqual(1);
    expect((await pgLogin(mine2.body.credentials)).ok).toBe(false);
    expect((await pgLogin(theirs.body.credentials)).ok).toBe(true);
  });

  it('lists only the caller\'s leases, pages with a cursor, and lets operators see all', async () => {
    const lister = await broker.token('ns/app/lister');
    for (let i = 0; i < 5; i++) await broker.api('POST', `/v1/creds/${broker.role}`, { token: lister, body: { run_id: 'paging' } });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await broker.api('GET', `/v1/leases?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: lister });
      expect(page.status).toBe(200);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((l: { lease_id: string }) => l.lease_id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);

    const spy = await broker.api('GET', '/v1/leases?owner=spiffe://test.example/ns/app/api', { token: lister });
    expect(spy.body.items).toEqual([]);

    const operator = await broker.token('ops/alice');
    const all = await broker.api('GET', '/v1/leases?run_id=paging&limit=100', { token: operator });
    expect(all.body.items).toHaveLength(5);
    const bulk = await broker.api('POST', '/v1/leases/revoke', { token: operator, body: { run_id: 'paging' } });
    expect(bulk.status).toBe(202);
    expect(bulk.body).toMatchObject({ matched: 5, job_id: expect.stringMatching(/^bulk-/) });
    const gone = async () => (await broker.api('GET', '/v1/leases?run_id=paging&state=revoked', { token: operator })).body.items.length;
    for (let i = 0; i < 100 && (await gone()) < 5; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await gone()).toBe(5);
  });

  it('the audit chain stays whole under concurrent appends, and verify sees one consistent state meanwhile', async () => {
    const operator = await broker.token('ops/alice');
    const issuing = Promise.all(Array.from({ length: 24 }, () => broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: 60, run_id: 'chain' } })));
    const verifying = Promise.all(Array.from({ length: 6 }, () => broker.api('GET', '/v1/audit/verify', { token: operator })));
    const [issued, verified] = await Promise.all([issuing, verifying]);
    expect(issued.every((r) => r.status === 201)).toBe(true);
    expect(verified.map((v) => v.body.ok)).toEqual(Array(6).fill(true));
    // Activations arriving together are committed as a group: still one lease.issued event per lease,
    // each lease active, and events of one group adjacent in their shard's chain.
    const ids = issued.map((r) => r.body.lease_id as string).sort();
    const events = await broker.state<{ lease_id: string }>(`SELECT lease_id FROM audit_events WHERE type = 'lease.issued' AND lease_id = ANY($1) ORDER BY lease_id`, [ids]);
    expect(events.map((e) => e.lease_id)).toEqual(ids);
    const states = await broker.state<{ state: string }>('SELECT DISTINCT state FROM leases WHERE id = ANY($1)', [ids]);
    expect(states).toEqual([{ state: 'active' }]);
    expect((await broker.api('POST', '/v1/leases/revoke-owned', { token: workload, body: { run_id: 'chain' } })).body).toEqual({ revoked: 24 });
    expect((await broker.api('GET', '/v1/audit/verify', { token: operator })).body.ok).toBe(true);
  });

  it('writes a hash-chained audit trail with no secret in it, and detects tampering', async () => {
    const operator = await broker.token('ops/alice');
    const verify = await broker.api('GET', '/v1/audit/verify', { token: operator });
    expect(verify.status).toBe(200);
    expect(verify.body.ok).toBe(true);
    expect(verify.body.events_checked).toBeGreaterThan(5);

    const events = await broker.api('GET', '/v1/audit?limit=1000', { token: operator });
    const types = new Set(events.body.items.map((e: { type: string }) => e.type));
    for (const t of ['lease.issued', 'lease.renewed', 'lease.revoked']) expect(types.has(t)).toBe(true);

    const [row] = await broker.state<{ id: string }>(`SELECT id FROM audit_events WHERE type = 'lease.renewed' ORDER BY id LIMIT 1`);
    await broker.state(`UPDATE audit_events SET body = replace(body, '"increment_seconds":1800', '"increment_seconds":1') WHERE id = $1`, [row.id]);
    const broken = await broker.api('GET', '/v1/audit/verify', { token: operator });
    expect(broken.body.ok).toBe(false);
    expect(broken.body.first_bad_id).toBe(String(row.id));
  });

  it('keeps passwords out of the state tables, Redis, audit and metrics', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '5m' } });
    const password: string = issued.body.credentials.password;
    const dump = JSON.stringify([
      await broker.state('SELECT * FROM leases'),
      await broker.state('SELECT id, body FROM audit_events'),
    ]);
    expect(dump).not.toContain(password);
    const redis = await redisDump(broker.doc.queue.prefix);
    expect(redis).toContain('expiry-'); // the dump really holds the queue
    expect(redis).not.toContain(password);
    const metrics = await broker.api('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('tessera_leases_issued_total');
    expect(metrics.body).not.toContain(password);
  });
});
