import { createHash } from 'node:crypto';
import { AuditRow } from '../../src/audit/audit-chain';
import { AuditLog } from '../../src/audit/audit.log';
import { sealLegacyAudit } from '../../src/audit/seal-legacy';
import { Database } from '../../src/storage/database';
import { ConfigDoc, TestBroker, eventually, sleep, startBroker } from '../support/broker';

type Row = AuditRow & { shard: number };
type Head = { shard: number; hash: Buffer; key_id: string | null; seal: Buffer | null };

const ZERO: Buffer = Buffer.alloc(32);
const sha256 = (prev: Buffer, body: string) => createHash('sha256').update(prev).update(body, 'utf8').digest();
const SELECT_ROWS = 'SELECT id, shard, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events';
const byShard = (rows: Row[]): Map<number, Row[]> => {
  const shards = new Map<number, Row[]>();
  for (const row of rows) shards.set(row.shard, [...(shards.get(row.shard) ?? []), row]);
  return shards;
};

/**
 * The attacks of someone who can write the state database but does not hold the master key: change the
 * events, then recompute the chain the way the old, unkeyed scheme did (SHA-256 of the previous hash and
 * the event's text) and move the head, so that every link and the head are consistent again. The trail
 * is sharded (audit.shards, 16 by default): each shard is a chain of its own with its own head.
 */
describe('the audit chain is keyed from the master key', () => {
  let broker: TestBroker;
  let operator: string;
  let saved: { rows: Row[]; heads: Head[] };

  const rows = () => broker.state<Row>(`${SELECT_ROWS} ORDER BY id`);
  const verify = async () => (await broker.api('GET', '/v1/audit/verify', { token: operator })).body;

  /** Recomputes every shard's links as plain SHA-256 from the start, and points each head at its new last hash. */
  const recomputePlainChain = async (opts: { dropKeyIds?: boolean } = {}) => {
    for (const [shard, shardRows] of byShard(await rows())) {
      let prev: Buffer = ZERO;
      for (const row of shardRows) {
        const hash = sha256(prev, row.body);
        await broker.state(`UPDATE audit_events SET prev_hash = $2, hash = $3${opts.dropKeyIds ? ', key_id = NULL' : ''} WHERE id = $1`, [row.id, prev, hash]);
        prev = hash;
      }
      await broker.state(`UPDATE audit_head SET hash = $1${opts.dropKeyIds ? ', key_id = NULL, seal = NULL' : ''} WHERE id = $2`, [prev, shard]);
    }
  };

  const restore = async () => {
    await broker.state('DELETE FROM audit_events');
    for (const r of saved.rows) {
      await broker.state('INSERT INTO audit_events (id, shard, at, type, actor, lease_id, body, prev_hash, hash, key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)', [
        r.id, r.shard, r.at, r.type, r.actor, r.lease_id, r.body, r.prev_hash, r.hash, r.key_id,
      ]);
    }
    for (const h of saved.heads) await broker.state('UPDATE audit_head SET hash = $1, key_id = $2, seal = $3 WHERE id = $4', [h.hash, h.key_id, h.seal, h.shard]);
    expect((await verify()).ok).toBe(true);
  };

  beforeAll(async () => {
    broker = await startBroker('auditk');
    operator = await broker.token('ops/auditor');
    const workload = await broker.token('ns/app/api');
    // Events appended one after another go round-robin over the shards; the shard tests below need every
    // one of the 16 to hold at least three besides its audit.keyed. Appends from background work (and
    // batches) can shift the turn, so keep going until each has them, and until nothing is in flight.
    const settled = async () => (await broker.state<{ n: number }>(`SELECT count(*)::int AS n FROM leases WHERE state NOT IN ('revoked', 'failed')`))[0].n === 0;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 16; i++) {
        const issued = await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m' } });
        await broker.api('POST', `/v1/leases/${issued.body.lease_id}/renew`, { token: workload, body: { increment: '2m' } });
        await broker.api('POST', `/v1/leases/${issued.body.lease_id}/revoke`, { token: workload });
      }
      for (let wait = 0; wait < 50 && !(await settled()); wait++) await new Promise((r) => setTimeout(r, 100));
      const shards = byShard(await rows());
      if (shards.size === 16 && [...shards.values()].every((r) => r.length >= 4)) break;
    }
    saved = { rows: await rows(), heads: await broker.state<Head>('SELECT id AS shard, hash, key_id, seal FROM audit_head ORDER BY id') };
    expect(saved.heads).toHaveLength(16);
    expect(byShard(saved.rows).size).toBe(16);
    expect(await verify()).toEqual({ ok: true, events_checked: saved.rows.length });
  });
  afterAll(() => broker.close());
  afterEach(restore);

  it('records the key id on every event; the stored links are not plain SHA-256 and hold no key', async () => {
    const all = await rows();
    const keyIds = new Set(all.map((r) => r.key_id));
    expect(keyIds.size).toBe(1);
    expect([...keyIds][0]).toMatch(/^audit-[0-9a-f]{16}$/);
    for (const shardRows of byShard(all).values()) {
      let prev: Buffer = ZERO;
      for (const row of shardRows) {
        expect(row.prev_hash.equals(prev)).toBe(true);
        expect(row.hash.equals(sha256(prev, row.body))).toBe(false);
        prev = row.hash;
      }
    }
    const masterKey = broker.doc.encryption.key as string;
    const dump = JSON.stringify([all, await broker.state('SELECT * FROM audit_head')]);
    expect(dump).not.toContain(masterKey);
    expect(dump).not.toContain(Buffer.from(masterKey, 'base64').toString('hex'));
  });

  it('an edited event is found although the chain was recomputed after it', async () => {
    const [renewed] = await broker.state<Row>(`${SELECT_ROWS} WHERE type = 'lease.renewed' ORDER BY id LIMIT 1`);
    const edit = () => broker.state(`UPDATE audit_events SET body = replace(body, '"increment_seconds":120', '"increment_seconds":1') WHERE id = $1`, [renewed.id]);
    await edit();
    await recomputePlainChain();
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(saved.rows[0].id) });
    // Recomputing only from the edited event on leaves the keyed links before it intact: found there.
    await restore();
    await edit();
    const [before] = await broker.state<{ hash: Buffer }>('SELECT hash FROM audit_events WHERE shard = $1 AND id < $2 ORDER BY id DESC LIMIT 1', [renewed.shard, renewed.id]);
    let prev = before.hash;
    for (const row of await broker.state<Row>('SELECT id, body FROM audit_events WHERE shard = $1 AND id >= $2 ORDER BY id', [renewed.shard, renewed.id])) {
      const hash = sha256(prev, row.body);
      await broker.state('UPDATE audit_events SET prev_hash = $2, hash = $3 WHERE id = $1', [row.id, prev, hash]);
      prev = hash;
    }
    await broker.state('UPDATE audit_head SET hash = $1 WHERE id = $2', [prev, renewed.shard]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(renewed.id), reason: expect.stringContaining(`shard ${renewed.shard}:`) });
  });

  it('a deleted event is found although the chain was recomputed, in any shard', async () => {
    const [revoked] = await broker.state<Row>(`${SELECT_ROWS} WHERE type = 'lease.revoked' ORDER BY id LIMIT 1`);
    await broker.state('DELETE FROM audit_events WHERE id = $1', [revoked.id]);
    await recomputePlainChain();
    expect((await verify()).ok).toBe(false);
    // Even with the links left alone: the event after the gap no longer chains. Here in a shard other than the first.
    await restore();
    const later = [...byShard(saved.rows).entries()].find(([shard, r]) => shard > 1 && r.length >= 3)!;
    const [shard, [, gone, next]] = later;
    await broker.state('DELETE FROM audit_events WHERE id = $1', [gone.id]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id), reason: expect.stringMatching(new RegExp(`^shard ${shard}: .*one before it deleted`)) });
    // Or the shard's first event (its audit.keyed, recorded in shard 1), with the rest relinked from the start without the key.
    await restore();
    const [first, ...rest] = byShard(saved.rows).get(shard)!;
    await broker.state('DELETE FROM audit_events WHERE id = $1', [first.id]);
    let prev: Buffer = ZERO;
    for (const row of rest) {
      const hash = sha256(prev, row.body);
      await broker.state('UPDATE audit_events SET prev_hash = $2, hash = $3 WHERE id = $1', [row.id, prev, hash]);
      prev = hash;
    }
    await broker.state('UPDATE audit_head SET hash = $1 WHERE id = $2', [prev, shard]);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(rest[0].id) });
  });

  it('an inserted event is found although the chain was recomputed', async () => {
    const last = saved.rows[saved.rows.length - 1];
    const body = JSON.stringify({ at: new Date().toISOString(), type: 'lease.revoked', actor: 'spiffe://test.example/ops/auditor', lease_id: null, detail: {} });
    await broker.state(
      'INSERT INTO audit_events (shard, at, type, actor, lease_id, body, prev_hash, hash, key_id) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8)',
      [last.shard, JSON.parse(body).at, 'lease.revoked', 'spiffe://test.example/ops/auditor', body, last.hash, sha256(last.hash, body), last.key_id],
    );
    await recomputePlainChain();
    expect((await verify()).ok).toBe(false);
  });

  it('events cut off the end of any shard, with its head moved back to the new last event, are found', async () => {
    const later = [...byShard(saved.rows).entries()].find(([shard, r]) => shard > 1 && r.length >= 3)![0];
    for (const shard of [1, later]) {
      const shardRows = byShard(saved.rows).get(shard)!;
      expect(shardRows.length).toBeGreaterThanOrEqual(3);
      const keep = shardRows[shardRows.length - 3];
      await broker.state('DELETE FROM audit_events WHERE shard = $1 AND id > $2', [shard, keep.id]);
      await broker.state('UPDATE audit_head SET hash = $1 WHERE id = $2', [keep.hash, shard]);
      expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(Number(keep.id) + 1), reason: expect.stringMatching(new RegExp(`^shard ${shard}: .*cut off the end`)) });
      await restore();
    }
  });

  it('the whole chain rewritten as unkeyed (key ids dropped, plain SHA-256 throughout) is found', async () => {
    await recomputePlainChain({ dropKeyIds: true });
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(saved.rows[0].id), reason: expect.stringMatching(/rewritten/) });
    // The chain's own events (audit.keyed, heartbeats) are never unkeyed: not even an operator can accept that.
    await expect(sealLegacyAudit(broker.config)).rejects.toThrow(/does not verify/);
    expect((await verify()).ok).toBe(false);
    // And so is an emptied trail.
    await broker.state('DELETE FROM audit_events');
    await broker.state(`UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL`, [ZERO]);
    expect((await verify()).ok).toBe(false);
  });

  it('a keyed tail cut off with the seal removed is not sealed again by the next event', async () => {
    const shard = 5;
    const shardRows = byShard(saved.rows).get(shard)!;
    const keep = shardRows[shardRows.length - 2];
    await broker.state('DELETE FROM audit_events WHERE shard = $1 AND id > $2', [shard, keep.id]);
    await broker.state('UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = $2', [keep.hash, shard]);
    // Any appends (here refused requests) until one lands in that shard.
    const broken = await eventually(async () => {
      expect((await broker.api('GET', '/v1/audit', { token: await broker.token(`ns/app/nosy-${Math.random()}`) })).status).toBe(403);
      return (await broker.state<{ id: string; detail: any }>(`SELECT id, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.head_broken'`))[0];
    }, 10_000, 0);
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

    // The attacker drops the chain's own events and rewrites the rest the old, unkeyed way, as one
    // chain: what a trail from before keying (and before sharding) looks like.
    await broker.state(`DELETE FROM audit_events WHERE type LIKE 'audit.%'`);
    await broker.state('UPDATE audit_events SET shard = 1');
    await broker.state('DELETE FROM audit_head WHERE id > 1');
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
    // Start-up did not key (seal) the rewritten events; it created the other shards, each keyed on its own.
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE type = 'audit.keyed' AND shard = 1`)).toHaveLength(0);
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE type = 'audit.keyed' AND shard > 1`)).toHaveLength(15);
    // Events written since (this start's heartbeat, the record of the new shards) are keyed on top of them: still not ok.
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE key_id IS NOT NULL AND type = 'audit.heartbeat' AND shard = 1`)).toHaveLength(1);
    expect(await broker.state(`SELECT 1 FROM audit_events WHERE key_id IS NULL AND shard > 1`)).toHaveLength(0);

    const accepted = await sealLegacyAudit(broker.config);
    expect(accepted).toMatchObject({ status: 'accepted', first_id: String(first.id), events: first.n });
    const [keyed] = await broker.state<{ key_id: string; detail: any }>(`SELECT key_id, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.keyed' AND shard = 1`);
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
  const heartbeats = (shard: number) =>
    broker.state<{ id: string; at: string; detail: any }>(
      `SELECT id, body::jsonb->>'at' AS at, body::jsonb->'detail' AS detail FROM audit_events WHERE type = 'audit.heartbeat' AND shard = $1 ORDER BY id`,
      [shard],
    );

  beforeAll(async () => {
    broker = await startBroker('audithb', fast);
  });
  afterAll(() => broker.close());

  it('an idle broker, and one restarted after a pause, still verify', async () => {
    await sleep(3000); // more than twice heartbeat_every without a request
    expect(await verify()).toMatchObject({ ok: true });
    // Every shard has its own heartbeats.
    for (const shard of [1, 16]) {
      const beats = await heartbeats(shard);
      expect(beats.length).toBeGreaterThanOrEqual(3);
      expect(beats[0].detail).toEqual({ previous_at: null, started: true, every_seconds: 1 });
      expect(beats[1].detail).toEqual({ previous_at: beats[0].at, started: false, every_seconds: 1 });
    }

    broker = await restart(broker, 'audithb', fast);
    await sleep(2500);
    expect(await verify()).toMatchObject({ ok: true });
  });

  it('a tail cut off a shard other than the first by restoring its saved head row is found, and stays found after a restart', async () => {
    const shard = 2;
    // What the attacker saved earlier: the shard's head row, consistent with every event of the shard up to it.
    await broker.state('BEGIN');
    const [head] = await broker.state('SELECT hash, key_id, seal FROM audit_head WHERE id = $1 FOR UPDATE', [shard]);
    const [{ id: savedMax }] = await broker.state<{ id: string }>('SELECT max(id) AS id FROM audit_events WHERE shard = $1', [shard]);
    await broker.state('COMMIT');
    const lastKept = (await heartbeats(shard)).filter((h) => Number(h.id) <= Number(savedMax)).pop()!;

    const workload = await broker.token('ns/app/api');
    expect((await broker.api('POST', `/v1/creds/${broker.role}`, { token: workload, body: { ttl: '1m' } })).status).toBe(201);
    await eventually(async () => (await heartbeats(shard)).some((h) => Number(h.id) > Number(savedMax)), 5000, 50);
    expect(await verify()).toMatchObject({ ok: true });

    // Cut everything of the shard after the saved point and put the saved head back: links and seal are genuine.
    await broker.state('BEGIN');
    await broker.state('SELECT 1 FROM audit_head WHERE id = $1 FOR UPDATE', [shard]);
    await broker.state('DELETE FROM audit_events WHERE shard = $1 AND id > $2', [shard, savedMax]);
    await broker.state('UPDATE audit_head SET hash = $1, key_id = $2, seal = $3 WHERE id = $4', [head.hash, head.key_id, head.seal, shard]);
    await broker.state('COMMIT');
    // The broker saw a heartbeat in that shard that is gone.
    expect(await verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/^shard 2: .*this broker saw is gone/) });

    // The shard's next heartbeat records the one its writer saw last, which the shard no longer has.
    const next = (await eventually(async () => (await heartbeats(shard)).find((h) => Number(h.id) > Number(savedMax)), 5000, 50))!;
    expect(next.detail.started).toBe(false);
    expect(next.detail.previous_at).not.toBe(lastKept.at);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id), reason: expect.stringMatching(/^shard 2: .*cut off/) });

    // Durable: a restarted broker (which remembers nothing) still finds it.
    broker = await restart(broker, 'audithb', fast);
    expect(await verify()).toMatchObject({ ok: false, first_bad_id: String(next.id) });
  });
});

describe('the trail is sharded: concurrent appends lock different heads, and every shard is verified', () => {
  let broker: TestBroker;
  afterAll(() => broker.close());
  const verify = async () => (await broker.api('GET', '/v1/audit/verify', { token: await broker.token('ops/auditor') })).body;

  it('32 parallel transactions, each appending twice while holding its head, leave a trail that verifies', async () => {
    broker = await startBroker('auditsh');
    const db = new Database(broker.config.storage.postgres_url, 40);
    const audit = new AuditLog(db, broker.config);
    try {
      const before = (await verify()).events_checked as number;
      await Promise.all(
        Array.from({ length: 32 }, (_, i) =>
          db.tx(async (tx) => {
            await audit.append({ type: 'lease.issued', actor: `spiffe://test.example/ns/app/p${i}`, leaseId: `p-${i}` }, tx);
            await tx.query('SELECT pg_sleep(0.05)');
            await audit.append({ type: 'lease.revoked', actor: `spiffe://test.example/ns/app/p${i}`, leaseId: `p-${i}` }, tx);
          }),
        ),
      );
      expect(await verify()).toEqual({ ok: true, events_checked: before + 64 });
      const placed = await broker.state<{ lease_id: string; shards: number[] }>(`SELECT lease_id, array_agg(DISTINCT shard) AS shards FROM audit_events WHERE lease_id LIKE 'p-%' GROUP BY lease_id`);
      expect(placed).toHaveLength(32);
      // A transaction's events share its shard (one transaction holds one head); the transactions spread over the shards.
      expect(placed.every((p) => p.shards.length === 1)).toBe(true);
      expect(new Set(placed.map((p) => p.shards[0])).size).toBeGreaterThanOrEqual(8);
    } finally {
      await db.close();
    }
  });

  it('a shard other than the first, emptied with its head reset, or removed with its head row, is found, also after restarts', async () => {
    const shard = 7;
    await broker.state('DELETE FROM audit_events WHERE shard = $1', [shard]);
    await broker.state('UPDATE audit_head SET hash = $1, key_id = NULL, seal = NULL WHERE id = $2', [ZERO, shard]);
    expect(await verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/^shard 7: /) });
    // Start-up does not key it again.
    broker = await restart(broker, 'auditsh');
    expect(await verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/^shard 7: /) });
    expect(await broker.state('SELECT 1 FROM audit_events WHERE shard = $1 AND type = $2', [shard, 'audit.keyed'])).toHaveLength(0);

    await broker.state('DELETE FROM audit_events WHERE shard = $1', [shard]);
    await broker.state('DELETE FROM audit_head WHERE id = $1', [shard]);
    expect(await verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/^shard 7: /) });
    // Start-up creates the shard anew, which shard 1's record shows.
    broker = await restart(broker, 'auditsh');
    expect(await verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/^shard 1: shard 7 was created again/) });
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
