/** The audit trail's SQL: the shards' head row locks, the insert that moves a head, and the reads behind list, verify and heartbeats. */
import { Database, Queryable } from '../storage/database';
import { AuditHead, AuditRow, Heartbeat, ZERO } from './audit-chain';
import { StoredEvent } from './audit-event';

/** A shard's audit_head row (its id is the shard), as read or locked. */
export interface ShardHead extends AuditHead {
  shard: number;
}

const HEAD = 'SELECT id AS shard, hash, key_id, seal FROM audit_head';
/** Locks the first head, in id order from $1 round to $1 - 1, that no other transaction holds; none when all are held. */
const PICK_HEAD = `${HEAD} ORDER BY id < $1, id LIMIT 1 FOR UPDATE SKIP LOCKED`;

/**
 * PICK_HEAD with `from` as a literal and a condition, for a caller that picks the head inside a statement
 * of its own sent with the simple protocol (see LeaseRepository.activateMany); the condition can make
 * it wait for the statement's earlier work (a lateral reference) or skip the pick. The condition is
 * SQL text of the caller's own, never a value.
 */
export function pickHeadSql(from: number, condition: string): string {
  if (!Number.isSafeInteger(from) || from < 1) throw new Error(`not a shard: ${from}`);
  return `${HEAD} WHERE ${condition} ORDER BY id < ${from}, id LIMIT 1 FOR UPDATE SKIP LOCKED`;
}
/** Chains the event onto the locked head of its shard and moves that head (with its new seal) in one statement. */
const INSERT = `
  WITH ins AS (
    INSERT INTO audit_events (shard, at, type, actor, lease_id, body, prev_hash, hash, key_id)
    VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8) RETURNING id)
  UPDATE audit_head SET hash = $7, key_id = $8, seal = $9 FROM ins WHERE audit_head.id = $10 RETURNING ins.id`;
/**
 * Chains several events onto the locked head of their shard, in order, and moves the head to the last:
 * ids are drawn in the events' order (ordinality), as verify walks a shard by id.
 */
const INSERT_MANY = `
  WITH ins AS (
    INSERT INTO audit_events (shard, at, type, actor, lease_id, body, prev_hash, hash, key_id)
    SELECT $1, e.at, e.type, e.actor, e.lease_id, e.body, e.prev_hash, e.hash, $8
    FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $9::bytea[])
         WITH ORDINALITY AS e(at, type, actor, lease_id, body, prev_hash, hash, n)
    ORDER BY e.n
    RETURNING id)
  UPDATE audit_head SET hash = $10, key_id = $8, seal = $11 WHERE audit_head.id = $1
  RETURNING (SELECT array_agg(id ORDER BY id) FROM ins) AS ids`;
/** Each shard's newest heartbeat (none for a shard without one), one index probe per shard. */
const NEWEST_HEARTBEATS = `
  SELECT h.id AS shard, e.id, e.hash, e.body FROM audit_head h
  LEFT JOIN LATERAL (SELECT id, hash, body FROM audit_events
                      WHERE type = 'audit.heartbeat' AND shard = h.id ORDER BY id DESC LIMIT 1) e ON true
  ORDER BY h.id`;
/** The shards that have events, by a skip scan of the (shard, id) index. */
const SHARDS_WITH_EVENTS = `
  WITH RECURSIVE s(shard) AS (
    SELECT min(shard) FROM audit_events
    UNION ALL SELECT (SELECT min(shard) FROM audit_events WHERE shard > s.shard) FROM s WHERE s.shard IS NOT NULL)
  SELECT shard FROM s WHERE shard IS NOT NULL`;
/** Rows verify reads per query. */
const PAGE = 5000;

/**
 * Every method but list takes the Queryable to run on (the pool, or the caller's transaction), so a
 * head's lock and the statements after it share one transaction.
 */
export class AuditRepository {
  constructor(private readonly db: Database) {}

  /** Locks a head no other transaction holds, trying shards from `from` on; undefined when every head is held. */
  async pickHead(q: Queryable, from: number): Promise<ShardHead | undefined> {
    return (await q.query<ShardHead>(PICK_HEAD, [from])).rows[0];
  }

  /** Locks one shard's head until the transaction ends (waiting for it), and reads it; undefined if its row is missing. */
  async lockHead(q: Queryable, shard: number): Promise<ShardHead | undefined> {
    return (await q.query<ShardHead>(`${HEAD} WHERE id = $1 FOR UPDATE`, [shard])).rows[0];
  }

  /** Locks every head, in id order (so two such transactions cannot deadlock). */
  async lockHeads(q: Queryable): Promise<ShardHead[]> {
    return (await q.query<ShardHead>(`${HEAD} ORDER BY id FOR UPDATE`)).rows;
  }

  /** Reads every head without locking them. */
  async readHeads(q: Queryable): Promise<ShardHead[]> {
    return (await q.query<ShardHead>(`${HEAD} ORDER BY id`)).rows;
  }

  /** Creates the initial heads of shards 2..`count` that have no row yet; returns the shards created. */
  async createHeads(q: Queryable, count: number): Promise<number[]> {
    const { rows } = await q.query<{ id: number }>(
      'INSERT INTO audit_head (id, hash) SELECT g, $2 FROM generate_series(2, $1::int) g ON CONFLICT (id) DO NOTHING RETURNING id',
      [count, ZERO],
    );
    return rows.map((r) => r.id).sort((a, b) => a - b);
  }

  async shardsWithEvents(q: Queryable): Promise<number[]> {
    return (await q.query<{ shard: number }>(SHARDS_WITH_EVENTS)).rows.map((r) => r.shard);
  }

  async oldestEvent(q: Queryable, shard: number): Promise<{ key_id: string | null } | undefined> {
    return (await q.query<{ key_id: string | null }>('SELECT key_id FROM audit_events WHERE shard = $1 ORDER BY id LIMIT 1', [shard])).rows[0];
  }

  async newestEvent(q: Queryable, shard: number): Promise<{ hash: Buffer; key_id: string | null } | undefined> {
    return (await q.query<{ hash: Buffer; key_id: string | null }>('SELECT hash, key_id FROM audit_events WHERE shard = $1 ORDER BY id DESC LIMIT 1', [shard])).rows[0];
  }

  /** Whether a keyed event records an accepted legacy boundary (start-up's hint only; verify decides). */
  async hasLegacyBoundary(q: Queryable): Promise<boolean> {
    const { rows } = await q.query(
      `SELECT 1 FROM audit_events WHERE shard = 1 AND type = 'audit.keyed' AND key_id IS NOT NULL AND body::jsonb->'detail' ? 'legacy_boundary' LIMIT 1`,
    );
    return rows.length > 0;
  }

  /** Writes the event with its link and moves its shard's head to it; the caller holds that head's lock. Returns the event's id. */
  async insert(q: Queryable, shard: number, e: StoredEvent, link: { prev: Buffer; hash: Buffer; keyId: string; seal: Buffer }): Promise<string> {
    const { rows } = await q.query<{ id: string }>(INSERT, [e.at, e.type, e.actor, e.leaseId, e.body, link.prev, link.hash, link.keyId, link.seal, shard]);
    return String(rows[0].id);
  }

  /** Several events chained in order onto one locked head (see INSERT_MANY); their ids, in order. */
  async insertMany(q: Queryable, shard: number, events: StoredEvent[], links: { prev: Buffer; hash: Buffer; keyId: string; seal: Buffer }[]): Promise<string[]> {
    const last = links[links.length - 1];
    const { rows } = await q.query<{ ids: string[] }>(INSERT_MANY, [
      shard,
      events.map((e) => e.at),
      events.map((e) => e.type),
      events.map((e) => e.actor),
      events.map((e) => e.leaseId),
      events.map((e) => e.body),
      links.map((l) => l.prev),
      last.keyId,
      links.map((l) => l.hash),
      last.hash,
      last.seal,
    ]);
    return rows[0].ids.map(String);
  }

  /** Events at or after `since`, oldest first (all shards): their ids and canonical text. */
  async list(since: Date | undefined, limit: number): Promise<{ id: string; body: string }[]> {
    const { rows } = await this.db.query<{ id: string; body: string }>(
      `SELECT id, body FROM audit_events WHERE ($1::timestamptz IS NULL OR at >= $1) ORDER BY id LIMIT $2`,
      [since ?? null, limit],
    );
    return rows;
  }

  /** Events newest first (all shards), optionally of one type, by one actor, and older than an id. */
  async search(filter: { type?: string; actor?: string; beforeId?: string }, limit: number): Promise<{ id: string; body: string }[]> {
    const { rows } = await this.db.query<{ id: string; body: string }>(
      `SELECT id, body FROM audit_events
        WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR actor = $2) AND ($3::bigint IS NULL OR id < $3)
        ORDER BY id DESC LIMIT $4`,
      [filter.type ?? null, filter.actor ?? null, filter.beforeId ?? null, limit],
    );
    return rows;
  }

  /** One shard's events in id order, a page at a time. */
  async *pages(q: Queryable, shard: number): AsyncGenerator<AuditRow[]> {
    let after = '0';
    for (;;) {
      const { rows } = await q.query<AuditRow>(
        'SELECT id, at, type, actor, lease_id, body, prev_hash, hash, key_id FROM audit_events WHERE shard = $1 AND id > $2 ORDER BY id LIMIT $3',
        [shard, after, PAGE],
      );
      if (rows.length) yield rows;
      if (rows.length < PAGE) return;
      after = String(rows[rows.length - 1].id);
    }
  }

  /** Every shard (every head row), with its newest heartbeat if it has one. */
  async newestHeartbeats(q: Queryable): Promise<Map<number, Heartbeat | undefined>> {
    const { rows } = await q.query<{ shard: number; id: string | null; hash: Buffer | null; body: string | null }>(NEWEST_HEARTBEATS);
    return new Map(rows.map((r) => [r.shard, r.id === null ? undefined : { id: String(r.id), hash: r.hash!, at: JSON.parse(r.body!).at }]));
  }

  async newestHeartbeat(q: Queryable, shard: number): Promise<Heartbeat | undefined> {
    const { rows } = await q.query<{ id: string; hash: Buffer; body: string }>(
      `SELECT id, hash, body FROM audit_events WHERE type = 'audit.heartbeat' AND shard = $1 ORDER BY id DESC LIMIT 1`,
      [shard],
    );
    return rows[0] && { id: String(rows[0].id), hash: rows[0].hash, at: JSON.parse(rows[0].body).at };
  }

  /** Which of the heartbeats (each with its shard) are still in the trail, unchanged: their ids. */
  async heartbeatsKept(q: Queryable, heartbeats: { shard: number; heartbeat: Heartbeat }[]): Promise<Set<string>> {
    if (!heartbeats.length) return new Set();
    const { rows } = await q.query<{ id: string; shard: number; hash: Buffer }>('SELECT id, shard, hash FROM audit_events WHERE id = ANY($1::bigint[])', [
      heartbeats.map((h) => h.heartbeat.id),
    ]);
    const found = new Map(rows.map((r) => [String(r.id), r]));
    return new Set(
      heartbeats.filter(({ shard, heartbeat }) => found.get(heartbeat.id)?.shard === shard && found.get(heartbeat.id)!.hash.equals(heartbeat.hash)).map((h) => h.heartbeat.id),
    );
  }
}
