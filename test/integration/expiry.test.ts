import { Client } from 'pg';
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

  it('200 leases due in the same second are all revoked: logins refused, sessions ended, roles dropped', async () => {
    const N = 200;
    const mass = await broker.token('ns/app/mass');
    // Issued over a second or two, each with the ttl that makes it due in [due, due + 1 s).
    const due = Date.now() + 8_000;
    const issued: { lease_id: string; expires_at: string; credentials: PgCredentials }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < N) {
          next++;
          const ttl = Math.max(1, Math.ceil((due - Date.now()) / 1000));
          const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: mass, body: { ttl: `${ttl}s` } });
          expect(res.status).toBe(201);
          issued.push(res.body);
        }
      }),
    );
    const expiries = issued.map((l) => Date.parse(l.expires_at));
    expect(Math.max(...expiries) - Math.min(...expiries)).toBeLessThan(1500);
    // Sessions open on a sample of them, alive until the revocation.
    const sessions = await Promise.all(
      issued.slice(0, 10).map(async (l) => {
        const c = l.credentials;
        const client = new Client({ host: c.host, port: c.port, database: c.database, user: c.username, password: c.password });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      }),
    );
    const alive = (c: Client) => c.query('SELECT 1').then(() => true, () => false);
    try {
      for (const c of sessions) expect(await alive(c)).toBe(true);
      const ids = issued.map((l) => l.lease_id);
      const done = await eventually(async () => {
        const rows = await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM leases WHERE id = ANY($1) AND state <> 'revoked'`, [ids]);
        return rows[0].n === 0;
      }, 30_000, 200);
      expect(done).toBe(true);
      const [lateness] = await broker.state<{ p99: number }>(
        `SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM revoked_at - expires_at) * 1000) AS p99 FROM leases WHERE id = ANY($1)`,
        [ids],
      );
      expect(Number(lateness.p99)).toBeLessThanOrEqual(2000);
      expect(await broker.state(`SELECT account FROM leases WHERE id = ANY($1) AND account IN (SELECT rolname FROM pg_roles)`, [ids])).toEqual([]);
      for (const c of sessions) expect(await alive(c)).toBe(false);
      const logins = await Promise.all(issued.map((l) => pgLogin(l.credentials)));
      expect(logins.filter((r) => r.ok)).toEqual([]);
      const events = await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'lease.expired' AND lease_id = ANY($1)`, [ids]);
      expect(events[0].n).toBe(N);
    } finally {
      await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
    }
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
