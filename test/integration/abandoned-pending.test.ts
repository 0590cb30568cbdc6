import { Client } from 'pg';
import { ISSUER_LOCK_NAMESPACE } from '../../src/leases/issuer-session';
import { TestBroker, eventually, sleep, startBroker } from '../support/broker';
import { withAdmin } from '../support/target';

/**
 * A pending lease is abandoned when the process issuing it is gone: the session lock it names is held
 * by nobody. One whose process lives is left alone, however old; age alone still ends one without a lock.
 */
describe('pending leases and their issuing process', () => {
  let broker: TestBroker;
  let otherProcess: Client;
  const LIVE_KEY = 424242;
  const GONE_KEY = 434343;

  beforeAll(async () => {
    broker = await startBroker('pendlock', (doc) => {
      doc.reconcile_every = '1s';
      doc.pending_timeout = '60s';
    });
    // Another broker process, alive: it holds its issuer lock on its own session.
    otherProcess = new Client({ connectionString: broker.config.storage.postgres_url });
    await otherProcess.connect();
    await otherProcess.query('SELECT pg_advisory_lock($1, $2)', [ISSUER_LOCK_NAMESPACE, LIVE_KEY]);
  });
  afterAll(async () => {
    await otherProcess.end();
    await broker.close();
  });

  const insertPending = async (id: string, issuerLock: number | null, ageSeconds = 0) => {
    await broker.state(
      `INSERT INTO leases (id, role, connection, plugin, account, owner, owner_issuer, state, created_at, expires_at, max_expires_at, issuer_lock)
       VALUES ($1, 'pendlock-ro', 'target', 'postgres', $2, 'spiffe://test.example/ns/app/x', 'test', 'pending',
               now() - make_interval(secs => $3), now() + interval '5 minutes', now() + interval '1 hour', $4)`,
      [id, `tsr_pendlock_ro_${id.slice(-12).toLowerCase().replace(/[^a-z0-9]/g, 'x')}`, ageSeconds, issuerLock],
    );
  };
  const stateOf = async (id: string) => (await broker.state<{ state: string; last_error: string | null }>('SELECT state, last_error_code AS last_error FROM leases WHERE id = $1', [id]))[0];

  it('is cleaned up within two reconciler intervals when its process is gone, and left alone while it lives', async () => {
    const gone = 'tsl_goneAAAAAAAAAAAAAAAAAAAA';
    const live = 'tsl_liveAAAAAAAAAAAAAAAAAAAA';
    const legacy = 'tsl_legacyAAAAAAAAAAAAAAAAAA';
    await insertPending(gone, GONE_KEY);
    await insertPending(live, LIVE_KEY);
    await insertPending(legacy, null);
    const started = Date.now();
    expect(await eventually(async () => (await stateOf(gone)).state === 'failed', 5000, 50)).toBe(true);
    expect(Date.now() - started).toBeLessThanOrEqual(2000);
    expect(await stateOf(gone)).toEqual({ state: 'failed', last_error: 'abandoned' });
    await sleep(2500);
    expect((await stateOf(live)).state).toBe('pending');
    expect((await stateOf(legacy)).state).toBe('pending');
    const events = await broker.state(`SELECT 1 FROM audit_events WHERE type = 'lease.abandoned' AND lease_id = $1`, [gone]);
    expect(events).toHaveLength(1);

    // The other process dies: its lease goes too.
    await otherProcess.query('SELECT pg_advisory_unlock_all()');
    expect(await eventually(async () => (await stateOf(live)).state === 'failed', 5000, 50)).toBe(true);
    // Without a lock (written before issuer locks), only pending_timeout ends it.
    await broker.state(`UPDATE leases SET created_at = now() - interval '61 seconds' WHERE id = $1`, [legacy]);
    expect(await eventually(async () => (await stateOf(legacy)).state === 'failed', 5000, 50)).toBe(true);
  });

  it('the broker\'s own issues name its lock, which it holds while it runs', async () => {
    const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: await broker.token('ns/app/api'), body: { ttl: '1m' } });
    expect(issued.status).toBe(201);
    const [{ issuer_lock: key }] = await broker.state<{ issuer_lock: number }>('SELECT issuer_lock FROM leases WHERE id = $1', [issued.body.lease_id]);
    expect(key).toBeGreaterThan(0);
    const held = await withAdmin('postgres', (c) =>
      c.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 2`, [
        ISSUER_LOCK_NAMESPACE,
        key,
      ]),
    );
    expect(held.rowCount).toBe(1);
  });
});
