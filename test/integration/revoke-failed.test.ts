import { TestBroker, eventually, startBroker } from '../support/broker';
import { TcpProxy } from '../support/tcp-proxy';
import { TARGET_DB } from '../support/services';
import { pgLogin, rolesLike } from '../support/target';

describe('a target that goes away', () => {
  let broker: TestBroker;
  let workload: string;
  let operator: string;
  const proxy = new TcpProxy('127.0.0.1', 5432);

  beforeAll(async () => {
    const port = await proxy.start();
    broker = await startBroker('down', (doc) => {
      doc.connections.target.url = `postgres://postgres@127.0.0.1:${port}/${TARGET_DB}`;
      doc.connections.target.connect_timeout = 2;
      doc.revoke_attempts = 2;
      doc.reconcile_every = '1s';
      doc.health = { probe_every: '1s' };
    });
    workload = await broker.token('ns/app/api');
    operator = await broker.token('ops/carol');
  });
  afterAll(async () => {
    await broker.close();
    await proxy.stop();
  });

  it('revoke answers 202, exhausts its retries into revoke_failed, and the reconciler finishes once the target is back', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '10m' } });
    expect(issued.status).toBe(201);
    const creds = { username: issued.body.credentials.username, password: issued.body.credentials.password };
    await proxy.stop();

    // Readiness serves the background probe's view: degraded within a probe interval, still 200.
    const ready = await eventually(async () => {
      const res = await broker.api('GET', '/v1/health/ready');
      return res.body.details?.targets?.state === 'degraded' ? res : undefined;
    }, 10_000);
    expect(ready?.status).toBe(200);
    expect(ready?.body.details.targets).toMatchObject({ state: 'degraded', degraded: ['target'] });

    const revoke = await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
    expect(revoke.status).toBe(202);
    expect(revoke.body).toEqual({ state: 'revoking' });

    const failed = await eventually(async () => {
      const list = await broker.api('GET', '/v1/leases?state=revoke_failed', { token: operator });
      return list.body.items.find((l: { lease_id: string }) => l.lease_id === issued.body.lease_id);
    }, 20_000);
    // Operators see the stable code and the target's own words.
    expect(failed).toMatchObject({ state: 'revoke_failed', last_error: 'target_unavailable', last_error_detail: expect.stringContaining('cannot reach') });
    expect(JSON.stringify(failed)).not.toContain(creds.password);
    // The owner sees the code only: the target's text can name hosts, users and internals.
    const own = await broker.api('GET', `/v1/leases/${issued.body.lease_id}`, { token: workload });
    expect(own.body).toMatchObject({ state: 'revoke_failed', last_error: 'target_unavailable', last_error_detail: null });
    const ownList = await broker.api('GET', '/v1/leases?state=revoke_failed', { token: workload });
    expect(ownList.body.items[0]).toMatchObject({ last_error: 'target_unavailable', last_error_detail: null });
    expect(JSON.stringify([own.body, ownList.body])).not.toContain('cannot reach');
    const metrics = await broker.api('GET', '/metrics');
    expect(metrics.body).toMatch(/tessera_lease_revocations_total\{plugin="postgres",result="revoke_failed"\} 1/);
    expect(metrics.body).toMatch(/tessera_leases\{role="[^"]+",plugin="postgres",state="revoke_failed"\} 1/);
    const events = await broker.state(`SELECT body FROM audit_events WHERE type = 'lease.revoke_failed' AND lease_id = $1`, [issued.body.lease_id]);
    expect(events).toHaveLength(1);

    await proxy.start();
    const revoked = await eventually(async () => (await broker.api('GET', `/v1/leases/${issued.body.lease_id}`, { token: workload })).body.state === 'revoked', 20_000);
    expect(revoked).toBe(true);
    expect(await pgLogin(creds)).toEqual({ ok: false, code: '28P01' });
    expect(await rolesLike(creds.username)).toEqual([]);
  });

  it('an issue while the target is down is a 503 and leaves no lease active and no account', async () => {
    await proxy.stop();
    try {
      const res = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: {} });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('target_unavailable');
      const active = await broker.state(`SELECT id FROM leases WHERE state IN ('active','pending') AND owner = $1 AND created_at > now() - interval '30 seconds'`, [
        'spiffe://test.example/ns/app/api',
      ]);
      expect(active).toEqual([]);
    } finally {
      await proxy.start();
    }
  });
});
