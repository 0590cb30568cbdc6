import { createHash, randomBytes } from 'node:crypto';
import {
  AuditHead,
  AuditRow,
  ChainWalk,
  Walk,
  WalkOptions,
  ZERO,
  expectedLink,
  hasSeal,
  nextLink,
  sealProblem,
  unsealedHeadProblem,
} from '../../src/audit/audit-chain';
import { AuditEvent, storedEvent } from '../../src/audit/audit-event';
import { AuditKeys } from '../../src/audit/audit-keys';

const masterKey = () => randomBytes(32).toString('base64');
const keys = new AuditKeys(masterKey());
const sha256 = (prev: Buffer, body: string) => createHash('sha256').update(prev).update(body, 'utf8').digest();

/**
 * A trail in memory, built the way the broker writes one (keyed) or the way the scheme before keying
 * did (unkeyed, plain SHA-256), with the head the writer leaves. Ids step by 10, as a sequence leaves
 * gaps after rollbacks.
 */
class Trail {
  rows: AuditRow[] = [];
  head: AuditHead = { hash: ZERO, key_id: null, seal: null };
  private at = Date.parse('2025-01-01T00:00:00Z');

  keyed(event: AuditEvent, withKeys: AuditKeys = keys): AuditRow {
    const e = storedEvent(event, this.tick());
    const link = nextLink(withKeys, this.head.hash, e.body);
    this.head = { hash: link.hash, key_id: link.keyId, seal: link.seal };
    return this.push(e, link.prev, link.hash, link.keyId);
  }

  unkeyed(event: AuditEvent): AuditRow {
    const e = storedEvent(event, this.tick());
    const hash = sha256(this.head.hash, e.body);
    const prev = this.head.hash;
    this.head = { hash, key_id: null, seal: null };
    return this.push(e, prev, hash, null);
  }

  /** The time of the last event written, ms. */
  get now(): number {
    return this.at;
  }

  private tick(): Date {
    this.at += 1000;
    return new Date(this.at);
  }

  private push(e: ReturnType<typeof storedEvent>, prev: Buffer, hash: Buffer, keyId: string | null): AuditRow {
    const row = { id: String((this.rows.length + 1) * 10), at: new Date(e.at), type: e.type, actor: e.actor, lease_id: e.leaseId, body: e.body, prev_hash: prev, hash, key_id: keyId };
    this.rows.push(row);
    return row;
  }
}

/** A keyed trail as a fresh broker writes it: audit.keyed, its first heartbeat, then lease events. */
function brokerTrail(): Trail {
  const trail = new Trail();
  trail.keyed({ type: 'audit.keyed', detail: { key_id: keys.currentId } });
  trail.keyed({ type: 'audit.heartbeat', detail: { previous_at: null, started: true, every_seconds: 60 } });
  trail.keyed({ type: 'lease.issued', actor: 'spiffe://test.example/ns/app/api', leaseId: 'l-1', detail: { role: 'ro' } });
  trail.keyed({ type: 'lease.renewed', actor: 'spiffe://test.example/ns/app/api', leaseId: 'l-1', detail: { increment_seconds: 120 } });
  trail.keyed({ type: 'lease.revoked', actor: 'spiffe://test.example/ns/app/api', leaseId: 'l-1', detail: {} });
  return trail;
}

function walk(rows: AuditRow[], head: AuditHead | undefined, opts: WalkOptions = {}, now = Date.now(), withKeys = keys): Walk {
  const w = new ChainWalk(withKeys, opts);
  for (const row of rows) {
    const bad = w.add(row);
    if (bad) return bad;
  }
  return w.end(head, now);
}

/** Recomputes every link from `from` on as plain SHA-256 (what someone without the key can do), and the head's hash. */
function recomputePlain(rows: AuditRow[], head: AuditHead, from = 0): AuditRow[] {
  const out = rows.map((r) => ({ ...r }));
  let prev = from === 0 ? ZERO : out[from - 1].hash;
  for (const row of out.slice(from)) {
    row.prev_hash = prev;
    row.hash = sha256(prev, row.body);
    prev = row.hash;
  }
  head.hash = prev;
  return out;
}

const rowOf = (trail: Trail, type: string) => trail.rows.find((r) => r.type === type)!;
const withBody = (row: AuditRow, edit: (body: any) => void): AuditRow => {
  const body = JSON.parse(row.body);
  edit(body);
  return { ...row, body: JSON.stringify(body) };
};

describe('links', () => {
  it('a new event is linked with the MAC of the previous hash and its text under the current key, and the head sealed over it', () => {
    const body = storedEvent({ type: 'lease.issued', leaseId: 'l-1' }).body;
    const link = nextLink(keys, ZERO, body);
    expect(link).toEqual({ prev: ZERO, hash: keys.link(ZERO, body), keyId: keys.currentId, seal: keys.seal(link.hash) });
    expect(link.hash.equals(sha256(ZERO, body))).toBe(false);
    expect(link.seal.equals(link.hash)).toBe(false);
    expect(expectedLink(keys, { key_id: keys.currentId, type: 'lease.issued', body }, ZERO, false)).toEqual(link.hash);
  });

  it('the canonical text holds every column, so verify can check the columns against it', () => {
    const e = storedEvent({ type: 'lease.renewed', actor: 'a', leaseId: 'l-1', detail: { increment_seconds: 60 } }, new Date('2025-01-01T00:00:00Z'));
    expect(e).toEqual({ at: '2025-01-01T00:00:00.000Z', type: 'lease.renewed', actor: 'a', leaseId: 'l-1', body: e.body });
    expect(JSON.parse(e.body)).toEqual({ at: e.at, type: 'lease.renewed', actor: 'a', lease_id: 'l-1', detail: { increment_seconds: 60 } });
    expect(JSON.parse(storedEvent({ type: 'audit.keyed' }).body)).toMatchObject({ actor: null, lease_id: null, detail: {} });
  });

  it('an event keyed under a key that is not configured has no expected link', () => {
    const other = new AuditKeys(masterKey());
    const body = storedEvent({ type: 'lease.issued' }).body;
    expect(expectedLink(keys, { key_id: other.currentId, type: 'lease.issued', body }, ZERO, true)).toBeUndefined();
  });

  it('unkeyed links are plain SHA-256, only before the first keyed event and never for the chain\'s own events', () => {
    const body = storedEvent({ type: 'lease.issued' }).body;
    expect(expectedLink(keys, { key_id: null, type: 'lease.issued', body }, ZERO, false)).toEqual(sha256(ZERO, body));
    expect(expectedLink(keys, { key_id: null, type: 'lease.issued', body }, ZERO, true)).toBeUndefined();
    expect(expectedLink(keys, { key_id: null, type: 'audit.heartbeat', body }, ZERO, false)).toBeUndefined();
  });

  it('events keyed before a master key rotation verify while the old key is among the previous keys', () => {
    const oldKey = masterKey();
    const old = new AuditKeys(oldKey);
    const trail = new Trail();
    trail.keyed({ type: 'audit.keyed', detail: { key_id: old.currentId } }, old);
    trail.keyed({ type: 'lease.issued' }, old);
    const rotated = new AuditKeys(masterKey(), [oldKey]);
    trail.keyed({ type: 'lease.revoked' }, rotated);
    expect(walk(trail.rows, trail.head, {}, Date.now(), rotated)).toMatchObject({ ok: true, events_checked: 3 });
    expect(walk(trail.rows, trail.head, {}, Date.now(), new AuditKeys(masterKey()))).toMatchObject({ ok: false, first_bad_id: '10' });
  });
});

describe('the head', () => {
  it('a head sealed under a known key over its hash may be extended', () => {
    const { head } = brokerTrail();
    expect(hasSeal(head)).toBe(true);
    expect(sealProblem(keys, head)).toBeUndefined();
  });

  it('a moved, forged or half-removed seal, or one under an unknown key, is a problem', () => {
    const { head, rows } = brokerTrail();
    expect(sealProblem(keys, { ...head, hash: rows[1].hash })).toBe('seal_invalid');
    expect(sealProblem(keys, { ...head, seal: randomBytes(32) })).toBe('seal_invalid');
    expect(sealProblem(keys, { ...head, key_id: null })).toBe('seal_invalid');
    expect(sealProblem(keys, { ...head, seal: null })).toBe('seal_invalid');
    expect(sealProblem(new AuditKeys(masterKey()), head)).toBe('seal_key_unknown');
  });

  it('an unsealed head may be extended only as the genesis of an empty trail or at the end of an unkeyed trail', () => {
    const initial = { hash: ZERO, key_id: null, seal: null };
    expect(hasSeal(initial)).toBe(false);
    expect(unsealedHeadProblem(initial, undefined, true)).toBeUndefined();
    expect(unsealedHeadProblem(initial, undefined, false)).toBe('trail_emptied');
    expect(unsealedHeadProblem({ ...initial, hash: randomBytes(32) }, undefined, true)).toBe('trail_emptied');

    const legacy = new Trail();
    legacy.unkeyed({ type: 'lease.issued' });
    const newest = legacy.rows[0];
    expect(unsealedHeadProblem(legacy.head, newest, false)).toBeUndefined();
    expect(unsealedHeadProblem(legacy.head, { ...newest, hash: randomBytes(32) }, false)).toBe('seal_missing');

    const keyed = brokerTrail();
    const last = keyed.rows[keyed.rows.length - 1];
    expect(unsealedHeadProblem({ hash: last.hash, key_id: null, seal: null }, last, false)).toBe('seal_missing');
  });
});

describe('verify', () => {
  it('a trail written by the broker verifies', () => {
    const trail = brokerTrail();
    expect(walk(trail.rows, trail.head)).toEqual({ ok: true, events_checked: 5, keyed: true, legacy: undefined });
  });

  it('an edited event is found, also when every link is recomputed without the key', () => {
    const trail = brokerTrail();
    const i = trail.rows.findIndex((r) => r.type === 'lease.renewed');
    const rows = [...trail.rows];
    rows[i] = withBody(rows[i], (b) => (b.detail.increment_seconds = 1));
    expect(walk(rows, trail.head)).toMatchObject({ ok: false, first_bad_id: rows[i].id, events_checked: i, broken: 'chain', reason: expect.stringMatching(/edited, inserted or moved/) });

    const head = { ...trail.head };
    expect(walk(recomputePlain(rows, head, i), head)).toMatchObject({ ok: false, first_bad_id: rows[i].id });
    expect(walk(recomputePlain(rows, head), head)).toMatchObject({ ok: false, first_bad_id: rows[0].id });
  });

  it('a column that no longer matches the event\'s text is found', () => {
    const trail = brokerTrail();
    const rows = trail.rows.map((r) => (r.type === 'lease.issued' ? { ...r, actor: 'spiffe://test.example/someone/else' } : r));
    expect(walk(rows, trail.head)).toMatchObject({ ok: false, first_bad_id: rowOf(trail, 'lease.issued').id });
    const retimed = trail.rows.map((r) => (r.type === 'lease.revoked' ? { ...r, at: new Date(r.at.getTime() + 1) } : r));
    expect(walk(retimed, trail.head)).toMatchObject({ ok: false, first_bad_id: rowOf(trail, 'lease.revoked').id });
    const unparsable = trail.rows.map((r) => (r.type === 'lease.revoked' ? { ...r, body: 'null' } : r));
    expect(walk(unparsable, trail.head)).toMatchObject({ ok: false, first_bad_id: rowOf(trail, 'lease.revoked').id });
  });

  it('an inserted event is found, with a plain link and the current key id, or with links recomputed after it', () => {
    const trail = brokerTrail();
    const at = 2;
    const forged = storedEvent({ type: 'lease.revoked', actor: 'spiffe://test.example/ops/auditor' }, new Date(trail.rows[at].at.getTime() + 1));
    const prev = trail.rows[at].hash;
    const row: AuditRow = {
      id: String(Number(trail.rows[at].id) + 5),
      at: new Date(forged.at),
      type: forged.type,
      actor: forged.actor,
      lease_id: null,
      body: forged.body,
      prev_hash: prev,
      hash: sha256(prev, forged.body),
      key_id: keys.currentId,
    };
    const rows = [...trail.rows.slice(0, at + 1), row, ...trail.rows.slice(at + 1)];
    expect(walk(rows, trail.head)).toMatchObject({ ok: false, first_bad_id: row.id, events_checked: at + 1 });
    const head = { ...trail.head };
    expect(walk(recomputePlain(rows, head, at + 1), head)).toMatchObject({ ok: false, first_bad_id: row.id });
    // At the end, with the head moved onto it (the seal cannot be recomputed).
    const end = { ...row, id: '1000', prev_hash: trail.head.hash, hash: sha256(trail.head.hash, forged.body), at: new Date(forged.at) };
    expect(walk([...trail.rows, end], { ...trail.head, hash: end.hash })).toMatchObject({ ok: false, first_bad_id: '1000' });
  });

  it('a deleted event is found at the event after the gap', () => {
    const trail = brokerTrail();
    const gone = trail.rows.findIndex((r) => r.type === 'lease.renewed');
    const rows = trail.rows.filter((_, i) => i !== gone);
    expect(walk(rows, trail.head)).toMatchObject({ ok: false, first_bad_id: trail.rows[gone + 1].id, reason: expect.stringMatching(/one before it deleted/) });
  });

  it('a keyed trail without its first audit.keyed event is found, even when the rest is linked from the start', () => {
    const trail = brokerTrail();
    expect(walk(trail.rows.slice(1), trail.head)).toMatchObject({ ok: false, first_bad_id: trail.rows[1].id });
    const relinked = new Trail();
    relinked.keyed({ type: 'lease.issued' });
    expect(walk(relinked.rows, relinked.head)).toMatchObject({ ok: false, first_bad_id: '10', reason: expect.stringMatching(/does not start with audit.keyed/) });
  });

  it('events cut off the end are found: at the head\'s seal, at the heartbeat this broker saw, or by the age of the newest heartbeat', () => {
    const trail = brokerTrail();
    const kept = trail.rows.slice(0, 3);
    const last = kept[kept.length - 1];
    // Head moved back onto the new last event: its seal no longer matches.
    expect(walk(kept, { ...trail.head, hash: last.hash })).toMatchObject({ ok: false, first_bad_id: String(Number(last.id) + 1), broken: 'unsealed' });
    expect(walk(trail.rows, undefined)).toMatchObject({ ok: false, broken: 'unsealed' });

    // A genuine old head restored: only heartbeats tell.
    const old = brokerTrail();
    const savedRows = [...old.rows];
    const savedHead = { ...old.head };
    const beat = old.keyed({ type: 'audit.heartbeat', detail: { previous_at: JSON.parse(old.rows[1].body).at, started: false, every_seconds: 60 } });
    const seen = { id: beat.id, hash: beat.hash, at: JSON.parse(beat.body).at };
    expect(walk(old.rows, old.head, { seen, heartbeatEveryMs: 60_000 }, old.now)).toMatchObject({ ok: true });
    expect(walk(savedRows, savedHead, {}, old.now)).toMatchObject({ ok: true });
    expect(walk(savedRows, savedHead, { seen }, old.now)).toMatchObject({ ok: false, broken: 'tail', reason: expect.stringMatching(/this broker saw is gone/) });
    expect(walk(savedRows, savedHead, { heartbeatEveryMs: 60_000 }, old.now + 2 * 60_000 + 1)).toMatchObject({ ok: false, broken: 'tail', reason: expect.stringMatching(/no heartbeat since/) });
    expect(walk(savedRows, savedHead, { heartbeatEveryMs: 60_000 }, old.now + 60_000)).toMatchObject({ ok: true });
  });

  it('a heartbeat whose previous heartbeat is no longer in the trail is found, durably', () => {
    const trail = brokerTrail();
    trail.keyed({ type: 'audit.heartbeat', detail: { previous_at: '2024-12-31T23:59:59.000Z', started: false, every_seconds: 60 } });
    const bad = trail.rows[trail.rows.length - 1];
    expect(walk(trail.rows, trail.head)).toMatchObject({ ok: false, first_bad_id: bad.id, reason: expect.stringMatching(/no longer in the trail/) });
  });

  it('an audit.head_broken event fails verify', () => {
    const trail = brokerTrail();
    trail.keyed({ type: 'audit.head_broken', detail: { problem: 'seal_missing' } });
    trail.keyed({ type: 'lease.issued' });
    expect(walk(trail.rows, trail.head)).toMatchObject({ ok: false, first_bad_id: trail.rows[5].id, reason: expect.stringMatching(/seal_missing/) });
  });

  it('an empty trail does not verify', () => {
    expect(walk([], { hash: ZERO, key_id: null, seal: null })).toMatchObject({ ok: false, first_bad_id: '1', reason: 'the trail is empty', broken: 'unsealed' });
  });
});

describe('the unkeyed prefix', () => {
  /** Events from before the chain was keyed, then a broker started on them. */
  function legacyTrail(boundary?: (last: AuditRow) => unknown): Trail {
    const trail = new Trail();
    trail.unkeyed({ type: 'lease.issued', leaseId: 'l-1' });
    trail.unkeyed({ type: 'lease.revoked', leaseId: 'l-1' });
    const last = trail.unkeyed({ type: 'lease.issued', leaseId: 'l-2' });
    trail.keyed({ type: 'audit.heartbeat', detail: { previous_at: null, started: true, every_seconds: 60 } });
    if (boundary) trail.keyed({ type: 'audit.keyed', detail: { key_id: keys.currentId, legacy_boundary: boundary(last) } });
    trail.keyed({ type: 'lease.revoked', leaseId: 'l-2' });
    return trail;
  }
  const boundaryOf = (last: AuditRow) => ({ first_id: '10', id: last.id, hash: last.hash.toString('hex'), events: 3 });

  it('is reported until an operator accepts it, and seal-legacy can see it', () => {
    const trail = legacyTrail();
    expect(walk(trail.rows, trail.head)).toMatchObject({ ok: false, first_bad_id: '10', broken: 'legacy', reason: expect.stringMatching(/3 events .* not been accepted by an operator.*seal-legacy/) });
    const seen = walk(trail.rows, trail.head, { ignoreLegacy: true });
    expect(seen).toMatchObject({ ok: true, keyed: true, legacy: { firstId: '10', endId: '30', endHash: trail.rows[2].hash, count: 3, accepted: false } });
  });

  it('verifies once a keyed audit.keyed event records its end as the legacy boundary', () => {
    const trail = legacyTrail(boundaryOf);
    expect(walk(trail.rows, trail.head)).toMatchObject({ ok: true, events_checked: 6, legacy: { count: 3, accepted: true } });
  });

  it('a boundary that is not the end of the unkeyed events is found', () => {
    for (const wrong of [
      (last: AuditRow) => ({ ...boundaryOf(last), id: '20' }),
      (last: AuditRow) => ({ ...boundaryOf(last), hash: randomBytes(32).toString('hex') }),
    ]) {
      const trail = legacyTrail(wrong);
      expect(walk(trail.rows, trail.head)).toMatchObject({ ok: false, first_bad_id: '50', reason: expect.stringMatching(/legacy boundary is not the end/) });
    }
    const noPrefix = brokerTrail();
    noPrefix.keyed({ type: 'audit.keyed', detail: { key_id: keys.currentId, legacy_boundary: { id: '10', hash: '00' } } });
    expect(walk(noPrefix.rows, noPrefix.head)).toMatchObject({ ok: false, reason: expect.stringMatching(/legacy boundary/) });
  });

  it('an unkeyed event after keyed ones is found', () => {
    const trail = brokerTrail();
    const row = trail.unkeyed({ type: 'lease.issued' });
    expect(walk(trail.rows, trail.head, { ignoreLegacy: true })).toMatchObject({ ok: false, first_bad_id: row.id, reason: 'an unkeyed event after keyed ones' });
  });

  it('the chain\'s own events are never unkeyed: a trail rewritten as unkeyed is found at its first event', () => {
    const trail = brokerTrail();
    const head = { hash: ZERO, key_id: null, seal: null };
    const rewritten = recomputePlain(trail.rows, head).map((r) => ({ ...r, key_id: null }));
    const walked = walk(rewritten, head, { ignoreLegacy: true });
    expect(walked).toMatchObject({ ok: false, first_bad_id: '10', broken: 'chain', reason: expect.stringMatching(/the trail was rewritten/) });
  });

  it('a trail of unkeyed events alone has no keyed events, and its head is unsealed (what seal-legacy allows)', () => {
    const trail = new Trail();
    trail.unkeyed({ type: 'lease.issued' });
    trail.unkeyed({ type: 'lease.revoked' });
    expect(walk(trail.rows, trail.head, { ignoreLegacy: true })).toMatchObject({ ok: false, broken: 'unsealed', keyed: false, reason: 'no keyed events', legacy: { count: 2, accepted: false } });
    expect(walk(trail.rows, trail.head)).toMatchObject({ ok: false, broken: 'legacy' });
  });
});

describe('shards', () => {
  /** Shard 1 records the creation of shard 2, whose trail starts with its own audit.keyed event. */
  function sharded(): { first: Trail; second: Trail } {
    const first = brokerTrail();
    const second = new Trail();
    const genesis = second.keyed({ type: 'audit.keyed', detail: { key_id: keys.currentId, shard: 2 } });
    first.keyed({ type: 'audit.shards', detail: { shards: { 2: genesis.hash.toString('hex') } } });
    second.keyed({ type: 'audit.heartbeat', detail: { previous_at: null, started: true, every_seconds: 60 } });
    second.keyed({ type: 'lease.issued', leaseId: 'l-9' });
    return { first, second };
  }
  const later = (first: Trail) => ({ laterShard: { genesis: walk(first.rows, first.head).created?.get(2) } });

  it('shard 1 reports the shards whose creation it recorded, and a later shard starting with that event verifies', () => {
    const { first, second } = sharded();
    expect(walk(first.rows, first.head).created).toEqual(new Map([[2, second.rows[0].hash]]));
    expect(walk(second.rows, second.head, later(first))).toMatchObject({ ok: true, events_checked: 3 });
  });

  it('a later shard whose first events were removed, or that was made anew, is found', () => {
    const { first, second } = sharded();
    // Its first event deleted and the rest relinked from the start: the start no longer matches the record.
    const relinked = new Trail();
    for (const row of second.rows.slice(1)) relinked.keyed({ type: row.type as any, leaseId: row.lease_id, detail: JSON.parse(row.body).detail });
    expect(walk(relinked.rows, relinked.head, later(first))).toMatchObject({ ok: false, first_bad_id: '10', reason: expect.stringMatching(/creation recorded in shard 1/) });
    // A shard nobody recorded.
    expect(walk(second.rows, second.head, { laterShard: { genesis: undefined } })).toMatchObject({ ok: false, first_bad_id: '10' });
    // Created a second time: found in shard 1.
    first.keyed({ type: 'audit.shards', detail: { shards: { 2: randomBytes(32).toString('hex') } } });
    expect(walk(first.rows, first.head)).toMatchObject({ ok: false, first_bad_id: first.rows[first.rows.length - 1].id, reason: expect.stringMatching(/shard 2 was created again/) });
  });

  it('a later shard has no unkeyed events, and an emptied one does not verify', () => {
    const { first } = sharded();
    const legacy = new Trail();
    legacy.unkeyed({ type: 'lease.issued' });
    expect(walk(legacy.rows, legacy.head, { ...later(first), ignoreLegacy: true })).toMatchObject({ ok: false, first_bad_id: '10', reason: 'an unkeyed event outside the first shard' });
    expect(walk([], { hash: ZERO, key_id: null, seal: null }, later(first))).toMatchObject({ ok: false, broken: 'unsealed' });
  });

  it('a later shard\'s tail cut off is found like the first shard\'s: at its seal and by its heartbeats', () => {
    const { first, second } = sharded();
    const savedRows = [...second.rows];
    const savedHead = { ...second.head };
    const beat = second.keyed({ type: 'audit.heartbeat', detail: { previous_at: JSON.parse(second.rows[1].body).at, started: false, every_seconds: 60 } });
    const seen = { id: beat.id, hash: beat.hash, at: JSON.parse(beat.body).at };
    expect(walk(second.rows, second.head, { ...later(first), seen }, second.now)).toMatchObject({ ok: true });
    expect(walk(savedRows, { ...second.head, hash: savedRows[savedRows.length - 1].hash }, later(first))).toMatchObject({ ok: false, broken: 'unsealed' });
    expect(walk(savedRows, savedHead, { ...later(first), seen }, second.now)).toMatchObject({ ok: false, broken: 'tail' });
  });
});
