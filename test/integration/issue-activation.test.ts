import { Client } from 'pg';
import { TestBroker, sleep, startBroker } from '../support/broker';

/**
 * Issues arriving together are activated in one transaction whose first round trip begins it, moves
 * the leases to active and locks an audit head (LeaseRepository.activateMany): each issued lease gets
 * exactly one `lease.issued` event on a chain that verifies, and when every head is held elsewhere
 * the issue waits for one instead of failing or writing around the lock.
 */
describe('activation of issued leases with their audit events', () => {
  let broker: TestBroker;
  let workload: string;
  let operator: string;

  beforeAll(async () => {
    broker = await startBroker('activation');
    workload = await broker.token('ns/app/burst');
    operator = await broker.token('ops/auditor');
  });
  afterAll(() => broker.close());

  const issue = () => broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '10m' } });
  const issuedEvents = (ids: string[]) =>
    broker.state<{ lease_id: string; at: Date }>(`SELECT lease_id, at FROM audit_events WHERE type = 'lease.issued' AND lease_id = ANY($1::text[])`, [ids]);

  /** Runs `fn` while another session holds every audit head, released after `holdMs`. */
  const withHeadsHeld = async <T>(holdMs: number, fn: () => Promise<T>): Promise<T> => {
    const holder = new Client({ connectionString: broker.config.storage.postgres_url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM audit_head FOR UPDATE');
      const release = sleep(holdMs).then(() => holder.query('COMMIT'));
      const result = await fn();
      await release;
      return result;
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  };

  it('a burst: every lease active with one event, those that queued written by one statement, and the chain verifies', async () => {
    // The first activation waits for a head while the others queue behind it: they go in one batch.
    const answers = await withHeadsHeld(500, () => Promise.all(Array.from({ length: 24 }, issue)));
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
    const ids = answers.map((a) => a.body.lease_id as string);
    const states = await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = ANY($1::text[])', [ids]);
    expect(states.map((s) => s.state)).toEqual(ids.map(() => 'active'));
    const events = await issuedEvents(ids);
    expect(events.map((e) => e.lease_id).sort()).toEqual([...ids].sort());
    // One statement's events share their timestamp.
    expect(new Set(events.map((e) => e.at.getTime())).size).toBeLessThan(events.length);
    expect((await broker.api('GET', '/v1/audit/verify', { token: operator })).body.ok).toBe(true);
  });

  it('every audit head held elsewhere: the issue waits for one, then completes with its event', async () => {
    const holder = new Client({ connectionString: broker.config.storage.postgres_url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT id FROM audit_head FOR UPDATE');
      let answered = false;
      const pending = issue().then((a) => ((answered = true), a));
      await sleep(700);
      expect(answered).toBe(false);
      // Until a head is free, the lease is written but not yet active.
      expect(await broker.state(`SELECT id FROM leases WHERE state = 'pending'`)).toHaveLength(1);
      await holder.query('COMMIT');
      const answer = await pending;
      expect(answer.status).toBe(201);
      expect(await issuedEvents([answer.body.lease_id])).toHaveLength(1);
      expect((await broker.state<{ state: string }>('SELECT state FROM leases WHERE id = $1', [answer.body.lease_id]))[0].state).toBe('active');
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    expect((await broker.api('GET', '/v1/audit/verify', { token: operator })).body.ok).toBe(true);
  });
});
