import { createHash } from 'node:crypto';
import { TestBroker, eventually, sleep, startBroker } from '../support/broker';

interface Row {
  id: string;
  at: Date;
  type: string;
  actor: string | null;
  lease_id: string | null;
  body: string;
  prev_hash: Buffer;
  hash: Buffer;
  key_id: string | null;
}

const ZERO: Buffer = Buffer.alloc(32);
const sha256 = (prev: Buffer, body: string) => createHash('sha256').update(prev).update(body, 'utf8').digest();

/**
 * The attacks of someone who can write the state database but does not hold the master key: change the
 * events, then recompute the chain the way the old, unkeyed scheme did (SHA-256 of the previous hash and
 * the event's text) and move the head, so that every link and the head are consistent again.
 */
describe('the audit chain is keyed from the master key', () => {
  let broker: TestBroker;
  let operator: string;
  let saved: { rows: Row[]; head: Record<string, unknown> };

  const rows = () => broker.state<Row>('SELECT id, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events ORDER BY id');
  const verify = async () => (await broker.api('GET', '/v1/audit/verify', { token: operator })).body;

  /** Recomputes every link as plain SHA-256 from the start, and points the head at the new last hash. */
  const recomputePlainChain = async (opts: { dropKeyIds?: boolean } = {}) => {
    let prev: Buffer = ZERO;
    for (const row of await rows()) {
      const hash = sha256(prev, row.body);
      await broker.state(`UPDATE audit_events SET prev_hash = $2, hash = $3${opts.dropKeyIds ? ', key_id = NULL' : ''} WHERE id = $1`, [row.id, prev, hash]);
      prev = hash;
    }
    await broker.state(`UPDATE audit_head SET hash = $1${opts.dropKeyIds ? ', key_id = NULL, seal = NULL' : ''} WHERE id = 1`, [prev]);
  };

  const restore = async () => {
    await broker.state('DELETE FROM audit_events');
    for (const r of saved.rows) {
      await broker.state('INSERT INTO audit_events (id, at, type, actor, lease_id, body, prev_hash, hash, key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)', [
        r.id, r.at, r.type, r.actor, r.lease_id, r.body, r.prev_hash, r.hash, r.key_id,
      ]);
    }
    await broker.state('UPDATE audit_head SET hash = $1, key_id = $2, seal = $3 WHERE id = 1', [saved.head.hash, saved.head.key_id, saved.head.seal]);
    expect((await verify()).ok).toBe(true);
  };

  beforeAll(async () => {
    broker = await startBroker('auditk');
    operator = await broker.token('ops/auditor');
    const workload = await broker.token('ns/app/api');
    for (let i = 0; i < 3; i++) {
      const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m' } });
      await broker.api('POST', `/v1/leases/${issued.body.lease_id}/renew`, { token: workload, body: { increment: '2m' } });
      await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
    }
    saved = { rows: await rows(), head: (await broker.state('SELECT hash, key_id, seal FROM audit_head'))[0] };
    expect(saved.rows.length).toBeGreaterThanOrEqual(10);
    expect(await verify()).toEqual({ ok: true, events_checked: saved.rows.length });
  });
  afterAll(() => broker.close());
  afterEach(restore);

  it('records the key id on every event; the stored links are not plain SHA-256 and hold no key', async () => {
    const all = await rows();
    const keyIds = new Set(all.map((r) => r.key_id));
    expect(keyIds.size).toBe(1);
    expect([...keyIds][0]).toMatch(/^audit-[0-9a-f]{16}$/);
    let prev: Buffer = ZERO;
    for (const row of all) {
      expect(row.hash.equals(sha256(prev, row.body))).toBe(false);
      prev = row.hash;
    }
    const masterKey = broker.doc.encryption.key as string;
    const dump = JSON.stringify([all, await broker.state('SELECT * FROM audit_head')]);
    expect(dump).not.toContain(masterKey);
    expect(dump).not.toContain(Buffer.from(masterKey, 'base64').toString('hex'));
  });

  it('an edited event is found although the chain was recomputed after it', async () => {
    const [renewed] = await broker.state<{ id: string }>(`SELECT id FROM audit_events WHERE type = 'lease.renewed' ORDER BY id LIMIT 1`);
    await broker.state(`UPDATE audit_events SET body = replace(body, '"increment_seconds":120', '"increment_seconds":1') WHERE id = $1`, [renewed.id]);
    await recomputePlainChain();
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(saved.rows[0].id) });
    // Recomputing only from the edited event on leaves the keyed links before it intact: found there.
    await restore();
    await broker.state(`UPDATE audit_events SET body = replace(body, '"increment_seconds":120', '"increment_seconds":1') WHERE id = $1`, [renewed.id]);
    let prev = (await broker.state<{ hash: Buffer }>('SELECT hash FROM audit_events WHERE id < $1 ORDER BY id DESC LIMIT 1', [renewed.id]))[0].hash;
    for (const row of await broker.state<Row>('SELECT id, body FROM audit_events WHERE id >= $1 ORDER BY id', [renewed.id])) {
      const hash = sha256(prev, row.body);
      await broker.state('UPDATE audit_events SET prev_hash = $2, hash = $3 WHERE id = $1', [row.id, prev, hash]);
      prev = hash;
    }
    await broker.state('UPDATE audit_head SET hash = $1 WHERE id = 1', [prev]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(renewed.id) });
  });

  it('a deleted event is found although the chain was recomputed', async () => {
    const [revoked] = await broker.state<{ id: string }>(`SELECT id FROM audit_events WHERE type = 'lease.revoked' ORDER BY id LIMIT 1`);
    await broker.state('DELETE FROM audit_events WHERE id = $1', [revoked.id]);
    await recomputePlainChain();
    expect((await verify()).ok).toBe(false);
    // Even with the links left alone: the event after the gap no longer chains.
    await restore();
    await broker.state('DELETE FROM audit_events WHERE id = $1', [revoked.id]);
    const [next] = await broker.state<{ id: string }>('SELECT id FROM audit_events WHERE id > $1 ORDER BY id LIMIT 1', [revoked.id]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id) });
  });

  it('an inserted event is found although the chain was recomputed', async () => {
    const last = saved.rows[saved.rows.length - 1];
    const body = JSON.stringify({ at: new Date().toISOString(), type: 'lease.revoked', actor: 'spiffe://test.example/ops/auditor', lease_id: null, detail: {} });
    await broker.state(
      'INSERT INTO audit_events (at, type, actor, lease_id, body, prev_hash, hash, key_id) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7)',
      [JSON.parse(body).at, 'lease.revoked', 'spiffe://test.example/ops/auditor', body, last.hash, sha256(last.hash, body), last.key_id],
    );
    await recomputePlainChain();
    expect((await verify()).ok).toBe(false);
  });

  it('events cut off the end, with the head moved back to the new last event, are found', async () => {
    const keep = saved.rows[saved.rows.length - 3];
    await broker.state('DELETE FROM audit_events WHERE id > $1', [keep.id]);
    await broker.state('UPDATE audit_head SET hash = $1 WHERE id = 1', [keep.hash]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(Number(keep.id) + 1) });
  });

  it('the whole chain rewritten as unkeyed (key ids dropped, plain SHA-256 throughout) is found', async () => {
    await recomputePlainChain({ dropKeyIds: true });
    expect((await verify()).ok).toBe(false);
    // And so is an emptied trail.
    await broker.state('DELETE FROM audit_events');
    await broker.state(`UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = 1`, [ZERO]);
    expect((await verify()).ok).toBe(false);
  });
});

describe('refused requests are audited per identity without writing a row each', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker('auditd', (doc) => {
      doc.limits = { audited_denials_per_identity: 5, audited_denials_window: '2s' };
    });
  });
  afterAll(() => broker.close());

  const deniedRows = (actor: string) =>
    broker.state<{ type: string; detail: any }>(
      `SELECT type, body::jsonb->'detail' AS detail FROM audit_events WHERE type IN ('request.denied', 'request.denied_summary') AND actor = $1 ORDER BY id`,
      [actor],
    );

  it('100 probes of other workloads\' leases write the first few refusals, then one summary with the count', async () => {
    const owner = await broker.token('ns/app/owner');
    const probes: string[] = [];
    for (let i = 0; i < 4; i++) probes.push((await broker.api('POST', `/v1/creds/${broker.role}`, { token: owner, body: { ttl: '1m' } })).body.lease_id);
    const prober = await broker.token('ns/app/prober');
    const subject = 'spiffe://test.example/ns/app/prober';
    const statuses: number[] = [];
    for (let i = 0; i < 100; i++) statuses.push((await broker.api('GET', `/v1/leases/${probes[i % probes.length]}`, { token: prober })).status);
    // Policy refusals (403) of the same identity count in the same window.
    for (let i = 0; i < 10; i++) statuses.push((await broker.api('POST', '/v1/creds/auditd-locked', { token: prober })).status);
    expect(statuses.slice(0, 100)).toEqual(Array(100).fill(404));
    expect(statuses.slice(100)).toEqual(Array(10).fill(403));

    // Another identity's refusals are written on their own.
    await broker.api('GET', `/v1/leases/${probes[0]}`, { token: await broker.token('ns/app/bystander') });
    expect(await deniedRows('spiffe://test.example/ns/app/bystander')).toHaveLength(1);

    const written = await deniedRows(subject);
    expect(written.map((r) => r.type)).toEqual(Array(5).fill('request.denied'));
    expect(written[0].detail).toMatchObject({ status: 404, issuer: 'test' });

    const all = await eventually(async () => {
      const rows = await deniedRows(subject);
      return rows.some((r) => r.type === 'request.denied_summary') ? rows : undefined;
    }, 10_000, 200);
    const summary = all!.find((r) => r.type === 'request.denied_summary')!;
    expect(summary.detail).toMatchObject({ issuer: 'test', suppressed: 105, statuses: { '404': 95, '403': 10 } });
    expect(Date.parse(summary.detail.window_end)).toBeGreaterThan(Date.parse(summary.detail.window_start));

    // A new window: the next refusal is written again.
    await sleep(100);
    await broker.api('GET', `/v1/leases/${probes[1]}`, { token: prober });
    expect((await deniedRows(subject)).filter((r) => r.type === 'request.denied')).toHaveLength(6);
    const operator = await broker.token('ops/auditor');
    expect((await broker.api('GET', '/v1/audit/verify', { token: operator })).body.ok).toBe(true);
  });
});
