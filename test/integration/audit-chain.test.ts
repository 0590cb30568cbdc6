import { createHash } from 'node:crypto';
import { AuditRow } from '../../src/audit/audit-chain';
import { sealLegacyAudit } from '../../src/audit/seal-legacy';
import { ConfigDoc, TestBroker, eventually, sleep, startBroker } from '../support/broker';

type Row = AuditRow;

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
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(saved.rows[0].id), reason: expect.stringMatching(/rewritten/) });
    // The chain's own events (audit.keyed, heartbeats) are never unkeyed: not even an operator can accept that.
    await expect(sealLegacyAudit(broker.config)).rejects.toThrow(/does not verify/);
    expect((await verify()).ok).toBe(false);
    // And so is an emptied trail.
    await broker.state('DELETE FROM audit_events');
    await broker.state(`UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = 1`, [ZERO]);
    expect((await verify()).ok).toBe(false);
  });

  it('a keyed tail cut off with the seal removed is not sealed again by the next event', async () => {
    const keep = saved.rows[saved.rows.length - 3];
    await broker.state('DELETE FROM audit_events WHERE id > $1', [keep.id]);
    await broker.state('UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = 1', [keep.hash]);
    // Any append: here a refused request.
    expect((await broker.api('GET', '/v1/audit', { token: await broker.token('ns/app/api') })).status).toBe(403);
    const [broken] = await broker.state<{ id: string; detail: any }>(`SELECT id, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.head_broken'`);
    expect(broken.detail).toMatchObject({ problem: 'seal_missing' });
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(broken.id), reason: expect.stringMatching(/seal did not verify/) });
  });
});

/** A second start of a test broker on the same state database and master key. */
const restart = async (broker: TestBroker, name: string, customise: (doc: ConfigDoc) => void = () => undefined): Promise<TestBroker> => {
  const key = broker.doc.encryption.key;
  await broker.close();
  return startBroker(name, (doc) => {
    customise(doc);
    doc.encryption.key = key;
  }, { reset: false });
};

describe('events from before the chain was keyed are accepted only by an operator', () => {
  let broker: TestBroker;
  afterAll(() => broker.close());
  const verify = async () => (await broker.api('GET', '/v1/audit/verify', { token: await broker.token('ops/auditor') })).body;

  it('a trail rewritten as unkeyed, with the seal removed, does not verify after a restart until seal-legacy accepts it', async () => {
    broker = await startBroker('auditlg');
    const workload = await broker.token('ns/app/api');
    for (let i = 0; i < 2; i++) {
      const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m' } });
      await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
    }
    expect((await verify()).ok).toBe(true);

    // The attacker drops the chain's own events and rewrites the rest the old, unkeyed way.
    await broker.state(`DELETE FROM audit_events WHERE type LIKE 'audit.%'`);
    let prev: Buffer = ZERO;
    for (const row of await broker.state<Row>('SELECT id, body FROM audit_events ORDER BY id')) {
      const hash = sha256(prev, row.body);
      await broker.state('UPDATE audit_events SET prev_hash = $2, hash = $3, key_id = NULL WHERE id = $1', [row.id, prev, hash]);
      prev = hash;
    }
    await broker.state('UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = 1', [prev]);
    const [first] = await broker.state<{ id: string; n: number }>('SELECT min(id) AS id, count(*)::int AS n FROM audit_events');
    expect(first.n).toBeGreaterThanOrEqual(4);

    broker = await restart(broker, 'auditlg');
    const refused = await verify();
    expect(refused).toMatchObject({ ok: false, first_bad_id: String(first.id), reason: expect.stringMatching(/not been accepted by an operator.*seal-legacy/) });
    // Start-up did not key (seal) the rewritten events.
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE type = 'audit.keyed'`)).toHaveLength(0);
    // Events written since (this start's heartbeat) are keyed on top of them: still not ok.
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE key_id IS NOT NULL AND type = 'audit.heartbeat'`)).toHaveLength(1);

    const accepted = await sealLegacyAudit(broker.config);
    expect(accepted).toMatchObject({ status: 'accepted', first_id: String(first.id), events: first.n });
    const [keyed] = await broker.state<{ key_id: string; detail: any }>(`SELECT key_id, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.keyed'`);
    expect(keyed.key_id).toMatch(/^audit-/);
    expect(keyed.detail.legacy_boundary).toMatchObject({ id: accepted.status === 'accepted' ? accepted.boundary_id : '', events: first.n });
    expect(await verify()).toMatchObject({ ok: true });
    expect(await sealLegacyAudit(broker.config)).toMatchObject({ status: 'already_accepted' });

    broker = await restart(broker, 'auditlg');
    expect(await verify()).toMatchObject({ ok: true });
  });
});

describe('keyed heartbeats find events cut off the end by restoring an old head', () => {
  let broker: TestBroker;
  const fast = (doc: ConfigDoc) => {
    doc.audit = { heartbeat_every: '1s' };
  };
  const verify = async () => (await broker.api('GET', '/v1/audit/verify', { token: await broker.token('ops/auditor') })).body;
  const heartbeats = () =>
    broker.state<{ id: string; at: string; detail: any }>(`SELECT id, body::jsonb->>'at' AS at, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.heartbeat' ORDER BY id`);

  beforeAll(async () => {
    broker = await startBroker('audithb', fast);
  });
  afterAll(() => broker.close());

  it('an idle broker, and one restarted after a pause, still verify', async () => {
    await sleep(3000); // more than twice heartbeat_every without a request
    expect(await verify()).toMatchObject({ ok: true });
    const beats = await heartbeats();
    expect(beats.length).toBeGreaterThanOrEqual(3);
    expect(beats[0].detail).toEqual({ previous_at: null, started: true, every_seconds: 1 });
    expect(beats[1].detail).toEqual({ previous_at: beats[0].at, started: false, every_seconds: 1 });

    broker = await restart(broker, 'audithb', fast);
    await sleep(2500);
    expect(await verify()).toMatchObject({ ok: true });
  });

  it('a tail cut off by restoring a saved head row is found, and stays found after a restart', async () => {
    // What the attacker saved earlier: the head row, consistent with every event up to it.
    await broker.state('BEGIN');
    const [head] = await broker.state('SELECT hash, key_id, seal FROM audit_head WHERE id = 1 FOR UPDATE');
    const [{ id: savedMax }] = await broker.state<{ id: string }>('SELECT max(id) AS id FROM audit_events');
    await broker.state('COMMIT');
    const lastKept = (await heartbeats()).filter((h) => Number(h.id) <= Number(savedMax)).pop()!;

    const workload = await broker.token('ns/app/api');
    expect((await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m' } })).status).toBe(201);
    await eventually(async () => (await heartbeats()).some((h) => Number(h.id) > Number(savedMax)), 5000, 50);
    expect(await verify()).toMatchObject({ ok: true });

    // Cut everything after the saved point and put the saved head back: links and seal are genuine.
    await broker.state('BEGIN');
    await broker.state('SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE');
    await broker.state('DELETE FROM audit_events WHERE id > $1', [savedMax]);
    await broker.state('UPDATE audit_head SET hash = $1, key_id = $2, seal = $3 WHERE id = 1', [head.hash, head.key_id, head.seal]);
    await broker.state('COMMIT');
    // The broker saw a heartbeat that is gone.
    expect((await verify()).ok).toBe(false);

    // The next heartbeat records the one its writer saw last, which the chain no longer has.
    const next = (await eventually(async () => (await heartbeats()).find((h) => Number(h.id) > Number(savedMax)), 5000, 50))!;
    expect(next.detail.started).toBe(false);
    expect(next.detail.previous_at).not.toBe(lastKept.at);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id), reason: expect.stringMatching(/cut off/) });

    // Durable: a restarted broker (which remembers nothing) still finds it.
    broker = await restart(broker, 'audithb', fast);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id) });
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

  it('refusals carry the issuer of their identity, or the client address when there is none', async () => {
    const curious = await broker.token('ns/app/curious');
    const subject = 'spiffe://test.example/ns/app/curious';
    expect((await broker.api('GET', '/v1/audit', { token: curious })).status).toBe(403);
    expect((await broker.api('GET', '/v1/static/billing/creds', { token: curious })).status).toBe(403);
    const byIdentity = await deniedRows(subject);
    expect(byIdentity.map((r) => r.detail)).toEqual([
      expect.objectContaining({ status: 403, reason: 'operator only', issuer: 'test' }),
      expect.objectContaining({ status: 403, action: 'static.creds', issuer: 'test' }),
    ]);

    const anonymous = () =>
      broker.state<{ detail: any }>(`SELECT body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'request.denied' AND actor IS NULL ORDER BY id`);
    const before = (await anonymous()).length;
    expect((await broker.api('POST', '/v1/auth/bootstrap', { body: { secret_id: `tsb_${'x'.repeat(16)}.${'A'.repeat(43)}` } })).status).toBe(401);
    expect((await broker.api('POST', '/v1/events', { raw: '{"type":"secret.exposed","static":"billing"}', headers: { 'x-tessera-signature': `t=1,v1=${'0'.repeat(64)}` } })).status).toBe(401);
    const refusals = (await anonymous()).slice(before).map((r) => r.detail);
    expect(refusals).toEqual([
      expect.objectContaining({ action: 'bootstrap', client: expect.stringMatching(/127\.0\.0\.1/) }),
      expect.objectContaining({ action: 'events', client: expect.stringMatching(/127\.0\.0\.1/) }),
    ]);
  });
});
