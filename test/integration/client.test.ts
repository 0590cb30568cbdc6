import { closedPort } from '../support/process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BrokerUnreachableError, LeaseLostError, TesseraApiError, TesseraClient, TokenUnavailableError, withLease } from '../../src/client';
import { TestBroker, accountPrefix, sleep, startBroker } from '../support/broker';
import { pgLogin, rolesLike } from '../support/target';

describe('TesseraClient and withLease against a real broker', () => {
  let broker: TestBroker;
  const dir = mkdtempSync(join(tmpdir(), 'tessera-client-'));

  beforeAll(async () => {
    broker = await startBroker('clientx', (doc) => {
      doc.roles['clientx-short'] = { connection: 'target', default_ttl: '2s', max_ttl: '4s', member_of: ['tessera_test_readonly'] };
      doc.policies[0].allow.push({ creds: ['clientx-short'] });
    });
  });
  afterAll(async () => {
    try {
      expect(await rolesLike('tsr_clientx_')).toEqual([]);
    } finally {
      await broker.close();
    }
  });

  const client = async (name: string) => new TesseraClient({ addr: broker.url, token: await broker.token(`ns/app/${name}`) });
  const stateOf = async (id: string) => (await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = $1', [id]))[0]?.state;

  it('issues, lists with a cursor, shows, renews and revokes', async () => {
    const c = await client('lister');
    const issued = [];
    for (let i = 0; i < 3; i++) issued.push(await c.issue(broker.role, { ttl: '10m', runId: 'paged' }));
    expect(issued[0]).toMatchObject({ role: broker.role, plugin: 'postgres', ttl_seconds: 600, renewable: true });
    expect(issued[0].credentials.username).toMatch(new RegExp(`^${accountPrefix('clientx')}`));

    const first = await c.listLeases({ runId: 'paged', limit: 2 });
    expect(first.items).toHaveLength(2);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await c.listLeases({ runId: 'paged', limit: 2, cursor: first.next_cursor! });
    expect(second).toMatchObject({ next_cursor: null });
    expect([...first.items, ...second.items].map((l) => l.lease_id).sort()).toEqual(issued.map((l) => l.lease_id).sort());

    const shown = await c.getLease(issued[0].lease_id);
    expect(shown).toMatchObject({ lease_id: issued[0].lease_id, state: 'active', run_id: 'paged', account: issued[0].credentials.username });
    const renewed = await c.renew(issued[0].lease_id, { increment: '30m' });
    expect(Date.parse(renewed.expires_at)).toBeGreaterThan(Date.parse(issued[0].expires_at));

    expect(await c.revoke(issued[0].lease_id)).toEqual({ state: 'revoked' });
    expect(await c.revokeOwned('paged')).toEqual({ revoked: 2 });
    for (const lease of issued) expect(await stateOf(lease.lease_id)).toBe('revoked');
    expect(await c.whoami()).toEqual({ subject: 'spiffe://test.example/ns/app/lister', issuer: 'test', operator: false });
  });

  it('operator calls: bulk revoke and audit verify', async () => {
    const c = await client('bulky');
    const ops = new TesseraClient({ addr: broker.url, token: await broker.token('ops/bob') });
    const lease = await c.issue(broker.role, { runId: 'bulk-1' });
    const bulk = await ops.bulkRevoke({ runId: 'bulk-1' });
    expect(bulk).toMatchObject({ matched: 1, job_id: expect.any(String) });
    await expect(c.bulkRevoke({ runId: 'bulk-1' })).rejects.toMatchObject({ status: 403, code: 'operator_only' });
    const verified = await ops.auditVerify();
    expect(verified.ok).toBe(true);
    expect(verified.events_checked).toBeGreaterThan(0);
    for (let i = 0; i < 100 && (await stateOf(lease.lease_id)) !== 'revoked'; i++) await sleep(100);
    expect(await stateOf(lease.lease_id)).toBe('revoked');
  });

  it('turns the API error shape into TesseraApiError with status, code, message and request id', async () => {
    const c = await client('errs');
    const missing = await c.getLease('tsl_AAAAAAAAAAAAAAAAAAAAAAAA').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(TesseraApiError);
    expect(missing).toMatchObject({ status: 404, code: 'lease_not_found', message: 'no such lease', routeMissing: false });
    expect((missing as TesseraApiError).requestId).toMatch(/^[0-9a-f-]{36}$/);

    const denied = await c.issue('clientx-nope').catch((e: unknown) => e);
    expect(denied).toMatchObject({ status: 403, code: 'policy_denied' });
    const invalid = await c.issue(broker.role, { ttl: 'soon' }).catch((e: unknown) => e);
    expect(invalid).toMatchObject({ status: 422, code: 'invalid_request', message: expect.stringContaining('ttl') });

    const badToken = new TesseraClient({ addr: broker.url, token: 'a.b.c' });
    await expect(badToken.whoami()).rejects.toMatchObject({ name: 'TesseraApiError', status: 401, code: 'invalid_token' });
  });

  it('reports an unreachable broker, and token problems without echoing the token', async () => {
    const port = await closedPort();
    const down = new TesseraClient({ addr: `http://127.0.0.1:${port}/`, token: 'x.y.z' });
    const err = await down.whoami().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerUnreachableError);
    expect((err as Error).message).toBe(`broker unreachable at http://127.0.0.1:${port} (ECONNREFUSED)`);

    const secret = 'secret-token\nwith-a-newline';
    const bad = await new TesseraClient({ addr: broker.url, token: secret }).whoami().catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(TokenUnavailableError);
    expect((bad as Error).message).not.toContain('secret-token');
    const absent = await new TesseraClient({ addr: broker.url, token: { file: join(dir, 'nope') } }).whoami().catch((e: unknown) => e);
    expect(absent).toBeInstanceOf(TokenUnavailableError);
  });

  it('re-reads a token file at every request; a token function is called at every request', async () => {
    const file = join(dir, 'token');
    const c = new TesseraClient({ addr: broker.url, token: { file } });
    writeFileSync(file, `${await broker.token('ns/app/first')}\n`);
    expect((await c.whoami()).subject).toBe('spiffe://test.example/ns/app/first');
    writeFileSync(file, await broker.token('ns/app/second'));
    expect((await c.whoami()).subject).toBe('spiffe://test.example/ns/app/second');

    let calls = 0;
    const fromFn = new TesseraClient({ addr: broker.url, token: async () => (++calls, broker.token(`ns/app/fn${calls}`)) });
    expect((await fromFn.whoami()).subject).toBe('spiffe://test.example/ns/app/fn1');
    expect((await fromFn.whoami()).subject).toBe('spiffe://test.example/ns/app/fn2');
  });

  describe('withLease', () => {
    it('hands fn a working credential, returns its result, then revokes', async () => {
      const c = await client('with-ok');
      let leaseId = '';
      let username = '';
      const result = await withLease(c, broker.role, async (lease) => {
        leaseId = lease.lease_id;
        username = String(lease.credentials.username);
        expect(await stateOf(leaseId)).toBe('active');
        return (await pgLogin(lease.credentials as never)).ok;
      });
      expect(result).toBe(true);
      expect(await stateOf(leaseId)).toBe('revoked');
      expect(await rolesLike(username)).toEqual([]);
    });

    it('revokes when fn throws, and rethrows fn\'s own error', async () => {
      const c = await client('with-throw');
      const boom = new Error('boom');
      let leaseId = '';
      await expect(
        withLease(c, broker.role, (lease) => {
          leaseId = lease.lease_id;
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(leaseId).not.toBe('');
      expect(await stateOf(leaseId)).toBe('revoked');
    });

    it('renews while fn runs past the TTL', async () => {
      const c = await client('with-renew');
      const login = await withLease(
        c,
        broker.role,
        async (lease) => {
          await sleep(5000);
          return pgLogin(lease.credentials as never);
        },
        { ttl: '2s' },
      );
      expect(login).toMatchObject({ ok: true });
    }, 30_000);

    it('warns before the max TTL and aborts fn\'s signal with LeaseLostError when the lease ends', async () => {
      const c = await client('with-max');
      const warnings: { at: number; message: string }[] = [];
      let maxExpiresAt = 0;
      const reason = await withLease(
        c,
        'clientx-short',
        (lease, { signal }) => {
          maxExpiresAt = Date.parse(lease.max_expires_at);
          return new Promise<unknown>((resolve) => signal.addEventListener('abort', () => resolve(signal.reason)));
        },
        { onWarning: (message) => warnings.push({ at: Date.now(), message }) },
      );
      expect(reason).toBeInstanceOf(LeaseLostError);
      expect(warnings[0].message).toMatch(/reaches its max TTL .* cannot be renewed further/);
      expect(warnings[0].at).toBeLessThan(maxExpiresAt);
      expect(Date.now()).toBeGreaterThanOrEqual(maxExpiresAt - 50);
    }, 30_000);
  });
});

