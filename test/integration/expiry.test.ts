import { TestBroker, eventually, flushQueue, sleep, startBroker } from '../support/broker';
import { PgCredentials, pgLogin, rolesLike } from '../support/target';

/** Polls the login until it fails; returns when it first failed. */
async function loginStopsAt(creds: PgCredentials, timeoutMs: number): Promise<number | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await pgLogin(creds)).ok) return Date.now();
    await sleep(50);
  }
  return undefined;
}

describe('expiry', () => {
  let broker: TestBroker;
  let workload: string;

  beforeAll(async () => {
    broker = await startBroker('expiry', (doc) => {
      doc.reconcile_every = '2s';
    });
    workload = await broker.token('ns/app/batch');
  });
  afterAll(() => broker.close());

  it('a 3 s lease stops working within 2 s of expires_at, and the role is dropped', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '3s' } });
    expect(issued.status).toBe(201);
    expect((await pgLogin(issued.body.credentials)).ok).toBe(true);
    const stopped = await loginStopsAt(issued.body.credentials, 10_000);
    expect(stopped).toBeDefined();
    const lateness = stopped! - Date.parse(issued.body.expires_at);
    expect(lateness).toBeLessThanOrEqual(2000);
    const state = await eventually(async () => (await broker.api('GET', `/v1/leases/${issued.body.lease_id}`, { token: workload })).body.state === 'revoked');
    expect(state).toBe(true);
    expect(await rolesLike(issued.body.credentials.username)).toEqual([]);
  });

  it('a renewed lease outlives its first expiry (the expiry job moves with it)', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '2s' } });
    await broker.api('POST', `/v1/leases/${issued.body.lease_id}/renew`, { token: workload, body: { increment: '6s' } });
    await sleep(3500);
    expect((await pgLogin(issued.body.credentials)).ok).toBe(true);
    const view = await broker.api('GET', `/v1/leases/${issued.body.lease_id}`, { token: workload });
    expect(view.body.state).toBe('active');
  });

  it('with the queue wiped from Redis, the reconciler still revokes expired leases', async () => {
    const issued = await Promise.all(
      [1, 2, 3].map(() => broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '2s' } })),
    );
    expect(await flushQueue(broker.doc.queue.prefix)).toBeGreaterThan(0);
    for (const lease of issued) {
      const stopped = await loginStopsAt(lease.body.credentials, 10_000);
      expect(stopped).toBeDefined();
      // one reconciler interval (2 s) plus its one-second grace
      expect(stopped! - Date.parse(lease.body.expires_at)).toBeLessThanOrEqual(2000 + 1000 + 500);
    }
    const states = await eventually(async () => {
      const rows = await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = ANY($1)', [issued.map((l) => l.body.lease_id)]);
      return rows.every((r) => r.state === 'revoked') ? rows : undefined;
    });
    expect(states).toHaveLength(3);
  });
});
